//! Webhooks against a real receiver on loopback: Standard Webhooks HMAC signatures and an Ed25519
//! signature checked with the key fetched from the reseller's JWKS, a 500 retried until a 200,
//! delivery after a kill -9, manual retry, event filters, private targets refused, an endpoint
//! failing for 3 days disabled.

use crate::helpers::{Reseller, TestApp};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::Mac;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }
}

/// A webhook receiver on 127.0.0.1: records every request and answers with the next status of
/// `statuses` (the last one for good).
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub async fn start(statuses: &[u16]) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, statuses)
    }

    fn serve(listener: tokio::net::TcpListener, statuses: &[u16]) -> Receiver {
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let statuses = Arc::new(Mutex::new(statuses.to_vec()));
        let (got2, statuses2) = (got.clone(), statuses.clone());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (got, statuses) = (got2.clone(), statuses2.clone());
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut conn).await else {
                        return;
                    };
                    let status = {
                        let mut s = statuses.lock().unwrap();
                        if s.len() > 1 {
                            s.remove(0)
                        } else {
                            s[0]
                        }
                    };
                    got.lock().unwrap().push(request);
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 7\r\nconnection: close\r\n\r\nanswer!"
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                });
            }
        });
        Receiver { url, got }
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests arrived (or fails after 20 s).
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..200 {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the receiver got {} requests, not {n}",
            self.received().len()
        );
    }
}

async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(Received {
        headers,
        body: buf[head_end..head_end + len].to_vec(),
    })
}

/// Checks both signatures of a request: the HMAC with the endpoint's secret and the Ed25519
/// one with the key the reseller's JWKS publishes under the request's key id.
async fn verify(app: &TestApp, reseller: &Reseller, secret: &str, r: &Received) {
    let (id, ts) = (r.id(), &r.headers["webhook-timestamp"]);
    let mut content = format!("{id}.{ts}.").into_bytes();
    content.extend_from_slice(&r.body);
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(&content);
    let hmac = STANDARD.encode(mac.finalize().into_bytes());
    let signatures: HashMap<&str, &str> = r.headers["webhook-signature"]
        .split(' ')
        .filter_map(|s| s.split_once(','))
        .collect();
    assert_eq!(signatures["v1"], hmac, "the HMAC signature");
    let jwks = app
        .call(
            Method::GET,
            &format!("/api/v1/resellers/{}/jwks.json", reseller.id),
            None,
            None,
        )
        .await
        .expect(200)
        .body;
    let kid = &r.headers["webhook-key-id"];
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("the signing key is in the JWKS");
    let public = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let signature = STANDARD.decode(signatures["v1a"]).unwrap();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
        .verify(&content, &signature)
        .expect("the Ed25519 signature verifies with the JWKS key");
}

