//! Foundation: operator endpoints, reseller keys, settings, pages, users and tokens, errors,
//! persistence and crash durability.

use crate::helpers::TestApp;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn operator_creates_a_reseller_whose_key_works() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    assert!(acme.key.starts_with("sk_org_"));
    let me = app.get("/api/v1/reseller", &acme.key).await.expect(200);
    assert_eq!(me.body["id"], acme.id.as_str());
    assert_eq!(me.body["name"], "Acme");
    let list = app
        .get("/api/v1/admin/resellers", &app.operator)
        .await
        .expect(200);
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    // A reseller key is not the operator.
    app.get("/api/v1/admin/resellers", &acme.key)
        .await
        .expect_error(403, "forbidden");
}

#[tokio::test]
async fn errors_are_json_with_the_contract_shape() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    app.call(Method::GET, "/api/v1/users", None, None)
        .await
        .expect_error(401, "unauthorized");
    app.get("/api/v1/users", "sk_org_not-a-real-key")
        .await
        .expect_error(401, "unauthorized");
    app.get("/api/v1/no/such/path", &acme.key)
        .await
        .expect_error(404, "not_found");
    app.call(Method::PUT, "/api/v1/users", Some(&acme.key), None)
        .await
        .expect_error(405, "method_not_allowed");
    let bad = app
        .client
        .post(app.url("/api/v1/keys"))
        .bearer_auth(&acme.key)
        .header("content-type", "application/json")
        .body("{\"name\":")
        .send()
        .await
        .unwrap();
    crate::helpers::reply(bad)
        .await
        .expect_error(400, "invalid_json");
    app.post(
        "/api/v1/access_tokens",
        &acme.key,
        json!({"user": {"email": "not-an-email"}}),
    )
    .await
    .expect_error(400, "invalid_request");
    let huge = "x".repeat(2 << 20);
    app.post("/api/v1/keys", &acme.key, json!({"name": huge}))
        .await
        .expect_error(413, "payload_too_large");
}

#[tokio::test]
async fn prometheus_metrics_count_requests_by_route_for_the_operator() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let user = acme.access_token(&app, "a@b.test").await;
    app.get(&format!("/api/v1/users/{}", user.user_id), &acme.key)
        .await
        .expect(200);
    app.get("/api/v1/users/nope", &acme.key).await.expect(404);
    app.get("/metrics", &acme.key)
        .await
        .expect_error(403, "forbidden");
    let m = app.get("/metrics", &app.operator).await.expect(200);
    // OpenMetrics, the Prometheus exposition format Prometheus asks for first.
    assert!(m
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text; version=1.0.0"));
    assert!(m.text.ends_with("# EOF\n"), "{}", m.text);
    let text = &m.text;
    assert!(
        text.contains(r#"resellerd_http_requests_total{route="/api/v1/users/{id}",method="GET",status="200"} 1"#),
        "{text}"
    );
    assert!(text.contains(
        r#"resellerd_http_requests_total{route="/api/v1/users/{id}",method="GET",status="404"} 1"#
    ));
    assert!(!text.contains(&user.user_id), "ids never become labels");
    assert!(
        text.contains(
            "resellerd_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/api/v1/access_tokens\"} 1"
        ),
        "{text}"
    );
    let flushes = text
        .lines()
        .find(|l| l.starts_with("resellerd_store_flushes_total "))
        .unwrap();
    assert!(
        flushes.split(' ').nth(1).unwrap().parse::<u64>().unwrap() >= 2,
        "{flushes}"
    );
}

/// The application is built by one call that tests can also make in-process (no child process):
/// the same layers and routes `serve` binds, answering on loopback.
#[actix_web::test]
async fn the_application_builds_and_serves_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let settings = resellerd::config::Settings {
        data_dir: Some(dir.path().join("data")),
        http_addr: Some("127.0.0.1:0".into()),
        https_addr: Some("127.0.0.1:0".into()),
        workers: Some(1),
        ..Default::default()
    };
    let app = resellerd::Application::build(settings).await.unwrap();
    let (http, _) = app.addrs();
    let state = app.state();
    let server = actix_web::rt::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{http}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // The API's layers are there too: no credential is a JSON 401.
    let users = client
        .get(format!("http://{http}/api/v1/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(users.status(), 401);
    let body: serde_json::Value = users.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
    assert!(state.store.is_ready());
    server.abort();
}
