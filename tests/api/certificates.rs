//! Certificates as a paid action, against a real ACME server (pebble) that validates HTTP-01 on
//! resellerd's HTTP listener and resolves names through pebble-challtestsrv: 402 cases, one
//! charge per idempotency key, the certificate served by SNI, and background renewal.

use crate::helpers::TestApp;
use crate::pebble::{ChallTestSrv, Pebble};
use crate::sites::publish_site;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

struct Setup {
    app: TestApp,
    pebble: Pebble,
    dns: ChallTestSrv,
    key: String,
}

/// resellerd with ACME pointed at pebble, a reseller, and a deployed site `shop` whose custom
/// domain `shop.example.test` is verified.
async fn setup(extra: &[&str]) -> Setup {
    let dns = ChallTestSrv::start();
    let mut pebble = Pebble::prepare();
    let (server, directory) = (dns.dns_server(), pebble.directory());
    let ca = pebble.ca_pem.to_string_lossy().to_string();
    let mut args = vec![
        "--dns-server",
        &server,
        "--acme-directory",
        &directory,
        "--acme-ca-bundle",
        &ca,
    ];
    args.extend_from_slice(extra);
    let app = TestApp::spawn_with(&args).await;
    pebble.start(app.http_port(), &dns);

    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@shop.test").await;
    publish_site(
        &app,
        &ann.token,
        "shop",
        &[("index.html", b"<h1>secure shop</h1>")],
    )
    .await;
    let d = app
        .post(
            "/api/v1/domains",
            &acme.key,
            json!({"domain": "shop.example.test", "email": "ann@shop.test", "site_id": "shop"}),
        )
        .await
        .expect(201);
    dns.set_txt(
        "_resellerd.shop.example.test",
        d.body["verification"]["value"].as_str().unwrap(),
    )
    .await;
    let verified = app
        .post(
            &format!("/api/v1/domains/{}/verify", d.body["id"].as_str().unwrap()),
            &acme.key,
            json!({}),
        )
        .await;
    assert_eq!(verified.body["verification_status"], "verified");
    Setup {
        app,
        pebble,
        dns,
        key: acme.key,
    }
}

