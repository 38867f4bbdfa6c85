//! The audit log records every authenticated mutating call, without secrets, per tenant.

use crate::helpers::TestApp;
use serde_json::json;

#[tokio::test]
async fn mutating_calls_are_audited_per_reseller_without_secrets() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let globex = app.reseller("Globex").await;
    let created = app
        .post("/api/v1/keys", &acme.key, json!({"name": "crm"}))
        .await
        .expect(201);
    let secret = created.body["key"].as_str().unwrap().to_string();
    let key_id = created.body["id"].as_str().unwrap().to_string();
    let token = acme.access_token(&app, "client@example.test").await;
    app.delete(&format!("/api/v1/keys/{key_id}"), &acme.key)
        .await
        .expect(204);
    app.get("/api/v1/users", &acme.key).await.expect(200);

    let log = app.get("/api/v1/audit", &acme.key).await.expect(200);
    let entries = log.body.as_array().unwrap();
    let routes: Vec<(String, String, u64)> = entries
        .iter()
        .map(|e| {
            (
                e["method"].as_str().unwrap().into(),
                e["route"].as_str().unwrap().into(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        routes,
        vec![
            ("DELETE".to_string(), "/api/v1/keys/{id}".to_string(), 204),
            ("POST".into(), "/api/v1/access_tokens".into(), 201),
            ("POST".into(), "/api/v1/keys".into(), 201),
        ],
        "newest first, reads not logged"
    );
    assert_eq!(entries[0]["actor_kind"], "api_key");
    assert_eq!(entries[0]["actor_id"], acme.key_id.as_str());
    assert_eq!(entries[0]["ip"], "127.0.0.1");
    assert!(
        !log.text.contains(&secret)
            && !log.text.contains(&token.token)
            && !log.text.contains(&acme.key)
    );

    assert_eq!(
        app.get("/api/v1/audit", &globex.key).await.expect(200).body,
        json!([])
    );
    let all = app
        .get("/api/v1/admin/audit", &app.operator)
        .await
        .expect(200);
    assert_eq!(
        all.body.as_array().unwrap().len(),
        5,
        "two reseller creations by the operator, three by Acme"
    );
    app.get("/api/v1/admin/audit", &acme.key)
        .await
        .expect_error(403, "forbidden");

    // Deleting a reseller forgets its own view; the operator's keeps its entries and count.
    app.delete(
        &format!("/api/v1/admin/resellers/{}", acme.id),
        &app.operator,
    )
    .await
    .expect(204);
    let all = app
        .get("/api/v1/admin/audit", &app.operator)
        .await
        .expect(200);
    assert_eq!(all.header("x-total-count"), Some("6"));
    let acme_entries = all
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reseller_id"] == acme.id.as_str())
        .count();
    assert!(acme_entries >= 3, "{}", all.text);
    assert_eq!(
        app.get("/api/v1/audit", &globex.key).await.expect(200).body,
        json!([])
    );
}

/// Entries are queued and written in batches by the flush thread, and a call is answered only
/// once its entry is on disk: every acknowledged call's entry survives a kill -9, in order.
#[tokio::test]
async fn entries_survive_a_kill_9_in_order() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let globex = app.reseller("Globex").await;
    for i in 0..12 {
        let who = if i % 3 == 0 { &globex } else { &acme };
        who.access_token(&app, &format!("client{i}@example.test"))
            .await;
    }
    // Concurrent callers share batches.
    let emails: Vec<String> = (0..20).map(|i| format!("burst{i}@example.test")).collect();
    let calls = emails.iter().map(|e| acme.access_token(&app, e));
    futures_util::future::join_all(calls).await;
    let before = app.get("/api/v1/audit", &acme.key).await.expect(200).body;
    let app = app.restart().await;
    let after = app.get("/api/v1/audit", &acme.key).await.expect(200).body;
    assert_eq!(after.as_array().unwrap().len(), 8 + 20);
    assert_eq!(after, before, "same entries, same order, after kill -9");
    let ids: Vec<&str> = after
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "no entry listed twice");
    let globex_log = app.get("/api/v1/audit", &globex.key).await.expect(200);
    assert_eq!(
        globex_log.body.as_array().unwrap().len(),
        4,
        "{}",
        globex_log.text
    );
    let all = app
        .get("/api/v1/admin/audit?per_page=100", &app.operator)
        .await
        .expect(200);
    assert_eq!(all.body.as_array().unwrap().len(), 2 + 8 + 20 + 4);
}
