//! Access token lifecycle: expiry (with the server's clock moved by the test, never slept on),
//! the per-user cap under concurrent issues, the sweeper, and listing and revoking.

use crate::helpers::{Reply, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

async fn issue(app: &TestApp, key: &str, email: &str, extra: Value) -> Reply {
    let mut body = json!({"user": {"email": email}});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    app.post("/api/v1/access_tokens", key, body).await
}

fn secret(r: &Reply) -> String {
    r.body["access_token"].as_str().unwrap().to_string()
}

fn expiry(v: &Value) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    v.as_str()
        .map(|s| chrono::DateTime::parse_from_rfc3339(s).unwrap())
}

#[tokio::test]
async fn tokens_expire_by_request_or_by_the_resellers_default() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let reseller = app.get("/api/v1/reseller", &acme.key).await.expect(200);
    assert_eq!(
        reseller.body["access_token_ttl"],
        90 * 86_400,
        "new resellers: 90 days"
    );
    assert_eq!(reseller.body["max_tokens_per_user"], 100);

    // An explicit lifetime: shown on creation and by GET /user, then 401 once past.
    let short = issue(&app, &acme.key, "ann@x.test", json!({"expires_in": 3600}))
        .await
        .expect(201);
    let created = expiry(&short.body["created_at"]).unwrap();
    let expires = expiry(&short.body["expires_at"]).unwrap();
    assert_eq!((expires - created).num_seconds(), 3600);
    let me = app.get("/api/v1/user", &secret(&short)).await.expect(200);
    assert_eq!(me.body["expires_at"], short.body["expires_at"]);

    // The reseller's default applies when none is asked for; null means never.
    app.patch(
        "/api/v1/reseller",
        &acme.key,
        json!({"access_token_ttl": 7200}),
    )
    .await
    .expect(200);
    let default = issue(&app, &acme.key, "ann@x.test", json!({}))
        .await
        .expect(201);
    let d =
        expiry(&default.body["expires_at"]).unwrap() - expiry(&default.body["created_at"]).unwrap();
    assert_eq!(d.num_seconds(), 7200);
    app.patch(
        "/api/v1/reseller",
        &acme.key,
        json!({"access_token_ttl": null}),
    )
    .await
    .expect(200);
    let forever = issue(&app, &acme.key, "ann@x.test", json!({}))
        .await
        .expect(201);
    assert_eq!(forever.body["expires_at"], Value::Null);

    app.advance_clock(3601).await;
    app.get("/api/v1/user", &secret(&short))
        .await
        .expect_error(401, "unauthorized");
    app.get("/api/v1/user", &secret(&default)).await.expect(200);
    app.advance_clock(3600).await;
    app.get("/api/v1/user", &secret(&default))
        .await
        .expect_error(401, "unauthorized");
    app.get("/api/v1/user", &secret(&forever)).await.expect(200);

    // Bad lifetimes and caps change nothing.
    for bad in [
        json!({"expires_in": 0}),
        json!({"expires_in": -5}),
        json!({"expires_in": "soon"}),
    ] {
        issue(&app, &acme.key, "bob@x.test", bad)
            .await
            .expect_error(400, "invalid_request");
    }
    for bad in [
        json!({"access_token_ttl": 5}),
        json!({"max_tokens_per_user": 0}),
        json!({"max_tokens_per_user": 1001}),
    ] {
        app.patch("/api/v1/reseller", &acme.key, bad)
            .await
            .expect_error(400, "invalid_request");
    }
    let users = app.get("/api/v1/users", &acme.key).await.expect(200);
    assert_eq!(
        users.body.as_array().unwrap().len(),
        1,
        "bob was never created"
    );
}

#[tokio::test]
async fn a_token_never_outlives_the_key_that_issued_it() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let limit = chrono::Utc::now() + chrono::Duration::hours(1);
    let key = app
        .post(
            "/api/v1/keys",
            &acme.key,
            json!({"name": "short", "permissions": ["users:write"], "expires_at": limit.to_rfc3339()}),
        )
        .await
        .expect(201)
        .body["key"]
        .as_str()
        .unwrap()
        .to_string();
    // The 90-day default is cut to the key's expiry; asking for more is refused.
    let t = issue(&app, &key, "ann@x.test", json!({})).await.expect(201);
    let at = expiry(&t.body["expires_at"]).unwrap();
    assert!(
        (at.timestamp_millis() - limit.timestamp_millis()).abs() < 1000,
        "{at}"
    );
    issue(&app, &key, "ann@x.test", json!({"expires_in": 7200}))
        .await
        .expect_error(403, "forbidden");
    issue(&app, &key, "ann@x.test", json!({"expires_in": 600}))
        .await
        .expect(201);
}

