//! HTTP/2 on the TLS port: negotiated by ALPN beside HTTP/1.1, the same answers as HTTP/1.1
//! (sites by `:authority`, the API with bodies, HEAD without a body), and the known floods
//! (rapid reset, CONTINUATION) end the attacker's connection while others are served.

use crate::helpers::TestApp;
use serde_json::json;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client of the TLS port that trusts the instance's self-signed certificate, for `localhost`
/// and `host`.
fn tls_client(app: &TestApp, host: &str, http1_only: bool) -> reqwest::Client {
    let pem = std::fs::read(app.data_dir.join("tls/self-signed.crt")).unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], app.https_port));
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .resolve("localhost", addr)
        .resolve(host, addr)
        // The site's name is not on the self-signed certificate.
        .danger_accept_invalid_certs(true);
    if http1_only {
        b = b.http1_only();
    }
    b.build().unwrap()
}

#[tokio::test]
async fn http2_is_negotiated_and_answers_as_http1_does() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    let h2 = tls_client(&app, "two.localhost", false);
    let api = |path: &str| format!("https://localhost:{}/api/v1{path}", app.https_port);
    // The API over HTTP/2, with a request body.
    let r = h2
        .post(api("/sites"))
        .bearer_auth(&ann.token)
        .json(&json!({"name": "two"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 201);
    let page = "<h1>over two</h1>".repeat(100);
    crate::sites::zip_deploy(
        &app,
        &ann.token,
        "two",
        crate::sites::zip_of(&[("index.html", page.as_bytes())]),
    )
    .await
    .expect(200);
    // The site by its name in `:authority` (no Host header in HTTP/2).
    let site = format!("https://two.localhost:{}/", app.https_port);
    let r = h2.get(&site).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(r.text().await.unwrap(), page);
    let r = h2
        .get(&site)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    // HEAD: the length GET would send, no body.
    let r = h2.head(&site).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        page.len().to_string().as_str()
    );
    assert!(r.bytes().await.unwrap().is_empty());
    // A brotli variant over HTTP/2, once made.
    let mut coded = None;
    for _ in 0..200 {
        let r = h2
            .get(&site)
            .header("accept-encoding", "br")
            .send()
            .await
            .unwrap();
        if let Some(v) = r.headers().get("content-encoding") {
            coded = Some(v.to_str().unwrap().to_string());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(coded.as_deref(), Some("br"));
    // Many requests on one connection at once.
    let all = futures_util::future::join_all((0..50).map(|_| h2.get(&site).send())).await;
    for r in all {
        let r = r.unwrap();
        assert_eq!(
            (r.version(), r.status().as_u16()),
            (reqwest::Version::HTTP_2, 200)
        );
    }
    // HTTP/1.1 on the same port still works, for clients that do not offer h2.
    let h1 = tls_client(&app, "two.localhost", true);
    let r = h1.get(&site).send().await.unwrap();
    assert_eq!(
        (r.version(), r.status().as_u16()),
        (reqwest::Version::HTTP_11, 200)
    );
    assert_eq!(r.text().await.unwrap(), page);
    // An authenticated GET of the API.
    let r = h2
        .get(api("/sites/two"))
        .bearer_auth(&ann.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["name"], "two");
}

/// One HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK for `GET https://localhost/` (static-table entries and one literal).
fn get_block() -> Vec<u8> {
    let mut b = vec![0x82, 0x87, 0x84, 0x01, 9];
    b.extend_from_slice(b"localhost");
    b
}

/// A TLS connection that negotiated h2 and sent the preface and its settings.
async fn raw_h2(app: &TestApp) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(app.data_dir.join("tls/self-signed.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(&pem).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", app.https_port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(4, 0, 0, &[]));
    tls.write_all(&hello).await.unwrap();
    tls
}

/// Reads until the server closes the connection (within 10 s): true if it sent GOAWAY first.
async fn closed_with_goaway(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) -> bool {
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    // Walk the frames the server sent.
    let mut at = 0;
    while at + 9 <= seen.len() {
        let len = (usize::from(seen[at]) << 16)
            | (usize::from(seen[at + 1]) << 8)
            | usize::from(seen[at + 2]);
        if seen[at + 3] == 7 {
            return true;
        }
        at += 9 + len;
    }
    false
}

async fn still_serves(app: &TestApp) {
    let h2 = tls_client(app, "localhost", false);
    let r = h2
        .get(format!("https://localhost:{}/healthz", app.https_port))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.version(), r.status().as_u16()),
        (reqwest::Version::HTTP_2, 200)
    );
}

/// CVE-2023-44487: streams opened and reset at once, thousands of them. The server ends the
/// connection (GOAWAY) instead of working through them, and serves everyone else.
#[tokio::test]
async fn a_rapid_reset_flood_ends_the_connection() {
    let app = TestApp::spawn().await;
    let mut tls = raw_h2(&app).await;
    let mut flood = Vec::new();
    for i in 0..5000u32 {
        let stream = 2 * i + 1;
        flood.extend(frame(1, 0x5, stream, &get_block()));
        flood.extend(frame(3, 0, stream, &8u32.to_be_bytes()));
    }
    // The server may close before all of it is written.
    let _ = tls.write_all(&flood).await;
    let _ = tls.flush().await;
    assert!(closed_with_goaway(&mut tls).await, "no GOAWAY");
    still_serves(&app).await;
}

/// CVE-2024-27316 and kin: a header block that never ends, in CONTINUATION frames. The server
/// stops at its header list limit and ends the connection, having kept none of it.
#[tokio::test]
async fn a_continuation_flood_ends_the_connection() {
    let app = TestApp::spawn().await;
    let mut tls = raw_h2(&app).await;
    // One literal header field of 16 KiB per frame.
    let mut field = vec![0x00, 5];
    field.extend_from_slice(b"x-pad");
    field.extend_from_slice(&[0x7f, 0x81, 0x7e]); // length 16256: 127, then 16129 in 7-bit groups
    field.extend(std::iter::repeat_n(b'a', 16256));
    let mut sent = 0usize;
    let mut stopped = false;
    if tls.write_all(&frame(1, 0, 1, &get_block())).await.is_err() {
        stopped = true;
    }
    while !stopped && sent < 64 << 20 {
        match tls.write_all(&frame(9, 0, 1, &field)).await {
            Ok(()) => sent += field.len(),
            Err(_) => stopped = true,
        }
        if sent >= 4 << 20 && !stopped {
            // The server has had far more than its limit; see whether it said so.
            break;
        }
    }
    let _ = tls.flush().await;
    assert!(
        closed_with_goaway(&mut tls).await,
        "no GOAWAY after {sent} bytes"
    );
    still_serves(&app).await;
}