pub async fn endpoint(app: &TestApp, key: &str, url: &str, events: Value) -> (String, String) {
    let r = app
        .post(
            "/api/v1/webhooks",
            key,
            json!({"url": url, "events": events}),
        )
        .await
        .expect(201);
    let secret = r.body["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    (r.body["id"].as_str().unwrap().to_string(), secret)
}

async fn new_user(app: &TestApp, key: &str, email: &str) {
    app.post(
        "/api/v1/access_tokens",
        key,
        json!({"user": {"email": email}}),
    )
    .await
    .expect(201);
}

#[tokio::test]
async fn signed_deliveries_are_retried_until_a_2xx() {
    let app = TestApp::spawn_with(&["--allow-private-targets"]).await;
    let a = app.reseller("Hook A").await;
    app.post("/api/v1/signing_keys", &a.key, json!({"alg": "EdDSA"}))
        .await
        .expect(201);
    let receiver = Receiver::start(&[500, 200]).await;
    let (hook, secret) = endpoint(&app, &a.key, &receiver.url, json!(["*"])).await;
    // Another endpoint listens only for verified domains: it hears nothing of users.
    let quiet = Receiver::start(&[200]).await;
    endpoint(&app, &a.key, &quiet.url, json!(["domain.verified"])).await;

    new_user(&app, &a.key, "hooked@a.test").await;
    let first = receiver.wait_for(1).await;
    assert_eq!(first[0].json()["type"], "user.created");
    assert_eq!(first[0].json()["data"]["email"], "hooked@a.test");
    verify(&app, &a, &secret, &first[0]).await;
    // The 500 is retried about 5 s later (the clock moves instead of the test waiting).
    app.advance_clock(10).await;
    let both = receiver.wait_for(2).await;
    assert_eq!(both[0].id(), both[1].id(), "a retry keeps its webhook-id");
    verify(&app, &a, &secret, &both[1]).await;

    // Attempts are recorded in batches, moments after they are made.
    let mut deliveries = app
        .get(&format!("/api/v1/webhooks/{hook}/deliveries"), &a.key)
        .await
        .expect(200);
    for _ in 0..100 {
        if deliveries.body[0]["attempt_count"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        deliveries = app
            .get(&format!("/api/v1/webhooks/{hook}/deliveries"), &a.key)
            .await
            .expect(200);
    }
    let d = &deliveries.body[0];
    assert_eq!(d["id"], both[0].id());
    assert_eq!(d["event_type"], "user.created");
    assert_eq!(d["attempt_count"], 2);
    assert_eq!(d["attempts"][0]["status"], 500);
    assert_eq!(d["attempts"][0]["response_excerpt"], "answer!");
    assert_eq!(d["attempts"][1]["status"], 200);
    assert_eq!(d["payload"]["data"]["email"], "hooked@a.test");
    assert_eq!(deliveries.header("x-total-count"), Some("1"));
    // Eventually "delivered" (the answer is recorded just after the receiver sent it).
    for _ in 0..50 {
        let d = &app
            .get(&format!("/api/v1/webhooks/{hook}/deliveries"), &a.key)
            .await
            .body[0];
        if d["state"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A manual retry sends the same delivery again.
    let id = both[0].id().to_string();
    app.post(
        &format!("/api/v1/webhooks/{hook}/deliveries/{id}/retry"),
        &a.key,
        json!({}),
    )
    .await
    .expect(202);
    let three = receiver.wait_for(3).await;
    assert_eq!(three[2].id(), id);

    // Other tenants see none of it.
    let b = app.reseller("Hook B").await;
    app.get(&format!("/api/v1/webhooks/{hook}"), &b.key)
        .await
        .expect_error(404, "not_found");
    app.get(&format!("/api/v1/webhooks/{hook}/deliveries"), &b.key)
        .await
        .expect_error(404, "not_found");
    app.post(
        &format!("/api/v1/webhooks/{hook}/deliveries/{id}/retry"),
        &b.key,
        json!({}),
    )
    .await
    .expect_error(404, "not_found");
    let listed = app.get("/api/v1/webhooks", &a.key).await.expect(200);
    assert!(!listed.text.contains("whsec_"), "the secret is shown once");
    assert!(
        quiet.received().is_empty(),
        "filtered endpoint heard: {:?}",
        quiet.received()
    );

    let metrics = app.metrics_text().await;
    assert!(metrics.contains("resellerd_webhook_attempts_total{result=\"delivered\"}"));
    assert!(metrics.contains("resellerd_webhook_outbox_depth"));
}

#[tokio::test]
async fn an_event_survives_a_kill_9_before_its_delivery() {
    // The receiver's port is free at first: every attempt before the crash is refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/hook");
    let app = TestApp::spawn_with(&["--allow-private-targets"]).await;
    let a = app.reseller("Crash A").await;
    let (hook, _) = endpoint(&app, &a.key, &url, json!(["user.created"])).await;
    new_user(&app, &a.key, "before-crash@a.test").await;
    // Wait until the first attempt failed, so the crash falls between the event and its
    // delivery.
    for _ in 0..100 {
        let d = app
            .get(&format!("/api/v1/webhooks/{hook}/deliveries"), &a.key)
            .await
            .expect(200);
        if d.body[0]["attempt_count"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And one more, acknowledged just before the kill.
    new_user(&app, &a.key, "at-crash@a.test").await;
    let _app = app.restart().await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let receiver = Receiver::serve(listener, &[200]);
    let got = receiver.wait_for(2).await;
    // Allow a late duplicate to arrive, then count by webhook-id.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = {
        let mut all = receiver.received();
        all.extend(got);
        all
    };
    let mut by_id: HashMap<String, Value> = HashMap::new();
    for r in &got {
        by_id.insert(r.id().to_string(), r.json());
    }
    let mut emails: Vec<String> = by_id
        .values()
        .map(|v| v["data"]["email"].as_str().unwrap().to_string())
        .collect();
    emails.sort();
    assert_eq!(
        emails,
        ["at-crash@a.test", "before-crash@a.test"],
        "each event exactly once by webhook-id"
    );
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let app = TestApp::spawn().await;
    let a = app.reseller("Private A").await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/hook",
    ] {
        app.post(
            "/api/v1/webhooks",
            &a.key,
            json!({"url": url, "events": ["*"]}),
        )
        .await
        .expect_error(400, "forbidden_target");
    }
    for (url, events) in [
        ("ftp://example.test/hook", json!(["*"])),
        ("http://user:pw@example.test/hook", json!(["*"])),
        ("not a url", json!(["*"])),
        ("https://example.test/hook", json!([])),
        ("https://example.test/hook", json!(["user.exploded"])),
    ] {
        app.post(
            "/api/v1/webhooks",
            &a.key,
            json!({"url": url, "events": events}),
        )
        .await
        .expect_error(400, "invalid_request");
    }
    let listed = app.get("/api/v1/webhooks", &a.key).await.expect(200);
    assert_eq!(listed.body, json!([]), "nothing was created");
}

#[tokio::test]
async fn an_endpoint_failing_for_three_days_is_disabled_and_the_reseller_is_told() {
    let sink = crate::mail::Sink::start();
    let smtp = format!("smtp://127.0.0.1:{}", sink.port);
    let app = TestApp::spawn_with(&["--allow-private-targets", "--smtp-url", &smtp]).await;
    let a = app.reseller("Failing A").await;
    let receiver = Receiver::start(&[503]).await;
    let (hook, _) = endpoint(&app, &a.key, &receiver.url, json!(["*"])).await;
    new_user(&app, &a.key, "nobody-listens@a.test").await;
    receiver.wait_for(1).await;
    app.advance_clock(3 * 24 * 3600 + 60).await;
    let mut endpoint = Value::Null;
    for _ in 0..100 {
        endpoint = app
            .get(&format!("/api/v1/webhooks/{hook}"), &a.key)
            .await
            .expect(200)
            .body;
        if endpoint["enabled"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(endpoint["enabled"], false, "{endpoint}");
    assert!(endpoint["disabled_reason"].as_str().is_some());
    let d = &app
        .get(&format!("/api/v1/webhooks/{hook}/deliveries"), &a.key)
        .await
        .body[0];
    assert_eq!(d["state"], "failed", "{d}");
    // The reseller hears of it by mail (the user.created mail goes to the user, if any).
    let mut told = None;
    for _ in 0..100 {
        told = sink
            .messages()
            .into_iter()
            .find(|(envelope, _)| envelope["to"] == json!(["ops@failing-a.test"]));
        if told.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, raw) = told.expect("a mail to the reseller");
    let text = String::from_utf8_lossy(&raw);
    let subject = crate::mail::header(&text, "Subject");
    assert_eq!(subject, "A webhook endpoint was disabled", "{text}");
    // The audit log says the server did it.
    let audit = app.get("/api/v1/audit", &a.key).await.expect(200).body;
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["actor_kind"] == "server")
        .unwrap_or_else(|| panic!("no server entry: {audit}"));
    assert_eq!(entry["path"], format!("/api/v1/webhooks/{hook}"));
    assert_eq!(entry["actor_id"], "webhook-sender");
    // Re-enabled by the reseller, it starts afresh.
    let again = app
        .patch(
            &format!("/api/v1/webhooks/{hook}"),
            &a.key,
            json!({"enabled": true}),
        )
        .await
        .expect(200);
    assert_eq!(again.body["enabled"], true);
    assert!(again.body["failing_since"].is_null());
}

#[tokio::test]
async fn concurrent_creates_cannot_pass_the_endpoint_limit() {
    let app = TestApp::spawn_with(&["--allow-private-targets"]).await;
    let a = app.reseller("Limit A").await;
    let creates = (0..14).map(|i| {
        app.post(
            "/api/v1/webhooks",
            &a.key,
            json!({"url": format!("http://127.0.0.1:9/{i}"), "events": ["*"]}),
        )
    });
    let replies = futures_util::future::join_all(creates).await;
    assert_eq!(replies.iter().filter(|r| r.status == 201).count(), 10);
    for r in replies.into_iter().filter(|r| r.status != 201) {
        r.expect_error(400, "webhook_limit_reached");
    }
    let listed = app.get("/api/v1/webhooks", &a.key).await.expect(200);
    let first = listed.body[0]["id"].as_str().unwrap().to_string();
    assert_eq!(listed.body.as_array().unwrap().len(), 10);
    // A deleted one makes room again.
    app.delete(&format!("/api/v1/webhooks/{first}"), &a.key)
        .await
        .expect(204);
    app.post(
        "/api/v1/webhooks",
        &a.key,
        json!({"url": "http://127.0.0.1:9/again", "events": ["user.created", "user.created"]}),
    )
    .await
    .expect_error(400, "invalid_request");
    app.post(
        "/api/v1/webhooks",
        &a.key,
        json!({"url": "http://127.0.0.1:9/again", "events": ["user.created"]}),
    )
    .await
    .expect(201);
}

/// A client's life through the API, with one endpoint for every event: each lifecycle event the
/// calls cause reaches the receiver once (one `webhook-id` each), of its type and tenant, and
/// nothing else does.
#[tokio::test]
async fn each_lifecycle_event_reaches_the_receiver_once() {
    let app = TestApp::spawn_with(&["--allow-private-targets"]).await;
    let a = app.reseller("Life A").await;
    let other = app.reseller("Life B").await;
    let receiver = Receiver::start(&[200]).await;
    endpoint(&app, &a.key, &receiver.url, json!(["*"])).await;

    // key.created, key.deleted
    let k = app
        .post("/api/v1/keys", &a.key, json!({"name": "temporary"}))
        .await
        .expect(201);
    let key_id = k.body["id"].as_str().unwrap().to_string();
    app.delete(&format!("/api/v1/keys/{key_id}"), &a.key)
        .await
        .expect(204);
    // user.created; site.created and deploy.ready (a zip deploy)
    let ann = a.access_token(&app, "ann@life.test").await;
    crate::sites::publish_site(
        &app,
        &ann.token,
        "life-site",
        &[("index.html", b"<p>hi</p>")],
    )
    .await;
    // domain.created, domain.deleted
    let d = app
        .post(
            "/api/v1/domains",
            &a.key,
            json!({"domain": "life.example.test", "email": "ann@life.test"}),
        )
        .await
        .expect(201);
    let domain_id = d.body["id"].as_str().unwrap().to_string();
    app.delete(&format!("/api/v1/domains/{domain_id}"), &a.key)
        .await
        .expect(204);
    // user.suspended; site.deleted; user.deleted
    app.post(
        &format!("/api/v1/users/{}/suspend", ann.user_id),
        &a.key,
        json!({"reason": "unpaid"}),
    )
    .await
    .expect(200);
    app.delete("/api/v1/sites/life-site", &a.key)
        .await
        .expect(204);
    app.delete(&format!("/api/v1/users/{}", ann.user_id), &a.key)
        .await
        .expect(204);
    // Another reseller's life is not told to this endpoint.
    other.access_token(&app, "bob@other.test").await;

    let expected = [
        "key.created",
        "key.deleted",
        "user.created",
        "site.created",
        "deploy.ready",
        "domain.created",
        "domain.deleted",
        "user.suspended",
        "site.deleted",
        "user.deleted",
    ];
    let got = receiver.wait_for(expected.len()).await;
    // A moment for anything extra to show up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = if receiver.received().len() > got.len() {
        receiver.received()
    } else {
        got
    };
    let mut types: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_string())
        .collect();
    types.sort();
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(types, want, "the events told");
    let ids: std::collections::HashSet<&str> = got.iter().map(|r| r.id()).collect();
    assert_eq!(ids.len(), got.len(), "one webhook-id per event");
    for r in &got {
        let body = r.json();
        let text = body.to_string();
        assert!(
            !text.contains("bob@other.test"),
            "another tenant's event: {text}"
        );
        assert!(body["data"].is_object(), "{text}");
    }
}
