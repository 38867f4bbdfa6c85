//! Keyset paging: cursors from `Link` headers walk every list forward and back, returning each
//! record exactly once even while records are created and deleted; a cursor is bound to its
//! list, tenant and filters.

use crate::helpers::{Reply, TestApp};
use serde_json::json;
use std::collections::HashSet;

/// The URL of a `Link` relation, as a path under the server.
fn link(r: &Reply, rel: &str) -> Option<String> {
    let header = r.header("link")?;
    header.split(", ").find_map(|part| {
        let (url, r) = part.split_once(">; rel=\"")?;
        (r.trim_end_matches('"') == rel).then(|| {
            let url = url.trim_start_matches('<');
            let at = url.find("/api/v1").expect("a path under /api/v1");
            url[at..].to_string()
        })
    })
}

fn emails(r: &Reply) -> Vec<String> {
    r.body
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn cursors_walk_every_user_once_forward_and_back_under_concurrent_writes() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let mut stable = Vec::new();
    for i in 0..23 {
        let email = format!("u{i:02}@x.test");
        acme.access_token(&app, &email).await;
        stable.push(email);
    }

    // Forward, while another client creates and deletes users of its own.
    let churn = {
        let (client, base, key) = (app.client.clone(), app.url("/api/v1"), acme.key.clone());
        tokio::spawn(async move {
            for i in 0..40 {
                let r: serde_json::Value = client
                    .post(format!("{base}/access_tokens"))
                    .bearer_auth(&key)
                    .json(&json!({"user": {"email": format!("churn{i}@y.test")}}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if i % 2 == 0 {
                    let id = r["user_id"].as_str().unwrap();
                    client
                        .delete(format!("{base}/users/{id}"))
                        .bearer_auth(&key)
                        .send()
                        .await
                        .unwrap();
                }
            }
        })
    };
    let mut seen = Vec::new();
    let mut next = Some("/api/v1/users?per_page=4".to_string());
    let mut last_page = None;
    while let Some(path) = next {
        let page = app.get(&path, &acme.key).await.expect(200);
        seen.extend(emails(&page));
        next = link(&page, "next");
        last_page = Some(page);
    }
    churn.await.unwrap();
    let stable_seen: Vec<&String> = seen.iter().filter(|e| e.ends_with("@x.test")).collect();
    assert_eq!(
        stable_seen,
        stable.iter().collect::<Vec<_>>(),
        "every stable user once, in creation order"
    );
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no user twice: {seen:?}");

    // Back from the last page, by `prev`.
    let mut back = Vec::new();
    let mut page = app
        .get(
            &link(last_page.as_ref().unwrap(), "last").unwrap(),
            &acme.key,
        )
        .await
        .expect(200);
    loop {
        let mut e = emails(&page);
        e.extend(back);
        back = e;
        let Some(prev) = link(&page, "prev") else {
            break;
        };
        page = app.get(&prev, &acme.key).await.expect(200);
    }
    let total: usize = page.header("x-total-count").unwrap().parse().unwrap();
    assert_eq!(back.len(), total, "{back:?}");
    let back_stable: Vec<&String> = back.iter().filter(|e| e.ends_with("@x.test")).collect();
    assert_eq!(back_stable, stable.iter().collect::<Vec<_>>());
    assert_eq!(total, 23 + 20, "the churn kept 20 of its users");
    // The last page is full (a page before the end is never short).
    let last = app
        .get(&link(&page, "last").unwrap(), &acme.key)
        .await
        .expect(200);
    assert_eq!(emails(&last).len(), 4);
    assert!(link(&last, "next").is_none());
}

#[tokio::test]
async fn a_cursor_works_only_for_its_list_tenant_and_filters() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let globex = app.reseller("Globex").await;
    for i in 0..3 {
        acme.access_token(&app, &format!("a{i}@x.test")).await;
        globex.access_token(&app, &format!("g{i}@x.test")).await;
        let pm = json!({"label": format!("pm{i}"), "type": "invoice", "reference": "x"});
        app.post("/api/v1/payment_methods", &acme.key, pm)
            .await
            .expect(201);
    }
    let first = app
        .get("/api/v1/users?per_page=1", &acme.key)
        .await
        .expect(200);
    let next = link(&first, "next").unwrap();
    let cursor = next
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("cursor="))
        .unwrap()
        .to_string();
    assert_eq!(
        emails(&app.get(&next, &acme.key).await.expect(200)),
        ["a1@x.test"]
    );
    // Another tenant, another list, other filters, an altered cursor: 400, nothing leaks.
    app.get(&next, &globex.key)
        .await
        .expect_error(400, "invalid_cursor");
    app.get(
        &format!("/api/v1/payment_methods?cursor={cursor}"),
        &acme.key,
    )
    .await
    .expect_error(400, "invalid_cursor");
    app.get(&format!("/api/v1/users?uid=1&cursor={cursor}"), &acme.key)
        .await
        .expect_error(400, "invalid_cursor");
    let mut bytes = cursor.into_bytes();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    app.get(&format!("/api/v1/users?cursor={tampered}"), &acme.key)
        .await
        .expect_error(400, "invalid_cursor");
    app.get("/api/v1/users?cursor=%%%", &acme.key)
        .await
        .expect_error(400, "invalid_cursor");
    app.get("/api/v1/users?cursor=abc&page=2", &acme.key)
        .await
        .expect_error(400, "invalid_request");

    // A small list walks the same way (payment methods, held in memory).
    let pm = app
        .get("/api/v1/payment_methods?per_page=2", &acme.key)
        .await
        .expect(200);
    assert_eq!(pm.header("x-total-count"), Some("3"));
    let rest = app
        .get(&link(&pm, "next").unwrap(), &acme.key)
        .await
        .expect(200);
    assert_eq!(rest.body.as_array().unwrap().len(), 1);
    assert_eq!(rest.body[0]["label"], "pm2");
    let back = app
        .get(&link(&rest, "prev").unwrap(), &acme.key)
        .await
        .expect(200);
    assert_eq!(back.body, pm.body);
}