#[tokio::test]
async fn the_cap_revokes_the_oldest_even_under_concurrent_issues() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    app.patch(
        "/api/v1/reseller",
        &acme.key,
        json!({"max_tokens_per_user": 3}),
    )
    .await
    .expect(200);
    let first = issue(&app, &acme.key, "ann@x.test", json!({}))
        .await
        .expect(201);
    let user = first.body["user_id"].as_str().unwrap().to_string();

    let calls = (0..24).map(|_| issue(&app, &acme.key, "ann@x.test", json!({})));
    let replies = futures_util::future::join_all(calls).await;
    let mut secrets: Vec<(String, String)> =
        vec![(first.body["id"].as_str().unwrap().into(), secret(&first))];
    for r in replies {
        let r = r.expect(201);
        secrets.push((r.body["id"].as_str().unwrap().into(), secret(&r)));
    }

    let listed = app
        .get(&format!("/api/v1/users/{user}/access_tokens"), &acme.key)
        .await
        .expect(200);
    let live: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(live.len(), 3, "never more than the cap: {}", listed.text);
    // The first token, issued before the others, was the oldest: revoked.
    assert!(!live.contains(&secrets[0].0.as_str()));
    app.get("/api/v1/user", &secrets[0].1)
        .await
        .expect_error(401, "unauthorized");
    let mut working = 0;
    for (id, s) in &secrets {
        let status = app.get("/api/v1/user", s).await.status;
        assert!(status == 200 || status == 401, "{status}");
        if status == 200 {
            working += 1;
            assert!(live.contains(&id.as_str()), "a revoked token still works");
        }
    }
    assert_eq!(working, 3);
    let u = app
        .get(&format!("/api/v1/users/{user}"), &acme.key)
        .await
        .expect(200);
    assert_eq!(u.body["token_count"], 3);
}

#[tokio::test]
async fn the_sweeper_removes_expired_tokens_from_every_index() {
    let app = TestApp::spawn_with(&["--token-sweep-interval", "1"]).await;
    let acme = app.reseller("Acme").await;
    let mut expiring = Vec::new();
    for _ in 0..5 {
        let r = issue(&app, &acme.key, "ann@x.test", json!({"expires_in": 60}))
            .await
            .expect(201);
        expiring.push(secret(&r));
    }
    let lasting = issue(&app, &acme.key, "ann@x.test", json!({"expires_in": 86_400}))
        .await
        .expect(201);
    let user = lasting.body["user_id"].as_str().unwrap().to_string();
    let count_path = format!("/api/v1/users/{user}");
    assert_eq!(token_count(&app, &count_path, &acme.key).await, 6);

    app.advance_clock(61).await;
    // Expired tokens are refused at once, before any sweep.
    app.get("/api/v1/user", &expiring[0])
        .await
        .expect_error(401, "unauthorized");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while token_count(&app, &count_path, &acme.key).await != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sweeper never ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listed = app
        .get(&format!("/api/v1/users/{user}/access_tokens"), &acme.key)
        .await
        .expect(200);
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    assert_eq!(listed.body[0]["id"], lasting.body["id"]);
    // Any acknowledged write after the sweep was seen is flushed with it (one log for all).
    issue(&app, &acme.key, "other@x.test", json!({}))
        .await
        .expect(201);

    // After a restart (the clock is real again) the swept tokens stay gone and the count holds.
    let app = app.restart().await;
    assert_eq!(token_count(&app, &count_path, &acme.key).await, 1);
    for s in &expiring {
        app.get("/api/v1/user", s)
            .await
            .expect_error(401, "unauthorized");
    }
    app.get("/api/v1/user", &secret(&lasting)).await.expect(200);
}

/// A kill -9 at any point of a sweep through a backlog (one token per batch, so the kill lands
/// between and inside many batches) loses nothing and leaves nothing half done: after every
/// restart each user's count equals the tokens listed for it, the lasting tokens work, and the
/// next sweep finishes the job.
/// Checks each user's count against its listed tokens and its lasting token (the last of
/// `users`' pairs); returns how many expired tokens are left in all.
async fn consistent(app: &TestApp, key: &str, users: &[(String, String)]) -> u64 {
    let mut left = 0;
    for (path, lasting) in users {
        let count = token_count(app, path, key).await.as_u64().unwrap();
        let listed = app
            .get(&format!("{path}/access_tokens?per_page=100"), key)
            .await
            .expect(200);
        let listed = listed.body.as_array().unwrap().len() as u64;
        assert_eq!(count, listed, "{path}: the count and the list disagree");
        assert!((1..=9).contains(&count), "{path}: {count} tokens");
        app.get("/api/v1/user", lasting).await.expect(200);
        left += count - 1;
    }
    left
}

