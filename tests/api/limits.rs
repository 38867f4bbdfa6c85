//! Protocol limits: over-long URIs get 414 JSON, over-large or too many headers 431, and a
//! client that never finishes its request head is answered 408 and disconnected (slowloris), and
//! connections over `--max-connections` wait in the kernel's queue until one closes.

use crate::helpers::TestApp;
use std::io::{Read, Write};
use std::time::Duration;

#[tokio::test]
async fn long_uris_and_large_headers_are_refused() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let long = "a".repeat(9000);
    app.get(&format!("/api/v1/users?email={long}"), &acme.key)
        .await
        .expect_error(414, "uri_too_long");
    app.get(&format!("/{long}"), "")
        .await
        .expect_error(414, "uri_too_long");
    // Just under the limit is served as usual.
    app.get(
        &format!("/api/v1/users?email={}", "a".repeat(8000)),
        &acme.key,
    )
    .await
    .expect(200);

    // The server closes a connection after refusing its head: no pooling, so each refused request
    // has a connection of its own rather than one the previous refusal closed.
    let unpooled = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let huge = unpooled
        .get(app.url("/api/v1/users"))
        .bearer_auth(&acme.key)
        .header("x-padding", "p".repeat(200_000))
        .send()
        .await;
    // The server refuses the head (431) or, mid-upload, closes the connection: never a 2xx.
    if let Ok(r) = huge {
        assert_eq!(r.status().as_u16(), 431);
    }
    let mut many = unpooled
        .get(app.url("/api/v1/users"))
        .bearer_auth(&acme.key);
    for i in 0..200 {
        many = many.header(format!("x-h{i}"), "v");
    }
    let r = many.send().await.expect("an answer");
    assert_eq!(r.status().as_u16(), 431);
    // The server is still fine afterwards.
    app.get("/api/v1/users", &acme.key).await.expect(200);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_is_cut_off() {
    let app = TestApp::spawn_with(&["--request-timeout", "1"]).await;
    let addr = app.http.trim_start_matches("http://").to_string();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .unwrap();
        let mut got = Vec::new();
        let read = conn.read_to_end(&mut got);
        (read.is_ok(), String::from_utf8_lossy(&got).into_owned())
    })
    .await
    .unwrap();
    assert!(
        outcome.0,
        "the server closed the connection (not our read timeout)"
    );
    assert!(outcome.1.starts_with("HTTP/1.1 408"), "{:?}", outcome.1);
    app.get("/healthz", "").await.expect(200);
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    // Two workers (the harness's default) with one connection each.
    let app = TestApp::spawn_with(&["--max-connections", "2", "--request-timeout", "30"]).await;
    let addr = app.http.trim_start_matches("http://").to_string();
    let served = tokio::task::spawn_blocking(move || {
        let ask = |conn: &mut std::net::TcpStream| {
            conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            let mut buf = [0u8; 512];
            conn.read(&mut buf)
                .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
        };
        // Two kept-alive connections fill the cap; each is served.
        let mut held: Vec<_> = (0..2)
            .map(|_| std::net::TcpStream::connect(&addr).unwrap())
            .collect();
        for conn in &mut held {
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            assert!(ask(conn).unwrap().starts_with("HTTP/1.1 200"));
        }
        // A third is accepted by the kernel but not served while both are open...
        let mut third = std::net::TcpStream::connect(&addr).unwrap();
        third
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let waiting = ask(&mut third);
        // ...and is served as soon as one of them closes.
        held.pop();
        third
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 512];
        let later = third
            .read(&mut buf)
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
        (waiting.is_err(), later)
    })
    .await
    .unwrap();
    assert!(served.0, "a connection over the cap was served at once");
    assert!(served.1.unwrap().starts_with("HTTP/1.1 200"));
}
