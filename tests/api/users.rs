//! Users and access tokens: idempotent creation by email, revocation, listing with filters and
//! pagination, the current user, and isolation between resellers.

use crate::helpers::TestApp;
use serde_json::json;

#[tokio::test]
async fn access_tokens_create_the_user_once_per_email() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let first = app
        .post(
            "/api/v1/access_tokens",
            &acme.key,
            json!({"user": {"email": "Name@Mail.com", "uid": "12345"}}),
        )
        .await
        .expect(201);
    for field in ["id", "access_token", "user_id", "created_at", "email"] {
        assert!(
            first.body[field].is_string(),
            "{field} missing: {}",
            first.text
        );
    }
    assert_eq!(first.body["email"], "name@mail.com");
    let second = app
        .post(
            "/api/v1/access_tokens",
            &acme.key,
            json!({"user": {"email": "name@MAIL.com"}}),
        )
        .await
        .expect(201);
    assert_eq!(first.body["user_id"], second.body["user_id"]);
    assert_ne!(first.body["access_token"], second.body["access_token"]);

    let users = app.get("/api/v1/users", &acme.key).await.expect(200);
    assert_eq!(users.body.as_array().unwrap().len(), 1);
    assert_eq!(users.body[0]["uid"], "12345");
    assert_eq!(users.body[0]["token_count"], 2);

    // Both tokens work as the user.
    for r in [&first, &second] {
        let me = app
            .get("/api/v1/user", r.body["access_token"].as_str().unwrap())
            .await
            .expect(200);
        assert_eq!(me.body["id"], first.body["user_id"]);
        assert_eq!(me.body["email"], "name@mail.com");
    }
    // Revoking one leaves the other.
    app.delete(
        &format!(
            "/api/v1/access_tokens/{}",
            first.body["id"].as_str().unwrap()
        ),
        &acme.key,
    )
    .await
    .expect(204);
    app.get("/api/v1/user", first.body["access_token"].as_str().unwrap())
        .await
        .expect_error(401, "unauthorized");
    app.get(
        "/api/v1/user",
        second.body["access_token"].as_str().unwrap(),
    )
    .await
    .expect(200);

    app.post(
        "/api/v1/access_tokens",
        &acme.key,
        json!({"user": {"email": "a@"}}),
    )
    .await
    .expect_error(400, "invalid_request");
    app.post("/api/v1/access_tokens", &acme.key, json!({"user": {}}))
        .await
        .expect_error(400, "invalid_request");
    app.post(
        "/api/v1/access_tokens",
        &acme.key,
        json!({"email": "a@b.test"}),
    )
    .await
    .expect_error(400, "invalid_request");
}

#[tokio::test]
async fn users_filter_paginate_and_delete() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    for i in 0..5 {
        app.post(
            "/api/v1/access_tokens",
            &acme.key,
            json!({"user": {"email": format!("u{i}@shop.test"), "uid": i}}),
        )
        .await
        .expect(201);
    }
    let page = app
        .get("/api/v1/users?per_page=2&page=2", &acme.key)
        .await
        .expect(200);
    assert_eq!(page.body.as_array().unwrap().len(), 2);
    assert_eq!(
        page.body[0]["email"], "u2@shop.test",
        "users are listed by creation"
    );
    let link = page.header("link").unwrap().to_string();
    assert!(link.contains("page=3&per_page=2>; rel=\"next\""), "{link}");
    assert!(link.contains("page=1&per_page=2>; rel=\"prev\""), "{link}");
    assert!(link.contains("rel=\"last\""), "{link}");
    app.get("/api/v1/users?per_page=101", &acme.key)
        .await
        .expect_error(400, "invalid_request");
    app.get("/api/v1/users?page=abc", &acme.key)
        .await
        .expect_error(400, "invalid_request");

    let by_email = app
        .get("/api/v1/users?email=U3@SHOP.test", &acme.key)
        .await
        .expect(200);
    assert_eq!(by_email.body.as_array().unwrap().len(), 1);
    // uid 44 starts like uid 4: the lookup takes only the whole uid.
    app.post(
        "/api/v1/access_tokens",
        &acme.key,
        json!({"user": {"email": "u44@shop.test", "uid": "44"}}),
    )
    .await
    .expect(201);
    let by_uid = app.get("/api/v1/users?uid=4", &acme.key).await.expect(200);
    assert_eq!(by_uid.body.as_array().unwrap().len(), 1, "{}", by_uid.text);
    assert_eq!(by_uid.body[0]["email"], "u4@shop.test");
    // The email filter is an exact (case-insensitive) index lookup: a part matches nobody.
    let partial = app
        .get("/api/v1/users?email=SHOP.test", &acme.key)
        .await
        .expect(200);
    assert_eq!(partial.header("x-total-count"), Some("0"));
    assert_eq!(partial.body, json!([]));
    let both = app
        .get("/api/v1/users?uid=4&email=u44", &acme.key)
        .await
        .expect(200);
    assert_eq!(both.body.as_array().unwrap().len(), 0, "{}", both.text);

    let id = by_uid.body[0]["id"].as_str().unwrap().to_string();
    app.get(&format!("/api/v1/users/{id}"), &acme.key)
        .await
        .expect(200);
    let token = acme.access_token(&app, "u4@shop.test").await;
    assert_eq!(token.user_id, id);
    app.delete(&format!("/api/v1/users/{id}"), &acme.key)
        .await
        .expect(204);
    app.get(&format!("/api/v1/users/{id}"), &acme.key)
        .await
        .expect_error(404, "not_found");
    app.get("/api/v1/user", &token.token)
        .await
        .expect_error(401, "unauthorized");
    let gone = app.get("/api/v1/users?uid=4", &acme.key).await.expect(200);
    assert_eq!(gone.body.as_array().unwrap().len(), 0, "{}", gone.text);
    // The email is free again: a new user is created.
    let again = acme.access_token(&app, "u4@shop.test").await;
    assert_ne!(again.user_id, id);
}

