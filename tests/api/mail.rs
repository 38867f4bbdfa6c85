//! Notification mail through a real SMTP server (aiosmtpd, installed by the test command), its
//! DKIM signature checked by a real verifier (dkimpy) against the TXT record published in
//! pebble-challtestsrv; the sender verified by DNS; templates with a preview; a relay that is
//! down never fails the call that caused the mail.

use crate::helpers::{Reseller, TestApp};
use crate::pebble::{free_port, ChallTestSrv};
use serde_json::{json, Value};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/mailtest/bin/python");
    assert!(
        python.exists(),
        "{} is missing: ./scripts/test installs aiosmtpd and dkimpy there",
        python.display()
    );
    python
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mail")
        .join(name)
}

/// aiosmtpd on loopback, writing each message it gets into a directory.
pub(crate) struct Sink {
    child: Child,
    dir: tempfile::TempDir,
    pub(crate) port: u16,
}

impl Sink {
    pub(crate) fn start() -> Sink {
        // aiosmtpd checks it is up by connecting to its port, so it needs a real one.
        Sink::start_on(free_port())
    }

    fn start_on(port: u16) -> Sink {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(python())
            .arg(script("smtp_sink.py"))
            .arg(dir.path())
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the SMTP server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the SMTP server's port");
        Sink { child, dir, port }
    }

    /// The messages received so far, in order: (envelope, raw message).
    pub(crate) fn messages(&self) -> Vec<(Value, Vec<u8>)> {
        let mut out = Vec::new();
        for n in 1.. {
            let base = self.dir.path().join(n.to_string());
            let Ok(envelope) = std::fs::read(base.with_extension("json")) else {
                break;
            };
            let raw = std::fs::read(base.with_extension("eml")).unwrap();
            out.push((serde_json::from_slice(&envelope).unwrap(), raw));
        }
        out
    }

    pub(crate) async fn wait_for(&self, n: usize) -> Vec<(Value, Vec<u8>)> {
        for _ in 0..150 {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the SMTP server got {} messages, not {n}",
            self.messages().len()
        );
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn header<'a>(raw: &'a str, name: &str) -> &'a str {
    raw.split("\r\n")
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .map(|l| l[name.len() + 1..].trim())
        .unwrap_or_default()
}

