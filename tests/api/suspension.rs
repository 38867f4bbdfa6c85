//! Suspending a client user: its tokens are refused with 403 `user_suspended`, its sites show the
//! reseller's `suspended` page (503), the reseller still manages it, nothing is deleted, and
//! unsuspending restores both at once.

use crate::helpers::TestApp;
use crate::sites::{zip_deploy, zip_of};
use serde_json::json;

async fn edge(app: &TestApp, host: &str) -> (u16, String) {
    let r = app
        .client
        .get(app.url("/"))
        .header("host", host)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn a_suspended_users_tokens_and_sites_stop_until_unsuspended() {
    let app = TestApp::spawn().await;
    let a = app.reseller("Suspend A").await;
    let b = app.reseller("Suspend B").await;
    let token = a.access_token(&app, "client@a.test").await;
    let site = app
        .post("/api/v1/sites", &token.token, json!({"name": "suspend-me"}))
        .await
        .expect(201)
        .body;
    let site_id = site["id"].as_str().unwrap();
    zip_deploy(
        &app,
        &token.token,
        site_id,
        zip_of(&[("index.html", b"<p>LIVE</p>")]),
    )
    .await
    .expect(200);
    let host = "suspend-me.localhost";
    assert_eq!(edge(&app, host).await, (200, "<p>LIVE</p>".into()));
    app.get("/api/v1/user", &token.token).await.expect(200);

    // Only the reseller suspends, with a reason; another reseller cannot even see the user.
    let path = format!("/api/v1/users/{}/suspend", token.user_id);
    app.post(&path, &b.key, json!({"reason": "unpaid"}))
        .await
        .expect_error(404, "not_found");
    app.post(&path, &token.token, json!({"reason": "unpaid"}))
        .await
        .expect_error(403, "forbidden");
    app.post(&path, &a.key, json!({"reason": ""}))
        .await
        .expect_error(400, "invalid_request");
    let suspended = app
        .post(&path, &a.key, json!({"reason": "invoice 42 unpaid"}))
        .await
        .expect(200)
        .body;
    assert_eq!(suspended["suspension"]["reason"], "invoice 42 unpaid");

    app.get("/api/v1/user", &token.token)
        .await
        .expect_error(403, "user_suspended");
    let (status, body) = edge(&app, host).await;
    assert_eq!(status, 503);
    assert!(!body.contains("LIVE"));
    // The reseller's own page for it.
    let put = app
        .client
        .put(app.url("/api/v1/reseller/pages/suspended"))
        .bearer_auth(&a.key)
        .header("content-type", "text/html")
        .body("<h1>ACCOUNT ON HOLD</h1>")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    assert_eq!(
        edge(&app, host).await,
        (503, "<h1>ACCOUNT ON HOLD</h1>".into())
    );

    // The reseller still manages the user, and sees the suspension.
    let listed = app.get("/api/v1/users", &a.key).await.expect(200).body;
    assert_eq!(listed[0]["suspension"]["reason"], "invoice 42 unpaid");
    app.get(
        &format!("/api/v1/users/{}/access_tokens", token.user_id),
        &a.key,
    )
    .await
    .expect(200);

    app.post(
        &format!("/api/v1/users/{}/unsuspend", token.user_id),
        &a.key,
        json!({}),
    )
    .await
    .expect(200);
    app.get("/api/v1/user", &token.token).await.expect(200);
    assert_eq!(edge(&app, host).await, (200, "<p>LIVE</p>".into()));
    let user = app
        .get(&format!("/api/v1/users/{}", token.user_id), &a.key)
        .await
        .expect(200)
        .body;
    assert!(user["suspension"].is_null());
}