#[tokio::test]
async fn the_current_user_for_both_principals() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let me = app.get("/api/v1/user", &acme.key).await.expect(200);
    assert_eq!(me.body["id"], acme.id.as_str());
    assert_eq!(me.body["full_name"], "Acme");
    let user = acme.access_token(&app, "client@example.test").await;
    let me = app.get("/api/v1/user", &user.token).await.expect(200);
    assert_eq!(me.body["id"], user.user_id.as_str());
    // A user token is not a reseller key.
    app.get("/api/v1/users", &user.token)
        .await
        .expect_error(403, "forbidden");
    app.post("/api/v1/keys", &user.token, json!({"name": "x"}))
        .await
        .expect_error(403, "forbidden");
    app.get("/api/v1/admin/resellers", &user.token)
        .await
        .expect_error(403, "forbidden");
}

#[tokio::test]
async fn resellers_never_see_each_others_data() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let globex = app.reseller("Globex").await;
    let user = acme.access_token(&app, "client@example.test").await;
    let b = &globex.key;
    app.get(&format!("/api/v1/users/{}", user.user_id), b)
        .await
        .expect_error(404, "not_found");
    app.delete(&format!("/api/v1/users/{}", user.user_id), b)
        .await
        .expect_error(404, "not_found");
    app.delete(&format!("/api/v1/access_tokens/{}", user.id), b)
        .await
        .expect_error(404, "not_found");
    app.delete(&format!("/api/v1/keys/{}", acme.key_id), b)
        .await
        .expect_error(404, "not_found");
    assert_eq!(
        app.get("/api/v1/users", b).await.expect(200).body,
        json!([])
    );
    assert_eq!(
        app.get("/api/v1/keys", b)
            .await
            .expect(200)
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The same email under another reseller is another user.
    let other = globex.access_token(&app, "client@example.test").await;
    assert_ne!(other.user_id, user.user_id);
    // Everything of Acme still works.
    app.get(&format!("/api/v1/users/{}", user.user_id), &acme.key)
        .await
        .expect(200);
    app.get("/api/v1/user", &user.token).await.expect(200);
}

#[tokio::test]
async fn concurrent_tokens_for_one_email_make_one_user_and_counts_follow() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let calls = (0..12).map(|_| {
        app.post(
            "/api/v1/access_tokens",
            &acme.key,
            json!({"user": {"email": "same@x.test"}}),
        )
    });
    let replies = futures_util::future::join_all(calls).await;
    let ids: std::collections::HashSet<String> = replies
        .into_iter()
        .map(|r| r.expect(201).body["user_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1, "one email, one user");
    acme.access_token(&app, "other@x.test").await;
    let list = app.get("/api/v1/users", &acme.key).await.expect(200);
    assert_eq!(list.header("x-total-count"), Some("2"));
    assert_eq!(list.body[0]["token_count"], 12);
    let id = ids.into_iter().next().unwrap();
    app.delete(&format!("/api/v1/users/{id}"), &acme.key)
        .await
        .expect(204);
    assert_eq!(
        app.get("/api/v1/users", &acme.key)
            .await
            .header("x-total-count"),
        Some("1")
    );
}

/// Resolved credentials are cached; every change to what a token stands for shows at once.
#[tokio::test]
async fn a_used_token_sees_its_user_change_and_deletion_at_once() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let token = acme.access_token(&app, "cached@shop.test").await;
    for _ in 0..3 {
        let me = app.get("/api/v1/user", &token.token).await.expect(200);
        assert_eq!(me.body["uid"], serde_json::Value::Null);
    }
    app.post(
        "/api/v1/access_tokens",
        &acme.key,
        json!({"user": {"email": "cached@shop.test", "uid": "crm-7"}}),
    )
    .await
    .expect(201);
    let me = app.get("/api/v1/user", &token.token).await.expect(200);
    assert_eq!(me.body["uid"], "crm-7", "the cached user was refreshed");
    let by_uid = app
        .get("/api/v1/users?uid=crm-7", &acme.key)
        .await
        .expect(200);
    assert_eq!(
        by_uid.body[0]["id"],
        token.user_id.as_str(),
        "a uid recorded later is found"
    );
    app.delete(&format!("/api/v1/users/{}", token.user_id), &acme.key)
        .await
        .expect(204);
    app.get("/api/v1/user", &token.token)
        .await
        .expect_error(401, "unauthorized");
}
