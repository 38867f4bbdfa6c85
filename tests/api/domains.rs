//! Client domains against a real DNS server (pebble-challtestsrv): one-call onboarding, TXT
//! verification by hand and in the background, the deadline, WordPress keys, isolation, and
//! custom domains served at the edge with their traffic counted.

use crate::edge;
use crate::helpers::{Reply, TestApp};
use crate::pebble::ChallTestSrv;
use crate::sites::publish_site;
use serde_json::{json, Value};
use std::time::Duration;

async fn dns_app(dns: &ChallTestSrv, extra: &[&str]) -> TestApp {
    let server = dns.dns_server();
    let mut args = vec!["--dns-server", server.as_str()];
    args.extend_from_slice(extra);
    TestApp::spawn_with(&args).await
}

/// Polls `GET path` until `done` holds, for up to 20 seconds.
async fn wait_for(app: &TestApp, path: &str, token: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..80 {
        let r = app.get(path, token).await.expect(200);
        if done(&r.body) {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{path} never reached the expected state");
}

fn id(r: &Reply) -> String {
    r.body["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn domains_are_registered_once_and_verified_by_their_txt_record() {
    let dns = ChallTestSrv::start();
    let app = dns_app(&dns, &["--verify-interval", "3600"]).await;
    let acme = app.reseller("Acme").await;
    let globex = app.reseller("Globex").await;
    let new = |domain: &str, email: &str| json!({"domain": domain, "email": email});

    let r = app
        .post(
            "/api/v1/domains",
            &acme.key,
            new("Shop.Example.TEST.", "owner@shop.test"),
        )
        .await
        .expect(201);
    assert_eq!(r.body["domain"], "shop.example.test");
    assert_eq!(r.body["verification_status"], "pending");
    assert_eq!(r.body["verification"]["type"], "TXT");
    assert_eq!(
        r.body["verification"]["name"],
        "_resellerd.shop.example.test"
    );
    let value = r.body["verification"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(value.starts_with("resellerd-verification="));
    assert!(r.body["wordpress_api_key"]
        .as_str()
        .unwrap()
        .starts_with("wp_"));
    let shop = id(&r);
    let owner = r.body["user_id"].as_str().unwrap().to_string();

    // The same email onboards into the same client user; the user exists for access tokens too.
    let blog = app
        .post(
            "/api/v1/domains",
            &acme.key,
            new("blog.example.test", "OWNER@shop.test"),
        )
        .await
        .expect(201);
    assert_eq!(blog.body["user_id"], owner.as_str());
    assert_eq!(
        acme.access_token(&app, "owner@shop.test").await.user_id,
        owner
    );

    // A name is registered once on the whole instance, even under concurrency.
    app.post(
        "/api/v1/domains",
        &acme.key,
        new("shop.example.test", "x@y.test"),
    )
    .await
    .expect_error(400, "domain_taken");
    app.post(
        "/api/v1/domains",
        &globex.key,
        new("SHOP.example.test", "x@y.test"),
    )
    .await
    .expect_error(400, "domain_taken");
    let racers = (0..8).map(|i| {
        app.post(
            "/api/v1/domains",
            &globex.key,
            new("race.example.test", &format!("r{i}@y.test")),
        )
    });
    let replies = futures_util::future::join_all(racers).await;
    assert_eq!(replies.iter().filter(|r| r.status == 201).count(), 1);
    for r in replies.into_iter().filter(|r| r.status != 201) {
        r.expect_error(400, "domain_taken");
    }
    app.post(
        "/api/v1/domains",
        &acme.key,
        new("not a domain", "x@y.test"),
    )
    .await
    .expect_error(400, "invalid_request");
    app.post("/api/v1/domains", &acme.key, new("ok.example.test", "nope"))
        .await
        .expect_error(400, "invalid_request");

    // No record, then a wrong one: still pending, but checked.
    let verify = format!("/api/v1/domains/{shop}/verify");
    let r = app.post(&verify, &acme.key, json!({})).await.expect(200);
    assert_eq!(r.body["verification_status"], "pending");
    assert!(r.body["last_checked_at"].is_string());
    let why = r.body["verification_error"].as_str().unwrap();
    assert!(
        why.contains("no TXT record at _resellerd.shop.example.test"),
        "{why}"
    );
    dns.set_txt(
        "_resellerd.shop.example.test",
        "resellerd-verification=wrong",
    )
    .await;
    let r = app.post(&verify, &acme.key, json!({})).await.expect(200);
    assert_eq!(r.body["verification_status"], "pending");
    let why = r.body["verification_error"].as_str().unwrap();
    assert!(why.contains("resellerd-verification=wrong"), "{why}");
    assert!(why.contains("change the record's value"), "{why}");
    dns.clear_txt("_resellerd.shop.example.test").await;
    dns.set_txt("_resellerd.shop.example.test", &value).await;
    let r = app.post(&verify, &acme.key, json!({})).await.expect(200);
    assert_eq!(r.body["verification_status"], "verified");
    assert!(r.body["verified_at"].is_string());
    assert_eq!(r.body["verification_error"], Value::Null);
    assert!(r.get_wp_key_absent());

    let verified = app
        .get("/api/v1/domains?status=verified", &acme.key)
        .await
        .expect(200);
    assert_eq!(verified.body.as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/api/v1/domains?status=pending", &acme.key)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    app.get("/api/v1/domains?status=bogus", &acme.key)
        .await
        .expect_error(400, "invalid_request");
    let mine = app
        .get(&format!("/api/v1/domains?user_id={owner}"), &acme.key)
        .await
        .expect(200);
    assert_eq!(mine.body.as_array().unwrap().len(), 2);

    // Another reseller sees none of it.
    app.get(&format!("/api/v1/domains/{shop}"), &globex.key)
        .await
        .expect_error(404, "not_found");
    app.delete(&format!("/api/v1/domains/{shop}"), &globex.key)
        .await
        .expect_error(404, "not_found");
    app.post(&verify, &globex.key, json!({}))
        .await
        .expect_error(404, "not_found");

    // Verification survives a restart; deleting frees the name.
    let app = app.restart().await;
    assert_eq!(
        app.get(&format!("/api/v1/domains/{shop}"), &acme.key)
            .await
            .expect(200)
            .body["verification_status"],
        "verified"
    );
    app.delete(&format!("/api/v1/domains/{shop}"), &acme.key)
        .await
        .expect(204);
    app.get(&format!("/api/v1/domains/{shop}"), &acme.key)
        .await
        .expect_error(404, "not_found");
    app.post(
        "/api/v1/domains",
        &globex.key,
        new("shop.example.test", "new@owner.test"),
    )
    .await
    .expect(201);
}

trait NoKey {
    fn get_wp_key_absent(&self) -> bool;
}

impl NoKey for Reply {
    /// The WordPress key appears only in the create response.
    fn get_wp_key_absent(&self) -> bool {
        self.body.get("wordpress_api_key").is_none()
    }
}

#[tokio::test]
async fn the_background_checker_verifies_and_the_deadline_fails() {
    let dns = ChallTestSrv::start();
    let app = dns_app(&dns, &["--verify-interval", "1", "--verify-deadline", "2"]).await;
    let acme = app.reseller("Acme").await;
    let quick = app
        .post(
            "/api/v1/domains",
            &acme.key,
            json!({"domain": "quick.example.test", "email": "q@q.test"}),
        )
        .await
        .expect(201);
    let slow = app
        .post(
            "/api/v1/domains",
            &acme.key,
            json!({"domain": "slow.example.test", "email": "s@s.test"}),
        )
        .await
        .expect(201);
    dns.set_txt(
        "_resellerd.quick.example.test",
        quick.body["verification"]["value"].as_str().unwrap(),
    )
    .await;
    let body = wait_for(
        &app,
        &format!("/api/v1/domains/{}", id(&quick)),
        &acme.key,
        |b| b["verification_status"] == "verified",
    )
    .await;
    assert!(body["verified_at"].is_string());
    let slow_path = format!("/api/v1/domains/{}", id(&slow));
    wait_for(&app, &slow_path, &acme.key, |b| {
        b["verification_status"] == "failed"
    })
    .await;
    // A failed domain can still be verified once its record appears.
    dns.set_txt(
        "_resellerd.slow.example.test",
        slow.body["verification"]["value"].as_str().unwrap(),
    )
    .await;
    let r = app
        .post(&format!("{slow_path}/verify"), &acme.key, json!({}))
        .await
        .expect(200);
    assert_eq!(r.body["verification_status"], "verified");
}

#[tokio::test]
async fn wordpress_keys_rotate_and_see_only_their_own_domain() {
    let dns = ChallTestSrv::start();
    let app = dns_app(&dns, &[]).await;
    let acme = app.reseller("Acme").await;
    let one = app
        .post(
            "/api/v1/domains",
            &acme.key,
            json!({"domain": "one.example.test", "email": "a@a.test"}),
        )
        .await
        .expect(201);
    let two = app
        .post(
            "/api/v1/domains",
            &acme.key,
            json!({"domain": "two.example.test", "email": "b@b.test"}),
        )
        .await
        .expect(201);
    let key1 = one.body["wordpress_api_key"].as_str().unwrap().to_string();
    let key2 = two.body["wordpress_api_key"].as_str().unwrap().to_string();
    let seen = app.get("/api/v1/plugin/domain", &key1).await.expect(200);
    assert_eq!(seen.body["domain"], "one.example.test");
    assert_eq!(seen.body["verification_status"], "pending");
    assert!(seen.body["metrics"]["requests"].is_number());
    assert_eq!(
        app.get("/api/v1/plugin/domain", &key2)
            .await
            .expect(200)
            .body["domain"],
        "two.example.test"
    );
    // A plugin key opens nothing else.
    app.get("/api/v1/domains", &key1)
        .await
        .expect_error(403, "forbidden");
    app.get(&format!("/api/v1/domains/{}", id(&two)), &key1)
        .await
        .expect_error(403, "forbidden");
    app.get("/api/v1/user", &key1)
        .await
        .expect_error(403, "forbidden");
    app.get("/api/v1/plugin/domain", &acme.key)
        .await
        .expect_error(403, "forbidden");

    let rotated = app
        .post(
            &format!("/api/v1/domains/{}/wordpress_key", id(&one)),
            &acme.key,
            json!({}),
        )
        .await
        .expect(201);
    let new_key = rotated.body["wordpress_api_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_key, key1);
    app.get("/api/v1/plugin/domain", &key1)
        .await
        .expect_error(401, "unauthorized");
    assert_eq!(
        app.get("/api/v1/plugin/domain", &new_key)
            .await
            .expect(200)
            .body["domain"],
        "one.example.test"
    );
    app.get("/api/v1/plugin/domain", &key2).await.expect(200);
    let globex = app.reseller("Globex").await;
    app.post(
        &format!("/api/v1/domains/{}/wordpress_key", id(&one)),
        &globex.key,
        json!({}),
    )
    .await
    .expect_error(404, "not_found");
    // Deleting the domain kills its key.
    app.delete(&format!("/api/v1/domains/{}", id(&one)), &acme.key)
        .await
        .expect(204);
    app.get("/api/v1/plugin/domain", &new_key)
        .await
        .expect_error(401, "unauthorized");
}

#[tokio::test]
async fn a_verified_domain_serves_its_site_and_counts_traffic() {
    let dns = ChallTestSrv::start();
    let app = dns_app(&dns, &["--traffic-flush-interval", "1"]).await;
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@shop.test").await;
    publish_site(
        &app,
        &ann.token,
        "shop",
        &[("index.html", b"<h1>the shop</h1>")],
    )
    .await;
    let other = acme.access_token(&app, "bob@else.test").await;
    app.post("/api/v1/sites", &other.token, json!({"name": "bobs"}))
        .await
        .expect(201);

    // A site of another client cannot be attached.
    app.post(
        "/api/v1/domains",
        &acme.key,
        json!({"domain": "shop.example.test", "email": "ann@shop.test", "site_id": "bobs"}),
    )
    .await
    .expect_error(400, "invalid_request");
    let d = app
        .post(
            "/api/v1/domains",
            &acme.key,
            json!({"domain": "shop.example.test", "email": "ann@shop.test", "site_id": "shop"}),
        )
        .await
        .expect(201);
    let path = format!("/api/v1/domains/{}", id(&d));

    // Pending: never served.
    assert_eq!(edge::get(&app, "shop.example.test", "/").await.status, 404);
    dns.set_txt(
        "_resellerd.shop.example.test",
        d.body["verification"]["value"].as_str().unwrap(),
    )
    .await;
    app.post(&format!("{path}/verify"), &acme.key, json!({}))
        .await
        .expect(200);
    for host in [
        "shop.example.test",
        "www.shop.example.test",
        "SHOP.example.test:8080",
    ] {
        let r = edge::get(&app, host, "/").await.expect(200);
        assert!(r.text.contains("the shop"), "{host}: {}", r.text);
    }
    // The user sees its own domain; the counts arrive with the next batch.
    let body = wait_for(&app, &path, &ann.token, |b| {
        b["metrics"]["requests"].as_u64() >= Some(3)
    })
    .await;
    assert!(body["metrics"]["bytes_sent"].as_u64().unwrap() >= 3 * 17);
    assert!(body["metrics"]["last_request_at"].is_string());
    assert_eq!(
        body["metrics"]["daily"][0]["requests"],
        body["metrics"]["requests"]
    );
    app.get(&path, &other.token)
        .await
        .expect_error(404, "not_found");

    // Counts survive a restart; detaching or deleting stops serving at once.
    let app = app.restart().await;
    assert!(
        app.get(&path, &acme.key).await.expect(200).body["metrics"]["requests"].as_u64() >= Some(3)
    );
    app.patch(&path, &acme.key, json!({"site_id": null}))
        .await
        .expect(200);
    assert_eq!(edge::get(&app, "shop.example.test", "/").await.status, 404);
    app.patch(&path, &acme.key, json!({"site_id": "shop"}))
        .await
        .expect(200);
    edge::get(&app, "shop.example.test", "/").await.expect(200);
    app.delete(&path, &acme.key).await.expect(204);
    assert_eq!(edge::get(&app, "shop.example.test", "/").await.status, 404);
}

/// A refused onboarding creates nothing: naming a site of another client (or a taken name)
/// with a new email is 400, and that email's client is not made.
#[tokio::test]
async fn a_refused_domain_creates_no_client() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "client@example.com").await;
    publish_site(&app, &ann.token, "my-site", &[("index.html", b"hi")]).await;
    let users = || app.get("/api/v1/users", &acme.key);
    let before = users().await.expect(200).body;
    let r = app
        .post(
            "/api/v1/domains",
            &acme.key,
            json!({"domain": "client.example", "email": "owner@client.example", "site_id": "my-site"}),
        )
        .await
        .expect_error(400, "invalid_request");
    assert!(r.text.contains("site owner's email"), "{}", r.text);
    app.post(
        "/api/v1/domains",
        &acme.key,
        json!({"domain": "client.example", "email": "client@example.com", "site_id": "my-site"}),
    )
    .await
    .expect(201);
    app.post(
        "/api/v1/domains",
        &acme.key,
        json!({"domain": "client.example", "email": "second@client.example"}),
    )
    .await
    .expect_error(400, "domain_taken");
    let after = users().await.expect(200).body;
    assert_eq!(before, after, "a refused request made a client");
}
