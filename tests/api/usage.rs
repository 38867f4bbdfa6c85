//! Usage for invoicing: the bytes a test downloads from a site's preview host come back in
//! `GET /usage` (JSON and CSV) and per user, with daily rows that add up to the totals, beside the
//! month's form submissions and deploys.

use crate::helpers::TestApp;
use crate::sites::{zip_deploy, zip_of};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn usage_counts_what_the_edge_served_per_user_and_site() {
    let app = TestApp::spawn_with(&["--traffic-flush-interval", "1"]).await;
    let a = app.reseller("Usage A").await;
    let b = app.reseller("Usage B").await;
    let ann = a.access_token(&app, "ann@a.test").await;
    let site = app
        .post("/api/v1/sites", &ann.token, json!({"name": "usage-site"}))
        .await
        .expect(201)
        .body;
    let site_id = site["id"].as_str().unwrap().to_string();
    let body = vec![b'x'; 10_000];
    zip_deploy(&app, &ann.token, &site_id, zip_of(&[("big.txt", &body)]))
        .await
        .expect(200);
    // HEAD requests count as requests but send no body: they cannot spend a site's bandwidth.
    for _ in 0..3 {
        let r = app
            .client
            .head(app.url("/big.txt"))
            .header("host", "usage-site.localhost")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let mut downloaded = 0u64;
    for _ in 0..5 {
        let r = app
            .client
            .get(app.url("/big.txt"))
            .header("host", "usage-site.localhost")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        downloaded += r.bytes().await.unwrap().len() as u64;
    }
    // The counters are stored every second.
    let mut row = serde_json::Value::Null;
    for _ in 0..50 {
        let rows = app.get("/api/v1/usage", &a.key).await.expect(200).body;
        row = rows[0].clone();
        if row["requests"] == 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(row["site_id"], site_id);
    assert_eq!(row["user_id"], ann.user_id);
    assert_eq!(row["site_name"], "usage-site");
    assert_eq!(row["requests"], 8, "5 GETs and 3 HEADs");
    assert_eq!(row["bytes_sent"], downloaded);
    assert_eq!(row["deploys"], 1);
    let daily_bytes: u64 = row["daily"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["bytes_sent"].as_u64().unwrap())
        .sum();
    assert_eq!(daily_bytes, downloaded, "the days add up to the total");

    let csv = app
        .client
        .get(app.url("/api/v1/usage"))
        .bearer_auth(&a.key)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let line = text.lines().nth(1).unwrap();
    assert!(line.contains(&format!(",8,{downloaded},0,1")), "{text}");

    let mine = app
        .get(&format!("/api/v1/users/{}/usage", ann.user_id), &a.key)
        .await
        .expect(200)
        .body;
    assert_eq!(mine[0]["bytes_sent"], downloaded);
    // Another month is empty; another reseller sees nothing of A's.
    let past = app
        .get("/api/v1/usage?month=2001-01", &a.key)
        .await
        .expect(200)
        .body;
    assert_eq!(past[0]["requests"], 0);
    app.get("/api/v1/usage?month=2026-13", &a.key)
        .await
        .expect_error(400, "invalid_request");
    let theirs = app.get("/api/v1/usage", &b.key).await.expect(200).body;
    assert_eq!(theirs, json!([]));
    app.get(&format!("/api/v1/users/{}/usage", ann.user_id), &b.key)
        .await
        .expect_error(404, "not_found");
}
