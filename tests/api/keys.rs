//! Reseller API keys: shown once, masked after, Bearer and Basic, the 6-key limit, permissions,
//! expiry, IP allowlists and suspension.

use crate::helpers::{reply, TestApp};
use base64::Engine;
use serde_json::json;

#[tokio::test]
async fn a_key_is_shown_once_then_masked_and_dies_when_deleted() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let created = app
        .post(
            "/api/v1/keys",
            &acme.key,
            json!({"name": "Production CRM", "permissions": ["users:read"]}),
        )
        .await
        .expect(201);
    let secret = created.body["key"].as_str().unwrap().to_string();
    let id = created.body["id"].as_str().unwrap().to_string();
    assert!(secret.starts_with("sk_org_"));
    assert_eq!(
        created.body["masked"],
        format!("sk_org_…{}", &secret[secret.len() - 4..])
    );
    assert_eq!(created.body["permissions"], json!(["users:read"]));
    assert_eq!(created.body["last_used_at"], json!(null));

    app.get("/api/v1/users", &secret).await.expect(200);
    let list = app.get("/api/v1/keys", &acme.key).await.expect(200);
    let listed = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap()
        .clone();
    assert!(
        listed.get("key").is_none(),
        "a listed key must not carry its secret: {listed}"
    );
    assert!(!list.text.contains(&secret));
    assert!(
        listed["last_used_at"].is_string(),
        "last_used_at is set after use: {listed}"
    );

    app.delete(&format!("/api/v1/keys/{id}"), &acme.key)
        .await
        .expect(204);
    let revoked = app
        .get("/api/v1/users", &secret)
        .await
        .expect_error(401, "unauthorized");
    assert!(revoked.text.contains("revoked"), "{}", revoked.text);
    // A key mistyped in its last character fails its checksum, and the answer says so.
    let mut typo = acme.key.clone();
    let last = typo.pop().unwrap();
    typo.push(if last == 'a' { 'b' } else { 'a' });
    let r = app
        .get("/api/v1/users", &typo)
        .await
        .expect_error(401, "unauthorized");
    assert!(r.text.contains("mistyped"), "{}", r.text);
    app.delete(&format!("/api/v1/keys/{id}"), &acme.key)
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn basic_auth_with_key_id_and_key_works_and_bad_basic_is_401() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let basic = |value: String| {
        let app = &app;
        async move {
            reply(
                app.client
                    .get(app.url("/api/v1/reseller"))
                    .header("authorization", value)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    basic(format!(
        "Basic {}",
        b64(&format!("{}:{}", acme.key_id, acme.key))
    ))
    .await
    .expect(200);
    basic(format!(
        "Basic {}",
        b64(&format!("{}:{}x", acme.key_id, acme.key))
    ))
    .await
    .expect_error(401, "unauthorized");
    let other = app.reseller("Other").await;
    basic(format!(
        "Basic {}",
        b64(&format!("{}:{}", other.key_id, acme.key))
    ))
    .await
    .expect_error(401, "unauthorized");
    basic("Basic !!!not-base64".into())
        .await
        .expect_error(401, "unauthorized");
    basic(format!("Basic {}", b64("no-colon")))
        .await
        .expect_error(401, "unauthorized");
    basic("Digest abc".into())
        .await
        .expect_error(401, "unauthorized");
}

#[tokio::test]
async fn the_seventh_live_key_is_refused_even_under_concurrency() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    // The initial key is live, so five more fit; fire ten at once.
    let attempts =
        (0..10).map(|i| app.post("/api/v1/keys", &acme.key, json!({"name": format!("k{i}")})));
    let replies = futures_util::future::join_all(attempts).await;
    let ok = replies.iter().filter(|r| r.status == 201).count();
    assert_eq!(ok, 5, "exactly five more keys fit");
    for r in replies.into_iter().filter(|r| r.status != 201) {
        r.expect_error(400, "key_limit_reached");
    }
    assert_eq!(
        app.get("/api/v1/keys", &acme.key)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        6
    );
    // Deleting one frees a slot.
    let keys = app.get("/api/v1/keys", &acme.key).await.body;
    let victim = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] != acme.key_id.as_str())
        .unwrap()["id"]
        .clone();
    app.delete(
        &format!("/api/v1/keys/{}", victim.as_str().unwrap()),
        &acme.key,
    )
    .await
    .expect(204);
    app.post("/api/v1/keys", &acme.key, json!({"name": "again"}))
        .await
        .expect(201);
}