/// Walks a list from `start` by `next` links, then back from its `last` link by `prev` links,
/// returning the ids seen each way and the `X-Total-Count` of the first page.
async fn walk(app: &TestApp, start: &str, token: &str) -> (Vec<String>, Vec<String>, usize) {
    let ids = |r: &Reply| -> Vec<String> {
        r.body
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let first = app.get(start, token).await.expect(200);
    let total = first.header("x-total-count").unwrap().parse().unwrap();
    let mut forward = ids(&first);
    let mut next = link(&first, "next");
    while let Some(path) = next {
        let page = app.get(&path, token).await.expect(200);
        forward.extend(ids(&page));
        next = link(&page, "next");
    }
    let mut backward = Vec::new();
    let mut prev = link(&first, "last");
    while let Some(path) = prev {
        let page = app.get(&path, token).await.expect(200);
        let mut here = ids(&page);
        here.extend(backward);
        backward = here;
        prev = link(&page, "prev");
    }
    (forward, backward, total)
}

#[tokio::test]
async fn the_audit_log_and_a_sites_deploys_page_newest_first_by_cursor_at_any_depth() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let globex = app.reseller("Globex").await;
    for i in 0..9 {
        acme.access_token(&app, &format!("a{i}@x.test")).await;
    }
    globex.access_token(&app, "g@x.test").await;

    let (forward, backward, total) = walk(&app, "/api/v1/audit?per_page=4", &acme.key).await;
    assert_eq!(total, 9, "X-Total-Count counts the reseller's own entries");
    assert_eq!(forward.len(), 9);
    assert_eq!(forward, backward, "the same entries either way");
    let unique: HashSet<&String> = forward.iter().collect();
    assert_eq!(unique.len(), 9, "no entry twice");
    let first = app
        .get("/api/v1/audit?per_page=1", &acme.key)
        .await
        .expect(200);
    let newest = &first.body[0];
    assert_eq!(newest["path"], "/api/v1/access_tokens");
    let (all, _, everyone) = walk(&app, "/api/v1/admin/audit?per_page=5", &app.operator).await;
    assert_eq!(everyone, all.len());
    assert!(
        all.len() >= 9 + 1 + 2,
        "both resellers' entries and their creation"
    );
    // A cursor of the reseller's view is refused by another reseller's.
    let next = link(
        &app.get("/api/v1/audit?per_page=4", &acme.key).await,
        "next",
    )
    .unwrap();
    app.get(&next, &globex.key)
        .await
        .expect_error(400, "invalid_cursor");
    // Counts and order survive a restart.
    let app = app.restart().await;
    let (again, _, total) = walk(&app, "/api/v1/audit?per_page=4", &acme.key).await;
    assert_eq!((again, total), (forward, 9));

    let user = acme.access_token(&app, "deployer@x.test").await;
    let site = app
        .post(
            "/api/v1/sites",
            &user.token,
            json!({"name": "many-deploys"}),
        )
        .await
        .expect(201)
        .body;
    let path = format!("/api/v1/sites/{}/deploys", site["id"].as_str().unwrap());
    let mut made = Vec::new();
    for i in 0..7 {
        let sha = format!("{i:040x}");
        let d = app
            .post(&path, &user.token, json!({"files": {"index.html": sha}}))
            .await
            .expect(200)
            .body;
        made.push(d["id"].as_str().unwrap().to_string());
    }
    made.reverse();
    let (forward, backward, total) = walk(&app, &format!("{path}?per_page=3"), &user.token).await;
    assert_eq!(total, 7);
    assert_eq!(forward, made, "newest first");
    assert_eq!(backward, made);
    // Netlify's page= still works, as an offset.
    let second = app
        .get(&format!("{path}?per_page=3&page=2"), &user.token)
        .await
        .expect(200);
    assert_eq!(second.body[0]["id"], made[3]);
}
