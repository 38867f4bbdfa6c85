//! A refused request changes nothing: each refusal path of the compound endpoints (a token for a
//! new client, onboarding a domain with a new client, a deploy, a plan change) is driven, and
//! what the API shows of the store is the same before and after.

use crate::helpers::{noise, TestApp};
use crate::sites::{sha1, upload};
use serde_json::{json, Value};

/// What a reseller's account shows: its users, domains, sites and each site's deploys.
async fn state_of(app: &TestApp, key: &str) -> Value {
    let mut sites = Vec::new();
    let listed = app.get("/api/v1/sites", key).await.expect(200).body;
    for s in listed.as_array().unwrap() {
        let id = s["id"].as_str().unwrap();
        let deploys = app
            .get(&format!("/api/v1/sites/{id}/deploys"), key)
            .await
            .expect(200)
            .body;
        sites.push(json!({"site": s["name"], "deploys": deploys}));
    }
    json!({
        "users": app.get("/api/v1/users", key).await.expect(200).body,
        "domains": app.get("/api/v1/domains", key).await.expect(200).body,
        "sites": sites,
    })
}

#[tokio::test]
async fn refused_compound_requests_change_nothing() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Refusals").await;
    let ann = acme.access_token(&app, "ann@refusals.test").await;
    app.post("/api/v1/sites", &ann.token, json!({"name": "annsite"}))
        .await
        .expect(201);
    app.post(
        "/api/v1/domains",
        &acme.key,
        json!({"domain": "taken.example", "email": "ann@refusals.test"}),
    )
    .await
    .expect(201);
    // The operator caps the reseller at the users it has.
    app.patch(
        &format!("/api/v1/admin/resellers/{}", acme.id),
        &app.operator,
        json!({"limits": {"max_users": 1}}),
    )
    .await
    .expect(200);
    let before = state_of(&app, &acme.key).await;

    // A token for a new client: a bad email, and one client too many.
    for (body, status, code) in [
        (
            json!({"user": {"email": "not an email"}}),
            400,
            "invalid_request",
        ),
        (
            json!({"user": {"email": "new@refusals.test"}}),
            403,
            "quota_exceeded",
        ),
    ] {
        app.post("/api/v1/access_tokens", &acme.key, body)
            .await
            .expect_error(status, code);
    }
    // Onboarding a domain with a new client: a site of another client, a taken name, a name
    // that is the server's, a new client past the cap.
    for (body, code) in [
        (
            json!({"domain": "new.example", "email": "other@refusals.test", "site_id": "annsite"}),
            "invalid_request",
        ),
        (
            json!({"domain": "taken.example", "email": "other@refusals.test"}),
            "domain_taken",
        ),
        (
            json!({"domain": "x.localhost", "email": "other@refusals.test"}),
            "name_reserved",
        ),
    ] {
        app.post("/api/v1/domains", &acme.key, body)
            .await
            .expect_error(400, code);
    }
    app.post(
        "/api/v1/domains",
        &acme.key,
        json!({"domain": "fresh.example", "email": "other@refusals.test"}),
    )
    .await
    .expect_error(403, "quota_exceeded");
    // A plan change to a plan that does not exist.
    app.patch(
        &format!("/api/v1/users/{}", ann.user_id),
        &acme.key,
        json!({"plan_id": "no-such-plan"}),
    )
    .await
    .expect_error(404, "not_found");
    assert_eq!(state_of(&app, &acme.key).await, before);

    // A deploy whose file map is over the plan: content the client uploaded to a deploy it
    // then canceled counts again when a new map names it, and past the plan the deploy is
    // refused and leaves no record.
    let plan = app
        .post(
            "/api/v1/plans",
            &acme.key,
            json!({"name": "Two", "max_storage_mb": 2}),
        )
        .await
        .expect(201)
        .body;
    let plan_path = format!("/api/v1/plans/{}", plan["id"].as_str().unwrap());
    app.patch(
        &format!("/api/v1/users/{}", ann.user_id),
        &acme.key,
        json!({"plan_id": plan["id"]}),
    )
    .await
    .expect(200);
    let big = noise(1_500_000, 3);
    let d = app
        .post(
            "/api/v1/sites/annsite/deploys",
            &ann.token,
            json!({"files": {"/big.bin": sha1(&big), "/never.txt": sha1(b"never sent")}}),
        )
        .await
        .expect(200);
    let id = d.body["id"].as_str().unwrap().to_string();
    assert_eq!(upload(&app, &ann.token, &id, "big.bin", &big).await, 200);
    let canceled = app
        .post(
            &format!("/api/v1/deploys/{id}/cancel"),
            &ann.token,
            json!({}),
        )
        .await;
    assert_eq!(canceled.body["state"], "error", "{}", canceled.text);
    app.patch(&plan_path, &acme.key, json!({"max_storage_mb": 1}))
        .await
        .expect(200);
    let before = state_of(&app, &acme.key).await;
    let r = app
        .post(
            "/api/v1/sites/annsite/deploys",
            &ann.token,
            json!({"files": {"/big.bin": sha1(&big)}}),
        )
        .await
        .expect_error(403, "quota_exceeded");
    assert_eq!(r.body["limit"], "max_storage_mb", "{}", r.text);
    assert_eq!(state_of(&app, &acme.key).await, before);
}
