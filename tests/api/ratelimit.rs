//! API rate limits: per credential, per IP, and failed authentication per IP.

use crate::helpers::TestApp;

#[tokio::test]
async fn a_credential_over_its_rate_gets_429_with_retry_headers() {
    let app = TestApp::spawn_with(&["--rate-limit-credential", "2"]).await;
    let acme = app.reseller("Acme").await;
    let first = app.get("/api/v1/reseller", &acme.key).await.expect(200);
    assert_eq!(first.header("x-ratelimit-limit"), Some("4"));
    let mut limited = None;
    for _ in 0..10 {
        let r = app.get("/api/v1/reseller", &acme.key).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited
        .expect("the credential was never limited")
        .expect_error(429, "rate_limited");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    let reset: i64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
    assert!(reset >= chrono::Utc::now().timestamp());
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    // Another credential has its own bucket.
    let globex = app.reseller("Globex").await;
    app.get("/api/v1/reseller", &globex.key).await.expect(200);
}

#[tokio::test]
async fn an_ip_over_its_rate_gets_429() {
    let app = TestApp::spawn_with(&["--rate-limit-ip", "1"]).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            app.call(reqwest::Method::GET, "/api/v1/user", None, None)
                .await
                .status
                .as_u16(),
        );
    }
    assert!(
        statuses.contains(&401) && statuses.contains(&429),
        "{statuses:?}"
    );
    // Probes outside the API are not limited.
    app.call(reqwest::Method::GET, "/healthz", None, None)
        .await
        .expect(200);
}