/// Runs dkimpy on a message, looking keys up in the test DNS server (or using `given`); fails
/// the test unless the signature verifies. Returns what it printed.
fn dkim_verify(message: &Path, dns: &ChallTestSrv, given: Option<(&str, &str)>) -> String {
    let mut cmd = Command::new(python());
    cmd.arg(script("dkim_verify.py"))
        .arg(message)
        .arg(dns.dns_server());
    if let Some((name, value)) = given {
        cmd.arg(name).arg(value);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "dkimpy: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// A client domain made and verified through the API, which mails its owner.
async fn verify_domain(app: &TestApp, dns: &ChallTestSrv, r: &Reseller, domain: &str, owner: &str) {
    let made = app
        .post(
            "/api/v1/domains",
            &r.key,
            json!({"domain": domain, "email": owner}),
        )
        .await
        .expect(201)
        .body;
    let (name, value) = (
        made["verification"]["name"].as_str().unwrap(),
        made["verification"]["value"].as_str().unwrap(),
    );
    dns.set_txt(name, value).await;
    let id = made["id"].as_str().unwrap();
    let verified = app
        .post(&format!("/api/v1/domains/{id}/verify"), &r.key, json!({}))
        .await
        .expect(200);
    assert_eq!(verified.body["verification_status"], "verified");
}

#[tokio::test]
async fn mail_is_dkim_signed_from_the_resellers_verified_sender() {
    let dns = ChallTestSrv::start();
    let sink = Sink::start();
    let app = TestApp::spawn_with(&[
        "--smtp-url",
        &format!("smtp://127.0.0.1:{}", sink.port),
        "--dns-server",
        &dns.dns_server(),
        "--verify-interval",
        "3600",
        "--mail-from",
        "noreply@instance.test",
    ])
    .await;
    let a = app.reseller("Mail A").await;
    app.patch(
        "/api/v1/reseller",
        &a.key,
        // Ed25519: its DKIM record fits the test DNS server (an RSA record is longer than the
        // 255 characters it serves; the instance's RSA signature is checked below instead).
        json!({"notification_email": {"from": "noreply@agency.test", "name": "Agence Été", "dkim": "ed25519"}}),
    )
    .await
    .expect(200);
    let sender = app
        .get("/api/v1/reseller/notification_email", &a.key)
        .await
        .expect(200)
        .body;
    assert_eq!(sender["status"], "pending");
    assert_eq!(sender["sending_from"], "noreply@instance.test");
    let dkim_name = sender["dkim"]["name"].as_str().unwrap().to_string();
    let dkim_value = sender["dkim"]["value"].as_str().unwrap().to_string();
    assert!(
        dkim_name.ends_with("._domainkey.agency.test"),
        "{dkim_name}"
    );
    assert!(
        dkim_value.starts_with("v=DKIM1; k=ed25519; p="),
        "{dkim_value}"
    );

    // Until the sender is verified, mail goes from the instance's address.
    verify_domain(&app, &dns, &a, "first.example.test", "owner@first.test").await;
    let got = sink.wait_for(1).await;
    let first = String::from_utf8_lossy(&got[0].1).to_string();
    assert_eq!(got[0].0["to"], json!(["owner@first.test"]));
    assert_eq!(header(&first, "From"), "noreply@instance.test");
    assert!(first.contains("DKIM-Signature: v=1; a=rsa-sha256"));
    // The instance's RSA signature verifies with the record the operator is told to publish.
    let instance = app
        .get("/api/v1/admin/notification_email", &app.operator)
        .await
        .expect(200)
        .body;
    assert_eq!(instance["from"], "noreply@instance.test");
    assert_eq!(instance["relay_configured"], true);
    dkim_verify(
        &sink.dir.path().join("1.eml"),
        &dns,
        Some((
            instance["dkim"]["name"].as_str().unwrap(),
            instance["dkim"]["value"].as_str().unwrap(),
        )),
    );

    // Nothing published yet: checking says what is missing.
    let checked = app
        .post(
            "/api/v1/reseller/notification_email/verify",
            &a.key,
            json!({}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(checked["status"], "pending");
    assert_eq!(checked["dkim"]["found"], false);
    assert!(checked["error"].as_str().is_some());
    dns.set_txt(&dkim_name, &dkim_value).await;
    dns.set_txt("agency.test", "v=spf1 ip4:127.0.0.1 -all")
        .await;
    let checked = app
        .post(
            "/api/v1/reseller/notification_email/verify",
            &a.key,
            json!({}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(checked["status"], "verified", "{checked}");
    assert_eq!(checked["dkim"]["found"], true);
    assert_eq!(checked["spf"]["found"], true);
    assert_eq!(checked["sending_from"], "noreply@agency.test");

    // The reseller's own template, previewed, then used.
    let template = "<title>{{domain}} is ready — {{reseller_name}}</title><p>Hello {{user_email}}, {{domain}} works.</p>";
    let put = app
        .client
        .put(app.url("/api/v1/reseller/emails/domain_verified"))
        .bearer_auth(&a.key)
        .header("content-type", "text/html")
        .body(template)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    let preview = crate::helpers::reply(
        app.client
            .post(app.url("/api/v1/reseller/emails/domain_verified/preview"))
            .bearer_auth(&a.key)
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(200);
    assert_eq!(
        preview.body["subject"],
        "client.example.com is ready — Mail A"
    );
    assert!(preview.body["text"]
        .as_str()
        .unwrap()
        .contains("Hello client@example.com"));
    let listed = app
        .get("/api/v1/reseller/emails", &a.key)
        .await
        .expect(200)
        .body;
    let kinds: Vec<&Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["custom"] == true)
        .collect();
    assert_eq!(kinds.len(), 1);

    verify_domain(&app, &dns, &a, "second.example.test", "owner@second.test").await;
    let got = sink.wait_for(2).await;
    let path = sink.dir.path().join("2.eml");
    let second = String::from_utf8_lossy(&got[1].1).to_string();
    assert_eq!(got[1].0["from"], "noreply@agency.test");
    assert!(
        header(&second, "From").ends_with("<noreply@agency.test>"),
        "{second}"
    );
    assert!(
        header(&second, "Subject").starts_with("=?utf-8?b?"),
        "the subject is encoded"
    );
    assert!(second.contains("Content-Type: text/plain; charset=utf-8"));
    assert!(second.contains("Content-Type: text/html; charset=utf-8"));
    assert!(second.contains("d=agency.test"));
    assert!(second.contains("a=ed25519-sha256"));
    let out = dkim_verify(&path, &dns, None);
    assert!(out.contains("d=agency.test"), "{out}");

    // Another reseller sees none of it; unknown kinds are not found.
    let b = app.reseller("Mail B").await;
    app.get("/api/v1/reseller/notification_email", &b.key)
        .await
        .expect_error(404, "not_found");
    let b_template = app
        .get("/api/v1/reseller/emails/domain_verified", &b.key)
        .await
        .expect(200);
    assert_eq!(b_template.body["custom"], false);
    app.get("/api/v1/reseller/emails/nope", &a.key)
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn a_relay_that_is_down_never_fails_the_call() {
    let dns = ChallTestSrv::start();
    let port = free_port();
    let app = TestApp::spawn_with(&[
        "--smtp-url",
        &format!("smtp://127.0.0.1:{port}"),
        "--dns-server",
        &dns.dns_server(),
        "--verify-interval",
        "3600",
    ])
    .await;
    let a = app.reseller("Down A").await;
    // The call that causes the mail succeeds; the mail waits in the outbox.
    verify_domain(&app, &dns, &a, "down.example.test", "owner@down.test").await;
    let mut failed = false;
    for _ in 0..100 {
        let metrics = app.metrics_text().await;
        if metrics.contains("resellerd_mail_attempts_total{result=\"failed\"} 1") {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(failed, "the relay was tried and failed");
    // The relay comes back; the retry (30 s later: the clock moves instead) delivers it.
    let sink = Sink::start_on(port);
    app.advance_clock(120).await;
    let got = sink.wait_for(1).await;
    assert_eq!(got[0].0["to"], json!(["owner@down.test"]));
}