/// A client that trusts only pebble's issuing root and reaches `shop.example.test` on resellerd.
async fn shop_client(s: &Setup) -> reqwest::Client {
    let root = s.pebble.issuing_root().await;
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).unwrap())
        .resolve(
            "shop.example.test",
            ([127, 0, 0, 1], s.app.https_port).into(),
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_certificate_is_a_paid_action_charged_once_and_served_by_sni() {
    let s = setup(&[]).await;
    let (app, key) = (&s.app, &s.key);
    let url = format!("https://shop.example.test:{}/", app.https_port);
    // Before: the self-signed default certificate, which pebble's root does not sign.
    assert!(shop_client(&s).await.get(&url).send().await.is_err());

    app.post("/api/v1/sites/shop/ssl", key, json!({}))
        .await
        .expect_error(402, "payment_required");
    app.post(
        "/api/v1/sites/shop/ssl",
        key,
        json!({"payment_method_id": "nope"}),
    )
    .await
    .expect_error(402, "payment_required");
    let pm = app
        .post(
            "/api/v1/payment_methods",
            key,
            json!({"label": "Card", "type": "card", "reference": "4242"}),
        )
        .await
        .expect(201);
    let pm_id = pm.body["id"].as_str().unwrap().to_string();
    let gone = app
        .post(
            "/api/v1/payment_methods",
            key,
            json!({"label": "Old", "type": "card", "reference": "1"}),
        )
        .await
        .expect(201);
    let gone_id = gone.body["id"].as_str().unwrap().to_string();
    app.delete(&format!("/api/v1/payment_methods/{gone_id}"), key)
        .await
        .expect(204);
    app.post(
        "/api/v1/sites/shop/ssl",
        key,
        json!({"payment_method_id": gone_id}),
    )
    .await
    .expect_error(402, "payment_required");
    // A site without a verified custom domain is refused before any charge.
    let bob = app
        .post(
            "/api/v1/access_tokens",
            key,
            json!({"user": {"email": "bob@x.test"}}),
        )
        .await
        .expect(201);
    app.post(
        "/api/v1/sites",
        bob.body["access_token"].as_str().unwrap(),
        json!({"name": "plain"}),
    )
    .await
    .expect(201);
    app.post(
        "/api/v1/sites/plain/ssl",
        key,
        json!({"payment_method_id": pm_id}),
    )
    .await
    .expect_error(400, "invalid_request");
    assert_eq!(app.get("/api/v1/charges", key).await.body, json!([]));

    let provision = |idem: &'static str| {
        let req = app
            .client
            .post(app.url("/api/v1/sites/shop/ssl"))
            .bearer_auth(key)
            .header("idempotency-key", idem)
            .json(&json!({"payment_method_id": pm_id}));
        async move { crate::helpers::reply(req.send().await.unwrap()).await }
    };
    let issued = provision("order-1").await.expect(200);
    assert_eq!(issued.body["state"], "issued", "{}", issued.text);
    assert_eq!(issued.body["domains"], json!(["shop.example.test"]));
    assert!(issued.body["issuer"].as_str().unwrap().contains("Pebble"));
    assert!(issued.body["expires_at"].is_string());
    // A retry with the same key returns the same result and charges nothing more.
    let again = provision("order-1").await.expect(200);
    assert_eq!(again.body["charge_id"], issued.body["charge_id"]);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    // The key names that request: with another body it buys nothing.
    let other = app
        .client
        .post(app.url("/api/v1/sites/shop/ssl"))
        .bearer_auth(key)
        .header("idempotency-key", "order-1")
        .json(&json!({}));
    crate::helpers::reply(other.send().await.unwrap())
        .await
        .expect_error(422, "idempotency_key_reused");
    let charges = app.get("/api/v1/charges", key).await.expect(200);
    assert_eq!(charges.body.as_array().unwrap().len(), 1);
    assert_eq!(charges.body[0]["action"], "ssl_certificate");
    assert_eq!(charges.body[0]["subject"], "shop.example.test");
    assert_eq!(charges.body[0]["payment_method_id"], pm_id.as_str());
    assert_eq!(
        app.get("/api/v1/sites/shop/ssl", key)
            .await
            .expect(200)
            .body["state"],
        "issued"
    );

    // The certificate chains to pebble's root and serves the site, without a restart.
    let page = shop_client(&s).await.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("secure shop"));

    // And after a restart it is loaded from the store.
    let app = s.app.restart().await;
    let s = Setup { app, ..s };
    let url = format!("https://shop.example.test:{}/", s.app.https_port);
    assert_eq!(
        shop_client(&s)
            .await
            .get(&url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Deleting the domain's user deletes its certificate and key: no longer served, not even
    // after a restart, and no longer renewed.
    let users = s
        .app
        .get("/api/v1/users?email=ann@shop.test", &s.key)
        .await
        .expect(200);
    let ann = users.body[0]["id"].as_str().unwrap().to_string();
    s.app
        .delete(&format!("/api/v1/users/{ann}"), &s.key)
        .await
        .expect(204);
    assert!(shop_client(&s).await.get(&url).send().await.is_err());
    let app = s.app.restart().await;
    let s = Setup { app, ..s };
    let url = format!("https://shop.example.test:{}/", s.app.https_port);
    assert!(shop_client(&s).await.get(&url).send().await.is_err());
    let _ = &s.dns;
}

#[tokio::test]
async fn certificates_are_renewed_in_the_background_before_expiry() {
    // A renewal window longer than the certificate's life makes every check a renewal.
    let s = setup(&[
        "--acme-renew-before-days",
        "36500",
        "--acme-check-interval",
        "1",
    ])
    .await;
    let (app, key) = (&s.app, &s.key);
    let pm = app
        .post(
            "/api/v1/payment_methods",
            key,
            json!({"label": "Card", "type": "card", "reference": "4242"}),
        )
        .await
        .expect(201);
    let body = json!({"payment_method_id": pm.body["id"]});
    let first = app
        .call(
            Method::POST,
            "/api/v1/sites/shop/ssl",
            Some(key),
            Some(body),
        )
        .await
        .expect(200);
    assert_eq!(first.body["state"], "issued");
    let mut renewed = None;
    for _ in 0..80 {
        let r = app.get("/api/v1/sites/shop/ssl", key).await.expect(200);
        if r.body["renewals"].as_u64() >= Some(1) {
            renewed = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let renewed = renewed.expect("the certificate was never renewed");
    assert_eq!(renewed.body["state"], "issued");
    assert!(renewed.body["error"].is_null(), "{}", renewed.text);
    // Renewal is not a new purchase.
    assert_eq!(
        app.get("/api/v1/charges", key)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let url = format!("https://shop.example.test:{}/", app.https_port);
    assert_eq!(
        shop_client(&s)
            .await
            .get(&url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn the_operator_installs_a_wildcard_for_a_preview_domain() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["*.sites.acme.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let body = json!({"certificate": cert.pem(), "private_key": key.serialize_pem()});
    let path = format!("/api/v1/admin/resellers/{}/certificate", acme.id);
    let put = |token: String, body: serde_json::Value| {
        let (app, path) = (&app, path.clone());
        async move { app.call(Method::PUT, &path, Some(&token), Some(body)).await }
    };
    put(app.operator.clone(), body.clone())
        .await
        .expect_error(400, "invalid_request"); // no preview domain yet
    app.set_preview_domain(&acme, "sites.acme.test").await;
    put(acme.key.clone(), body.clone())
        .await
        .expect_error(403, "forbidden");
    put(
        app.operator.clone(),
        json!({"certificate": "junk", "private_key": "junk"}),
    )
    .await
    .expect_error(400, "invalid_request");
    let r = put(app.operator.clone(), body).await.expect(200);
    assert_eq!(r.body["domains"], json!(["*.sites.acme.test"]));

    let ann = acme.access_token(&app, "ann@acme.test").await;
    publish_site(
        &app,
        &ann.token,
        "docs",
        &[("index.html", b"<h1>docs</h1>")],
    )
    .await;
    // A new client per check: a pooled connection would skip the handshake being tested.
    let client = || {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap())
            .resolve(
                "docs.sites.acme.test",
                ([127, 0, 0, 1], app.https_port).into(),
            )
            .build()
            .unwrap()
    };
    let url = format!("https://docs.sites.acme.test:{}/", app.https_port);
    let page = client().get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("docs"));

    app.delete(&path, &app.operator).await.expect(204);
    assert!(
        client().get(&url).send().await.is_err(),
        "back to the self-signed default"
    );
    app.delete(&path, &app.operator)
        .await
        .expect_error(404, "not_found");
}