#[tokio::test]
async fn a_kill_9_during_a_sweep_leaves_every_index_consistent() {
    let args = ["--token-sweep-interval", "1", "--token-sweep-batch", "1"];
    let mut app = TestApp::spawn_with(&args).await;
    let acme = app.reseller("Acme").await;
    let mut users = Vec::new();
    for u in 0..10 {
        let email = format!("user{u}@sweep.test");
        for _ in 0..8 {
            issue(&app, &acme.key, &email, json!({"expires_in": 60}))
                .await
                .expect(201);
        }
        let lasting = issue(&app, &acme.key, &email, json!({"expires_in": 86_400}))
            .await
            .expect(201);
        let user = lasting.body["user_id"].as_str().unwrap().to_string();
        users.push((format!("/api/v1/users/{user}"), secret(&lasting)));
    }
    // The sweep starts within a second of the clock's move; kills land across it.
    for (round, wait_ms) in [150u64, 450, 800, 1_100, 1_400].into_iter().enumerate() {
        app.advance_clock(61).await;
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        app = app.restart().await;
        let left = consistent(&app, &acme.key, &users).await;
        eprintln!("round {round}: killed after {wait_ms} ms, {left} expired tokens left");
    }
    app.advance_clock(61).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for (path, _) in &users {
        while token_count(&app, path, &acme.key).await != 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the sweep never finished"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(consistent(&app, &acme.key, &users).await, 0);
}

#[tokio::test]
async fn users_and_resellers_list_and_revoke_tokens() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let globex = app.reseller("Globex").await;
    let a1 = issue(&app, &acme.key, "ann@x.test", json!({}))
        .await
        .expect(201);
    let a2 = issue(&app, &acme.key, "ann@x.test", json!({}))
        .await
        .expect(201);
    let a3 = issue(&app, &acme.key, "ann@x.test", json!({}))
        .await
        .expect(201);
    let bob = issue(&app, &acme.key, "bob@x.test", json!({}))
        .await
        .expect(201);
    let ann = a1.body["user_id"].as_str().unwrap().to_string();
    let bob_id = bob.body["user_id"].as_str().unwrap().to_string();
    let tokens_path = format!("/api/v1/users/{ann}/access_tokens");

    // Masked, never the secret; the user sees its own list.
    app.get("/api/v1/user", &secret(&a1)).await.expect(200);
    let listed = app.get(&tokens_path, &secret(&a1)).await.expect(200);
    let list = listed.body.as_array().unwrap();
    assert_eq!(list.len(), 3);
    let s1 = secret(&a1);
    assert_eq!(list[0]["masked"], format!("rt_…{}", &s1[s1.len() - 4..]));
    assert!(list[0]["last_used_at"].is_string(), "{}", listed.text);
    assert!(list[1]["last_used_at"].is_null());
    for s in [&a1, &a2, &a3] {
        assert!(!listed.text.contains(&secret(s)));
    }
    // Nobody else sees or revokes them.
    app.get(&tokens_path, &secret(&bob))
        .await
        .expect_error(404, "not_found");
    app.get(&tokens_path, &globex.key)
        .await
        .expect_error(404, "not_found");
    let a2_path = format!("/api/v1/access_tokens/{}", a2.body["id"].as_str().unwrap());
    app.delete(&a2_path, &secret(&bob))
        .await
        .expect_error(404, "not_found");
    app.delete(&a2_path, &globex.key)
        .await
        .expect_error(404, "not_found");
    app.delete(&format!("/api/v1/users/{ann}/access_tokens"), &secret(&bob))
        .await
        .expect_error(404, "not_found");

    // The user revokes one of its own; the reseller logs it out everywhere.
    app.delete(&a2_path, &secret(&a1)).await.expect(204);
    app.get("/api/v1/user", &secret(&a2))
        .await
        .expect_error(401, "unauthorized");
    app.delete(&a2_path, &secret(&a1))
        .await
        .expect_error(404, "not_found");
    app.delete(&format!("/api/v1/users/{ann}/access_tokens"), &acme.key)
        .await
        .expect(204);
    for s in [&a1, &a3] {
        app.get("/api/v1/user", &secret(s))
            .await
            .expect_error(401, "unauthorized");
    }
    app.get("/api/v1/user", &secret(&bob)).await.expect(200);
    let u = app
        .get(&format!("/api/v1/users/{ann}"), &acme.key)
        .await
        .expect(200);
    assert_eq!(u.body["token_count"], 0);
    let b = app
        .get(&format!("/api/v1/users/{bob_id}"), &acme.key)
        .await
        .expect(200);
    assert_eq!(b.body["token_count"], 1);

    let log = app.get("/api/v1/audit", &acme.key).await.expect(200);
    let routes: Vec<(&str, &str)> = log.body.as_array().unwrap()[..2]
        .iter()
        .map(|e| {
            (
                e["route"].as_str().unwrap(),
                e["actor_kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        routes,
        vec![
            ("/api/v1/users/{id}/access_tokens", "api_key"),
            ("/api/v1/access_tokens/{id}", "user"),
        ]
    );
}

async fn token_count(app: &TestApp, user_path: &str, key: &str) -> Value {
    app.get(user_path, key).await.expect(200).body["token_count"].clone()
}
