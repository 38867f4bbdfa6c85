//! Domain registration as a paid action through the webhook registrar: a local HTTP server plays
//! the registrar and checks every request's HMAC signature.

use crate::helpers::{reply, TestApp};
use serde_json::json;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub(crate) const SECRET: &str = "webhook-test-secret";

/// What the registrar heard: each registered domain with the request id it was given.
pub(crate) type Heard = Arc<Mutex<Vec<(String, String)>>>;

/// A registrar on 127.0.0.1 that registers every name except those containing "refused", and
/// records the domains (and request ids) it saw with valid signatures.
pub(crate) async fn registrar() -> (String, Heard) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/register", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body) = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break (head, buf[end + 4..end + 4 + len].to_vec());
                    }
                };
                let signature = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .starts_with("x-resellerd-signature:")
                            .then(|| l[22..].trim().to_string())
                    })
                    .unwrap_or_default();
                let t: i64 = signature
                    .split(',')
                    .find_map(|p| p.strip_prefix("t="))
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                let valid = resellerd::registrar::sign(SECRET, t, &body) == signature;
                let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let domain = request["domain"].as_str().unwrap_or("").to_string();
                let (status, answer) = if !valid {
                    ("401 Unauthorized", json!({"status": "bad signature"}))
                } else if domain.contains("refused") {
                    ("409 Conflict", json!({"status": "unavailable"}))
                } else {
                    let id = request["request_id"].as_str().unwrap_or("").to_string();
                    log.lock().unwrap().push((domain, id));
                    ("200 OK", json!({"status": "registered"}))
                };
                let text = answer.to_string();
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn registering_a_domain_charges_once_and_creates_it_verified() {
    let (url, seen) = registrar().await;
    let app = TestApp::spawn_with(&[
        "--registrar-webhook-url",
        &url,
        "--registrar-webhook-secret",
        SECRET,
    ])
    .await;
    let acme = app.reseller("Acme").await;
    let register = |body: serde_json::Value, idem: Option<&str>| {
        let mut req = app
            .client
            .post(app.url("/api/v1/domains/register"))
            .bearer_auth(&acme.key)
            .json(&body);
        if let Some(k) = idem {
            req = req.header("idempotency-key", k);
        }
        async move { reply(req.send().await.unwrap()).await }
    };
    let body = |domain: &str, pm: &str| json!({"domain": domain, "email": "owner@new.test", "payment_method_id": pm});

    register(body("new.example.test", ""), None)
        .await
        .expect_error(402, "payment_required");
    let pm = app
        .post(
            "/api/v1/payment_methods",
            &acme.key,
            json!({"label": "Invoice", "type": "invoice", "reference": "PO-7"}),
        )
        .await
        .expect(201);
    let pm = pm.body["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/admin/resellers/{}/prices", acme.id);
    let prices =
        json!({"currency": "EUR", "ssl_certificate_cents": 0, "domain_registration_cents": 1299});
    app.call(
        reqwest::Method::PUT,
        &path,
        Some(&app.operator),
        Some(prices),
    )
    .await
    .expect(200);

    let r = register(body("new.example.test", &pm), Some("reg-1"))
        .await
        .expect(201);
    assert_eq!(r.body["verification_status"], "verified");
    assert!(r.body["wordpress_api_key"]
        .as_str()
        .unwrap()
        .starts_with("wp_"));
    // The same request again: the stored answer (without the WordPress key, shown once).
    let again = register(body("new.example.test", &pm), Some("reg-1"))
        .await
        .expect(201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body["id"], r.body["id"]);
    assert_eq!(again.body["charge_id"], r.body["charge_id"]);
    assert!(
        again.body.get("wordpress_api_key").is_none(),
        "{}",
        again.text
    );
    let charges = app.get("/api/v1/charges", &acme.key).await.expect(200);
    assert_eq!(
        charges.body.as_array().unwrap().len(),
        1,
        "a retry never charges twice"
    );
    assert_eq!(charges.body[0]["action"], "domain_registration");
    assert_eq!(charges.body[0]["amount_cents"], 1299);
    assert_eq!(charges.body[0]["currency"], "EUR");
    {
        let heard = seen.lock().unwrap();
        assert_eq!(heard.len(), 1);
        assert_eq!(heard[0].0, "new.example.test");
        // The registrar never sees the client's key, only an id no other reseller can make.
        assert!(
            !heard[0].1.contains("reg-1") && heard[0].1.len() == 64,
            "{heard:?}"
        );
    }
    // A used key buys nothing else: not another domain, not after the first one is deleted.
    register(body("other.example.test", &pm), Some("reg-1"))
        .await
        .expect_error(422, "idempotency_key_reused");
    let id = r.body["id"].as_str().unwrap();
    app.delete(&format!("/api/v1/domains/{id}"), &acme.key)
        .await
        .expect(204);
    for name in ["other.example.test", "third.example.test"] {
        register(body(name, &pm), Some("reg-1"))
            .await
            .expect_error(422, "idempotency_key_reused");
    }
    let replay = register(body("new.example.test", &pm), Some("reg-1"))
        .await
        .expect(201);
    assert_eq!(replay.body["charge_id"], r.body["charge_id"]);
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the registrar was called again"
    );
    assert_eq!(
        app.get("/api/v1/charges", &acme.key)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Another reseller's "reg-1" is its own: run and charged, with another request id.
    let globex = app.reseller("Globex").await;
    let pm2 = app
        .post(
            "/api/v1/payment_methods",
            &globex.key,
            json!({"label": "Card", "type": "card", "reference": "4242"}),
        )
        .await
        .expect(201);
    let pm2 = pm2.body["id"].as_str().unwrap();
    let req = app
        .client
        .post(app.url("/api/v1/domains/register"))
        .bearer_auth(&globex.key)
        .header("idempotency-key", "reg-1")
        .json(&body("globex.example.test", pm2));
    let theirs = reply(req.send().await.unwrap()).await.expect(201);
    assert_ne!(theirs.body["charge_id"], r.body["charge_id"]);
    {
        let heard = seen.lock().unwrap();
        assert_eq!(heard.len(), 2);
        assert_ne!(heard[0].1, heard[1].1, "two resellers' reg-1 look alike");
    }
    // Names no tenant may hold never reach the registrar: the instance's zone (the default
    // preview domain) and another reseller's preview domain.
    app.set_preview_domain(&globex, "sites.globex.test").await;
    for name in [
        "victim.localhost",
        "shop.sites.globex.test",
        "sites.globex.test",
    ] {
        register(body(name, &pm), None)
            .await
            .expect_error(400, "name_reserved");
    }
    assert_eq!(seen.lock().unwrap().len(), 2);
    seen.lock().unwrap().clear();

    // A refusal charges nothing and creates nothing; a taken name never reaches the registrar.
    register(body("refused.example.test", &pm), None)
        .await
        .expect_error(400, "registration_failed");
    register(body("globex.example.test", &pm), None)
        .await
        .expect_error(400, "domain_taken");
    assert_eq!(
        app.get("/api/v1/charges", &acme.key)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(seen.lock().unwrap().len(), 0);
    let listed = app.get("/api/v1/domains", &acme.key).await.expect(200);
    assert_eq!(listed.body.as_array().unwrap().len(), 0);

    // Without a configured registrar the action is refused clearly.
    let plain = TestApp::spawn().await;
    let other = plain.reseller("Other").await;
    let pm = plain
        .post(
            "/api/v1/payment_methods",
            &other.key,
            json!({"label": "c", "type": "card", "reference": "1"}),
        )
        .await;
    let pm = pm.body["id"].as_str().unwrap().to_string();
    plain
        .post(
            "/api/v1/domains/register",
            &other.key,
            body("x.example.test", &pm),
        )
        .await
        .expect_error(400, "invalid_request");
}
