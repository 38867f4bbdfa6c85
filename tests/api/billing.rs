//! Payment methods, the charges ledger and operator prices.

use crate::helpers::TestApp;
use serde_json::json;

#[tokio::test]
async fn payment_methods_are_per_reseller() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let globex = app.reseller("Globex").await;
    let pm = app
        .post(
            "/api/v1/payment_methods",
            &acme.key,
            json!({"label": "Main card", "type": "card", "reference": "visa-4242"}),
        )
        .await
        .expect(201);
    let id = pm.body["id"].as_str().unwrap().to_string();
    assert_eq!(pm.body["type"], "card");
    app.post(
        "/api/v1/payment_methods",
        &acme.key,
        json!({"label": "x", "type": "bitcoin", "reference": "y"}),
    )
    .await
    .expect_error(400, "invalid_request");
    app.post(
        "/api/v1/payment_methods",
        &acme.key,
        json!({"label": "", "type": "invoice", "reference": "y"}),
    )
    .await
    .expect_error(400, "invalid_request");
    assert_eq!(
        app.get("/api/v1/payment_methods", &acme.key)
            .await
            .expect(200)
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        app.get("/api/v1/payment_methods", &globex.key)
            .await
            .expect(200)
            .body,
        json!([])
    );
    app.delete(&format!("/api/v1/payment_methods/{id}"), &globex.key)
        .await
        .expect_error(404, "not_found");
    assert_eq!(
        app.get("/api/v1/charges", &acme.key).await.expect(200).body,
        json!([])
    );
    app.delete(&format!("/api/v1/payment_methods/{id}"), &acme.key)
        .await
        .expect(204);
    assert_eq!(
        app.get("/api/v1/payment_methods", &acme.key)
            .await
            .expect(200)
            .body,
        json!([])
    );

    let ro = acme.key_with(&app, json!(["users:read"])).await;
    app.get("/api/v1/payment_methods", &ro)
        .await
        .expect_error(403, "forbidden");
}

#[tokio::test]
async fn the_operator_sets_prices_per_reseller() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let path = format!("/api/v1/admin/resellers/{}/prices", acme.id);
    let defaults = app.get(&path, &app.operator).await.expect(200);
    assert_eq!(defaults.body["currency"], "USD");
    let body =
        json!({"currency": "eur", "ssl_certificate_cents": 500, "domain_registration_cents": 1500});
    let set = app
        .call(
            reqwest::Method::PUT,
            &path,
            Some(&app.operator),
            Some(body.clone()),
        )
        .await
        .expect(200);
    assert_eq!(set.body["currency"], "EUR");
    assert_eq!(
        app.get(&path, &app.operator).await.expect(200).body["ssl_certificate_cents"],
        500
    );
    app.call(reqwest::Method::PUT, &path, Some(&acme.key), Some(body))
        .await
        .expect_error(403, "forbidden");
    let bad =
        json!({"currency": "euro", "ssl_certificate_cents": 1, "domain_registration_cents": 1});
    app.call(reqwest::Method::PUT, &path, Some(&app.operator), Some(bad))
        .await
        .expect_error(400, "invalid_request");
    app.get("/api/v1/admin/resellers/nope/prices", &app.operator)
        .await
        .expect_error(404, "not_found");
}
