//! Sites and deploys through the API: ownership scope, names, the digest flow, zip deploys and
//! their limits, restore, and blob garbage collection.

use crate::helpers::{reply, TestApp};
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use std::io::Write;

pub fn sha1(data: &[u8]) -> String {
    hex::encode(Sha1::digest(data))
}

/// A zip archive of (path, content) pairs, deflated.
pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (path, data) in files {
        w.start_file(*path, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

pub async fn upload(app: &TestApp, token: &str, deploy_id: &str, path: &str, data: &[u8]) -> u16 {
    let resp = app
        .client
        .put(app.url(&format!("/api/v1/deploys/{deploy_id}/files/{path}")))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    resp.status().as_u16()
}

pub async fn zip_deploy(
    app: &TestApp,
    token: &str,
    site: &str,
    zip: Vec<u8>,
) -> crate::helpers::Reply {
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/sites/{site}/deploys")))
        .bearer_auth(token)
        .header("content-type", "application/zip")
        .body(zip)
        .send()
        .await
        .unwrap();
    reply(resp).await
}

/// Creates the site `name` for the user holding `token` and publishes `files` as its deploy.
pub async fn publish_site(app: &TestApp, token: &str, name: &str, files: &[(&str, &[u8])]) {
    app.post("/api/v1/sites", token, json!({"name": name}))
        .await
        .expect(201);
    zip_deploy(app, token, name, zip_of(files))
        .await
        .expect(200);
}

fn names(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn sites_belong_to_users_and_follow_the_scope_rule() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let other = app.reseller("Other").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    let bob = acme.access_token(&app, "bob@acme.test").await;
    let eve = other.access_token(&app, "eve@other.test").await;

    let a = app
        .post("/api/v1/sites", &ann.token, json!({"name": "Ann-Site"}))
        .await
        .expect(201);
    assert_eq!(a.body["name"], "ann-site");
    assert_eq!(a.body["user_id"], ann.user_id.as_str());
    // The URL opens as given on a local install: with the HTTPS listener's port.
    assert_eq!(
        a.body["url"],
        format!("https://ann-site.localhost:{}", app.https_port)
    );
    let admin = a.body["admin_url"].as_str().unwrap();
    assert!(
        admin.starts_with(&format!("{}/admin/", app.http)),
        "{admin}"
    );
    assert!(a
        .header("content-type")
        .unwrap()
        .contains("application/json"));
    // A reseller key creates for one of its users; a generated name when none is given.
    let b = app
        .post("/api/v1/sites", &acme.key, json!({"user_id": bob.user_id}))
        .await
        .expect(201);
    assert!(b.body["name"].as_str().unwrap().starts_with("site-"));
    app.post("/api/v1/sites", &acme.key, json!({"user_id": eve.user_id}))
        .await
        .expect_error(404, "not_found");
    app.post("/api/v1/sites", &acme.key, json!({"name": "x"}))
        .await
        .expect_error(400, "invalid_request");
    // Names are unique on the whole instance and are DNS labels.
    app.post("/api/v1/sites", &eve.token, json!({"name": "ann-site"}))
        .await
        .expect_error(400, "site_name_taken");
    app.post(
        "/api/v1/sites",
        &eve.token,
        json!({"name": "no_underscores"}),
    )
    .await
    .expect_error(400, "invalid_request");

    // Netlify accounts: one per user; createSiteInTeam by account slug.
    let accounts = app.get("/api/v1/accounts", &ann.token).await.expect(200);
    assert_eq!(accounts.body.as_array().unwrap().len(), 1);
    assert_eq!(accounts.body[0]["slug"], ann.user_id.as_str());
    let env = app
        .get(&format!("/api/v1/accounts/{}/env", ann.user_id), &ann.token)
        .await
        .expect(200);
    assert_eq!(env.body, json!([]));
    let in_team = app
        .post(
            &format!("/api/v1/{}/sites", bob.user_id),
            &acme.key,
            json!({"name": "team-site"}),
        )
        .await
        .expect(201);
    assert_eq!(in_team.body["user_id"], bob.user_id.as_str());
    app.post(
        &format!("/api/v1/{}/sites", bob.user_id),
        &ann.token,
        json!({}),
    )
    .await
    .expect_error(404, "not_found");
    app.delete("/api/v1/sites/team-site", &acme.key)
        .await
        .expect(204);

    let all = app.get("/api/v1/sites", &acme.key).await.expect(200);
    assert_eq!(all.body.as_array().unwrap().len(), 2);
    let paged = app
        .get("/api/v1/sites?page=2&per_page=1", &acme.key)
        .await
        .expect(200);
    assert_eq!(paged.body.as_array().unwrap().len(), 1);
    assert!(paged.header("link").unwrap().contains("rel=\"prev\""));
    let mine = app.get("/api/v1/sites", &ann.token).await.expect(200);
    assert_eq!(names(&mine.body), ["ann-site"]);
    let filtered = app
        .get("/api/v1/sites?name=ann&filter=all", &acme.key)
        .await
        .expect(200);
    assert_eq!(names(&filtered.body), ["ann-site"]);

    // By id or by name; a foreign site is "not found".
    let id = a.body["id"].as_str().unwrap();
    app.get(&format!("/api/v1/sites/{id}"), &ann.token)
        .await
        .expect(200);
    let by_name = app
        .get("/api/v1/sites/ann-site", &acme.key)
        .await
        .expect(200);
    assert_eq!(by_name.body["id"], id);
    assert_eq!(by_name.body["account_slug"], ann.user_id.as_str());
    app.get(&format!("/api/v1/sites/{id}"), &bob.token)
        .await
        .expect_error(404, "not_found");
    app.get(&format!("/api/v1/sites/{id}"), &other.key)
        .await
        .expect_error(404, "not_found");

    let renamed = app
        .patch(
            &format!("/api/v1/sites/{id}"),
            &ann.token,
            json!({"name": "ann-new", "password": "s3cret"}),
        )
        .await
        .expect(200);
    assert_eq!(renamed.body["name"], "ann-new");
    assert_eq!(renamed.body["password_protected"], true);
    // The old name is free again.
    app.post("/api/v1/sites", &bob.token, json!({"name": "ann-site"}))
        .await
        .expect(201);

    let del = app
        .delete(&format!("/api/v1/sites/{id}"), &ann.token)
        .await
        .expect(204);
    assert!(del.text.is_empty());
    assert!(del.header("content-type").is_none());
    app.get(&format!("/api/v1/sites/{id}"), &ann.token)
        .await
        .expect_error(404, "not_found");

    // Deleting a user deletes its sites.
    app.delete(&format!("/api/v1/users/{}", bob.user_id), &acme.key)
        .await
        .expect(204);
    let left = app.get("/api/v1/sites", &acme.key).await.expect(200);
    assert_eq!(left.body.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn digest_flow_uploads_only_what_is_missing() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    app.post("/api/v1/sites", &ann.token, json!({"name": "docs"}))
        .await
        .expect(201);
    let index = b"<h1>hello</h1>".as_slice();
    let spaced = b"same".as_slice();
    let files = json!({
        "/index.html": sha1(index), "sub/a b.txt": sha1(spaced), "copy.txt": sha1(spaced),
    });
    let d = app
        .post(
            "/api/v1/sites/docs/deploys",
            &ann.token,
            json!({"files": files}),
        )
        .await
        .expect(200);
    let did = d.body["id"].as_str().unwrap().to_string();
    assert_eq!(d.body["state"], "prepared");
    let mut required: Vec<String> = d.body["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    required.sort();
    let mut expected = vec![sha1(index), sha1(spaced)];
    expected.sort();
    assert_eq!(required, expected, "distinct digests");

    // Wrong content for a path: 422, which stops Netlify clients retrying.
    assert_eq!(
        upload(&app, &ann.token, &did, "index.html", b"evil").await,
        422
    );
    assert_eq!(upload(&app, &ann.token, &did, "..%2Fx", b"x").await, 400);
    assert_eq!(
        upload(&app, &ann.token, &did, "index.html", index).await,
        200
    );
    let mid = app
        .get(&format!("/api/v1/deploys/{did}"), &ann.token)
        .await
        .expect(200);
    assert_eq!(mid.body["state"], "prepared");
    assert_eq!(
        upload(&app, &ann.token, &did, "sub/a%20b.txt", spaced).await,
        200
    );
    let done = app
        .get(&format!("/api/v1/sites/docs/deploys/{did}"), &ann.token)
        .await
        .expect(200);
    assert_eq!(done.body["state"], "ready");
    let site = app.get("/api/v1/sites/docs", &ann.token).await.expect(200);
    assert_eq!(site.body["published_deploy"]["id"], did.as_str());

    // The same files again: nothing required, ready at once. A draft is not published.
    let again = app
        .post(
            "/api/v1/sites/docs/deploys",
            &ann.token,
            json!({"files": files, "draft": true}),
        )
        .await
        .expect(200);
    assert_eq!(again.body["required"], json!([]));
    assert_eq!(again.body["state"], "ready");
    let site = app.get("/api/v1/sites/docs", &ann.token).await.expect(200);
    assert_eq!(site.body["published_deploy"]["id"], did.as_str());

    // Two-step flow: POST without files, then PUT the map; draft comes from the POST.
    let step = app
        .post(
            "/api/v1/sites/docs/deploys",
            &ann.token,
            json!({"draft": false}),
        )
        .await
        .expect(200);
    assert_eq!(step.body["state"], "new");
    assert_eq!(step.body["required"], json!([]));
    let sid = step.body["id"].as_str().unwrap().to_string();
    let other = b"v2".as_slice();
    let put = app
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/sites/docs/deploys/{sid}"),
            Some(&ann.token),
            Some(json!({"files": {"index.html": sha1(other)}, "draft": true})),
        )
        .await
        .expect(200);
    assert_eq!(put.body["required"], json!([sha1(other)]));
    assert_eq!(
        upload(&app, &ann.token, &sid, "index.html", other).await,
        200
    );
    let site = app.get("/api/v1/sites/docs", &ann.token).await.expect(200);
    assert_eq!(site.body["published_deploy"]["id"], sid.as_str());

    // Restore the first deploy (instant rollback).
    app.post(
        &format!("/api/v1/sites/docs/deploys/{did}/restore"),
        &ann.token,
        json!({}),
    )
    .await
    .expect(201);
    let site = app.get("/api/v1/sites/docs", &ann.token).await.expect(200);
    assert_eq!(site.body["published_deploy"]["id"], did.as_str());
    let list = app
        .get("/api/v1/sites/docs/deploys", &ann.token)
        .await
        .expect(200);
    assert_eq!(list.body.as_array().unwrap().len(), 3);
    assert_eq!(list.body[0]["id"], sid.as_str(), "newest first");

    // Bad maps: traversal, NUL, not a digest.
    for bad in [
        json!({"files": {"../etc/passwd": sha1(b"x")}}),
        json!({"files": {"a\u{0}b": sha1(b"x")}}),
        json!({"files": {"a.html": "nope"}}),
    ] {
        app.post("/api/v1/sites/docs/deploys", &ann.token, bad)
            .await
            .expect_error(400, "invalid_request");
    }
    // Another user's token cannot see or use the deploy.
    let bob = acme.access_token(&app, "bob@acme.test").await;
    app.get(&format!("/api/v1/deploys/{did}"), &bob.token)
        .await
        .expect_error(404, "not_found");
    assert_eq!(
        upload(&app, &bob.token, &sid, "index.html", other).await,
        404
    );
}

#[tokio::test]
async fn zip_deploys_in_one_call_within_limits() {
    let app = TestApp::spawn_with(&["--max-deploy-files", "3"]).await;
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    app.post("/api/v1/sites", &ann.token, json!({"name": "zipped"}))
        .await
        .expect(201);
    let zip = zip_of(&[("index.html", b"<p>zip</p>"), ("css/a.css", b"p{}")]);
    let d = zip_deploy(&app, &ann.token, "zipped", zip)
        .await
        .expect(200);
    assert_eq!(d.body["state"], "ready");
    assert_eq!(d.body["published"], true);
    // The same zip without its Content-Type: the answer says what to send.
    let bare = app
        .client
        .post(app.url("/api/v1/sites/zipped/deploys"))
        .bearer_auth(&ann.token)
        .body(zip_of(&[("index.html", b"<p>zip</p>")]))
        .send()
        .await
        .unwrap();
    let r = crate::helpers::reply(bare)
        .await
        .expect_error(400, "invalid_request");
    assert!(
        r.text.contains("Content-Type: application/zip"),
        "{}",
        r.text
    );

    let blobs_before = count_blobs(&app);
    let many = zip_of(&[("a", b"1"), ("b", b"2"), ("c", b"3"), ("d", b"4")]);
    zip_deploy(&app, &ann.token, "zipped", many)
        .await
        .expect_error(413, "too_many_files");
    let zeros = vec![0u8; 20 << 20];
    let bomb = zip_of(&[("bomb.bin", &zeros)]);
    assert!(bomb.len() < 1 << 20);
    zip_deploy(&app, &ann.token, "zipped", bomb)
        .await
        .expect_error(413, "payload_too_large");
    let evil = zip_of(&[("../evil.html", b"x")]);
    zip_deploy(&app, &ann.token, "zipped", evil)
        .await
        .expect_error(400, "invalid_request");
    zip_deploy(&app, &ann.token, "zipped", b"not a zip".to_vec())
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(count_blobs(&app), blobs_before, "nothing written");
    let list = app
        .get("/api/v1/sites/zipped/deploys", &ann.token)
        .await
        .expect(200);
    assert_eq!(list.body.as_array().unwrap().len(), 1);

    // Deleting the site removes its blobs.
    app.delete("/api/v1/sites/zipped", &ann.token)
        .await
        .expect(204);
    assert_eq!(count_blobs(&app), 0);
}

fn count_blobs(app: &TestApp) -> usize {
    let dir = app.data_dir.join("blobs");
    let Ok(heads) = std::fs::read_dir(dir) else {
        return 0;
    };
    heads
        .flatten()
        .filter(|h| h.path().is_dir())
        .map(|h| std::fs::read_dir(h.path()).map(|d| d.count()).unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn sites_survive_a_crash_and_go_with_their_reseller() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    publish_site(&app, &ann.token, "durable", &[("index.html", b"kept")]).await;
    let app = app.restart().await;
    let page = app
        .client
        .get(app.url("/"))
        .header("host", "durable.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(page.text().await.unwrap(), "kept");

    // A suspended reseller's sites are not served.
    app.patch(
        &format!("/api/v1/admin/resellers/{}", acme.id),
        &app.operator,
        json!({"suspended": true}),
    )
    .await
    .expect(200);
    let page = app
        .client
        .get(app.url("/"))
        .header("host", "durable.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 503);

    app.delete(
        &format!("/api/v1/admin/resellers/{}", acme.id),
        &app.operator,
    )
    .await
    .expect(204);
    assert_eq!(count_blobs(&app), 0);
    let other = app.reseller("Other").await;
    let eve = other.access_token(&app, "eve@other.test").await;
    app.post("/api/v1/sites", &eve.token, json!({"name": "durable"}))
        .await
        .expect(201);
}
