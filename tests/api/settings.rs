//! Reseller settings and custom pages.

use crate::helpers::{reply, TestApp};
use serde_json::json;

#[tokio::test]
async fn settings_validate_and_preview_domains_are_unique() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let globex = app.reseller("Globex").await;
    let r = app
        .patch(
            "/api/v1/reseller",
            &acme.key,
            json!({"name": "Acme Hosting", "notification_email": "noreply@acme.test"}),
        )
        .await
        .expect(200);
    assert_eq!(r.body["name"], "Acme Hosting");
    app.set_preview_domain(&acme, "Sites.Acme.TEST.").await;
    let me = app.get("/api/v1/reseller", &acme.key).await.expect(200);
    assert_eq!(me.body["preview_domain"], "sites.acme.test");
    app.patch(
        "/api/v1/reseller",
        &globex.key,
        json!({"preview_domain": "sites.acme.test"}),
    )
    .await
    .expect_error(400, "preview_domain_taken");
    app.patch(
        "/api/v1/reseller",
        &globex.key,
        json!({"preview_domain": "not a domain"}),
    )
    .await
    .expect_error(400, "invalid_request");
    app.patch(
        "/api/v1/reseller",
        &globex.key,
        json!({"notification_email": "nope"}),
    )
    .await
    .expect_error(400, "invalid_request");
    // Releasing a preview domain is at once, and frees it for others (who must prove it).
    app.patch(
        "/api/v1/reseller",
        &acme.key,
        json!({"preview_domain": null}),
    )
    .await
    .expect(200);
    let r = app
        .patch(
            "/api/v1/reseller",
            &globex.key,
            json!({"preview_domain": "sites.acme.test"}),
        )
        .await
        .expect(200);
    assert_eq!(r.body["preview_domain"], json!(null));
    assert_eq!(
        r.body["preview_domain_pending"]["domain"],
        "sites.acme.test"
    );
    let me = app.get("/api/v1/reseller", &acme.key).await.expect(200);
    assert_eq!(me.body["preview_domain"], json!(null));
    assert_eq!(me.body["notification_email"], "noreply@acme.test");
}

#[tokio::test]
async fn custom_pages_round_trip_with_their_rules() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let put = |kind: &str, ctype: &str, body: String| {
        let req = app
            .client
            .put(app.url(&format!("/api/v1/reseller/pages/{kind}")))
            .bearer_auth(&acme.key)
            .header("content-type", ctype)
            .body(body);
        async move { reply(req.send().await.unwrap()).await }
    };
    app.get("/api/v1/reseller/pages/not_found", &acme.key)
        .await
        .expect_error(404, "not_found");
    put(
        "not_found",
        "text/html; charset=utf-8",
        "<h1>Gone</h1>".into(),
    )
    .await
    .expect(204);
    let got = app
        .get("/api/v1/reseller/pages/not_found", &acme.key)
        .await
        .expect(200);
    assert_eq!(got.text, "<h1>Gone</h1>");
    assert!(got.header("content-type").unwrap().starts_with("text/html"));

    put(
        "password",
        "text/html",
        "<form><input name=pass></form>".into(),
    )
    .await
    .expect_error(400, "invalid_password_page");
    put(
        "password",
        "text/html",
        "<form method=post><input type=password name=password></form>".into(),
    )
    .await
    .expect(204);
    put("form_success", "application/json", "{}".into())
        .await
        .expect_error(400, "invalid_request");
    put("form_success", "text/html", "x".repeat(512 * 1024 + 1))
        .await
        .expect_error(413, "payload_too_large");
    put("form_success", "text/html", "x".repeat(512 * 1024))
        .await
        .expect(204);
    put("nonsense", "text/html", "<p>".into())
        .await
        .expect_error(404, "not_found");

    app.delete("/api/v1/reseller/pages/not_found", &acme.key)
        .await
        .expect(204);
    app.get("/api/v1/reseller/pages/not_found", &acme.key)
        .await
        .expect_error(404, "not_found");
    // Another reseller sees its own (empty) pages.
    let globex = app.reseller("Globex").await;
    app.get("/api/v1/reseller/pages/password", &globex.key)
        .await
        .expect_error(404, "not_found");
}

/// A mistyped field on resellerd's own endpoints is refused, naming it and the fields expected,
/// and nothing is made; Netlify's endpoints keep taking what the real clients send.
#[tokio::test]
async fn unknown_fields_are_refused_by_name_on_resellerds_own_endpoints() {
    let app = TestApp::spawn().await;
    let r = app
        .post(
            "/api/v1/admin/resellers",
            &app.operator,
            json!({"name": "Y", "email": "y@x.test", "emial": "z"}),
        )
        .await
        .expect_error(400, "invalid_request");
    assert!(
        r.text.contains("emial") && r.text.contains("email"),
        "{}",
        r.text
    );
    let listed = app
        .get("/api/v1/admin/resellers", &app.operator)
        .await
        .expect(200);
    assert_eq!(listed.body.as_array().unwrap().len(), 0, "{}", listed.text);
    let acme = app.reseller("Acme").await;
    for (path, body) in [
        ("/api/v1/keys", json!({"name": "k", "permisions": ["*"]})),
        (
            "/api/v1/domains",
            json!({"domain": "a.example", "emial": "a@a.example"}),
        ),
        (
            "/api/v1/payment_methods",
            json!({"label": "x", "type": "card", "referance": "1"}),
        ),
    ] {
        let r = app
            .post(path, &acme.key, body)
            .await
            .expect_error(400, "invalid_request");
        assert!(r.text.contains("unknown field"), "{path}: {}", r.text);
    }
    app.patch("/api/v1/reseller", &acme.key, json!({"nmae": "x"}))
        .await
        .expect_error(400, "invalid_request");
    // Netlify's site endpoints take extra fields (netlify-cli sends many).
    let ann = acme.access_token(&app, "ann@acme.test").await;
    app.post(
        "/api/v1/sites",
        &ann.token,
        json!({"name": "lenient", "processing_settings": {"html": {"pretty_urls": true}}}),
    )
    .await
    .expect(201);
}