#[tokio::test]
async fn permissions_are_enforced() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let ro = acme.key_with(&app, json!(["users:read"])).await;
    app.get("/api/v1/users", &ro).await.expect(200);
    app.post(
        "/api/v1/access_tokens",
        &ro,
        json!({"user": {"email": "a@b.test"}}),
    )
    .await
    .expect_error(403, "forbidden");
    app.get("/api/v1/keys", &ro)
        .await
        .expect_error(403, "forbidden");
    app.patch("/api/v1/reseller", &ro, json!({"name": "x"}))
        .await
        .expect_error(403, "forbidden");
    app.post(
        "/api/v1/keys",
        &acme.key,
        json!({"name": "bad", "permissions": ["users:delete"]}),
    )
    .await
    .expect_error(400, "invalid_request");
    app.post(
        "/api/v1/keys",
        &acme.key,
        json!({"name": "old", "expires_at": "2001-01-01T00:00:00Z"}),
    )
    .await
    .expect_error(400, "invalid_request");
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let soon = chrono::Utc::now() + chrono::Duration::seconds(60);
    let k = app
        .post(
            "/api/v1/keys",
            &acme.key,
            json!({"name": "short", "expires_at": soon.to_rfc3339()}),
        )
        .await
        .expect(201)
        .body["key"]
        .as_str()
        .unwrap()
        .to_string();
    app.get("/api/v1/reseller", &k).await.expect(200);
    app.advance_clock(61).await;
    app.get("/api/v1/reseller", &k)
        .await
        .expect_error(401, "unauthorized");
}

#[tokio::test]
async fn ip_allowlists_on_the_key_and_the_reseller_are_enforced() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let make = |ips: serde_json::Value| {
        let app = &app;
        let key = acme.key.clone();
        async move {
            app.post(
                "/api/v1/keys",
                &key,
                json!({"name": "ip", "allowed_ips": ips}),
            )
            .await
            .expect(201)
            .body["key"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let outside = make(json!(["203.0.113.0/24", "2001:db8::/32"])).await;
    let inside = make(json!(["127.0.0.0/8"])).await;
    app.get("/api/v1/reseller", &outside)
        .await
        .expect_error(403, "ip_not_allowed");
    app.get("/api/v1/reseller", &inside).await.expect(200);
    app.post(
        "/api/v1/keys",
        &acme.key,
        json!({"name": "bad", "allowed_ips": ["10.0.0.0/33"]}),
    )
    .await
    .expect_error(400, "invalid_request");

    // A reseller-wide allowlist applies to every key and every user token of the reseller.
    let user = acme.access_token(&app, "client@example.test").await;
    app.patch(
        &format!("/api/v1/admin/resellers/{}", acme.id),
        &app.operator,
        json!({"allowed_ips": ["198.51.100.0/24"]}),
    )
    .await
    .expect(200);
    app.get("/api/v1/reseller", &inside)
        .await
        .expect_error(403, "ip_not_allowed");
    app.get("/api/v1/user", &user.token)
        .await
        .expect_error(403, "ip_not_allowed");
    app.patch("/api/v1/reseller", &acme.key, json!({"allowed_ips": []}))
        .await
        .expect_error(403, "ip_not_allowed");
    app.patch(
        &format!("/api/v1/admin/resellers/{}", acme.id),
        &app.operator,
        json!({"allowed_ips": []}),
    )
    .await
    .expect(200);
    app.get("/api/v1/reseller", &inside).await.expect(200);
}

#[tokio::test]
async fn a_suspended_reseller_gets_403_for_keys_and_user_tokens() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let user = acme.access_token(&app, "client@example.test").await;
    let path = format!("/api/v1/admin/resellers/{}", acme.id);
    app.patch(&path, &app.operator, json!({"suspended": true}))
        .await
        .expect(200);
    app.get("/api/v1/reseller", &acme.key)
        .await
        .expect_error(403, "reseller_suspended");
    app.get("/api/v1/user", &user.token)
        .await
        .expect_error(403, "reseller_suspended");
    app.patch(&path, &app.operator, json!({"suspended": false}))
        .await
        .expect(200);
    app.get("/api/v1/reseller", &acme.key).await.expect(200);
    app.get("/api/v1/user", &user.token).await.expect(200);

    // Deleting the reseller kills its credentials.
    app.delete(&path, &app.operator).await.expect(204);
    app.get("/api/v1/reseller", &acme.key)
        .await
        .expect_error(401, "unauthorized");
    app.get("/api/v1/user", &user.token)
        .await
        .expect_error(401, "unauthorized");
    app.get(&path, &app.operator)
        .await
        .expect_error(404, "not_found");
}

/// A key's use is recorded at most every 30 s, also while its resolution is cached: a due use
/// is written, and the calls right after it are not (each would move `last_used_at` again).
#[tokio::test]
async fn last_used_at_is_set_on_use_and_not_rewritten_by_every_call() {
    // The 30-second throttle itself is tested with a set clock in `store::keys`.
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let last_used = || async {
        let keys = app.get("/api/v1/keys", &acme.key).await.expect(200);
        keys.body[0]["last_used_at"].as_str().unwrap().to_string()
    };
    let first = last_used().await;
    for _ in 0..3 {
        assert_eq!(last_used().await, first, "written once, not on every call");
    }
}
