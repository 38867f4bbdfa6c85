//! Plans and the operator's limits: a creating call over a limit answers 403 `quota_exceeded`
//! with the limit, what is used and the maximum, and writes nothing; concurrent calls cannot both
//! pass a limit of one.

use crate::helpers::TestApp;
use serde_json::{json, Value};
use std::time::Duration;

fn quota(r: crate::helpers::Reply, limit: &str, used: u64, max: u64) {
    let r = r.expect_error(403, "quota_exceeded");
    assert_eq!(r.body["limit"], limit, "{}", r.text);
    assert_eq!(r.body["used"], used, "{}", r.text);
    assert_eq!(r.body["max"], max, "{}", r.text);
}

/// Creates a plan and makes it the reseller's default.
async fn default_plan(app: &TestApp, key: &str, plan: Value) {
    let plan = app.post("/api/v1/plans", key, plan).await.expect(201).body;
    app.patch(
        "/api/v1/reseller",
        key,
        json!({"default_plan_id": plan["id"]}),
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn plans_limit_what_a_client_creates() {
    let app = TestApp::spawn().await;
    let a = app.reseller("Plans A").await;
    let b = app.reseller("Plans B").await;
    let starter = app
        .post(
            "/api/v1/plans",
            &a.key,
            json!({"name": "Starter", "max_sites": 1, "max_domains": 1, "max_storage_mb": 100}),
        )
        .await
        .expect(201)
        .body;
    assert_eq!(starter["max_sites"], 1);
    assert!(
        starter["max_bandwidth_mb_month"].is_null(),
        "left out is unlimited"
    );
    assert_eq!(starter["overuse"], "block");
    let starter_id = starter["id"].as_str().unwrap().to_string();
    app.patch(
        "/api/v1/reseller",
        &a.key,
        json!({"default_plan_id": "nope"}),
    )
    .await
    .expect_error(404, "not_found");
    app.patch(
        "/api/v1/reseller",
        &a.key,
        json!({"default_plan_id": starter_id}),
    )
    .await
    .expect(200);
    let plans = app.get("/api/v1/plans", &a.key).await.expect(200).body;
    assert_eq!(plans[0]["default"], true);

    // One site on the default plan; the second is refused and nothing is written.
    let ann = a.access_token(&app, "ann@a.test").await;
    app.post("/api/v1/sites", &ann.token, json!({"name": "ann-one"}))
        .await
        .expect(201);
    quota(
        app.post("/api/v1/sites", &ann.token, json!({"name": "ann-two"}))
            .await,
        "max_sites",
        1,
        1,
    );
    let sites = app.get("/api/v1/sites", &ann.token).await.expect(200).body;
    assert_eq!(sites.as_array().unwrap().len(), 1);

    // Concurrent creates by a new user: exactly one passes a limit of one.
    let bob = a.access_token(&app, "bob@a.test").await;
    let racers = (0..6).map(|i| {
        app.post(
            "/api/v1/sites",
            &bob.token,
            json!({"name": format!("bob-{i}")}),
        )
    });
    let replies = futures_util::future::join_all(racers).await;
    assert_eq!(replies.iter().filter(|r| r.status == 201).count(), 1);
    for r in replies.into_iter().filter(|r| r.status != 201) {
        r.expect_error(403, "quota_exceeded");
    }

    // A plan of the user's own replaces the default.
    let pro = app
        .post(
            "/api/v1/plans",
            &a.key,
            json!({"name": "Pro", "max_sites": 3}),
        )
        .await
        .expect(201)
        .body;
    let pro_id = pro["id"].as_str().unwrap();
    let user = app
        .patch(
            &format!("/api/v1/users/{}", ann.user_id),
            &a.key,
            json!({"plan_id": pro_id}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(user["plan_id"], pro_id);
    app.post("/api/v1/sites", &ann.token, json!({"name": "ann-two"}))
        .await
        .expect(201);

    // Domains, per user.
    let domain = |name: &str| json!({"domain": name, "email": "bob@a.test"});
    app.post("/api/v1/domains", &a.key, domain("bob-one.example.test"))
        .await
        .expect(201);
    quota(
        app.post("/api/v1/domains", &a.key, domain("bob-two.example.test"))
            .await,
        "max_domains",
        1,
        1,
    );

    // Another reseller's plans are not there for it.
    app.get(&format!("/api/v1/plans/{starter_id}"), &b.key)
        .await
        .expect_error(404, "not_found");
    let carl = b.access_token(&app, "carl@b.test").await;
    app.patch(
        &format!("/api/v1/users/{}", carl.user_id),
        &b.key,
        json!({"plan_id": starter_id}),
    )
    .await
    .expect_error(404, "not_found");
    app.patch(
        &format!("/api/v1/users/{}", ann.user_id),
        &b.key,
        json!({"plan_id": null}),
    )
    .await
    .expect_error(404, "not_found");

    // A deleted plan's users fall back to the default: none once the default is deleted too.
    app.delete(&format!("/api/v1/plans/{starter_id}"), &a.key)
        .await
        .expect(204);
    app.post("/api/v1/sites", &bob.token, json!({"name": "bob-free"}))
        .await
        .expect(201);
    let plans: Value = app.get("/api/v1/plans", &a.key).await.expect(200).body;
    assert_eq!(plans.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_operator_caps_a_resellers_users_and_plans() {
    let app = TestApp::spawn().await;
    let a = app.reseller("Capped A").await;
    let capped = app
        .patch(
            &format!("/api/v1/admin/resellers/{}", a.id),
            &app.operator,
            json!({"limits": {"max_users": 2, "max_sites": 1}}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(capped["limits"]["max_users"], 2);
    assert_eq!(capped["limits"]["max_sites"], 1);
    let shown = app
        .get(&format!("/api/v1/admin/resellers/{}", a.id), &app.operator)
        .await
        .expect(200)
        .body;
    assert_eq!(shown["limits"]["max_users"], 2);
    // A reseller cannot lift its own caps.
    app.patch(
        &format!("/api/v1/admin/resellers/{}", a.id),
        &a.key,
        json!({"limits": {}}),
    )
    .await
    .expect_error(403, "forbidden");

    let one = a.access_token(&app, "one@a.test").await;
    a.access_token(&app, "two@a.test").await;
    quota(
        app.post(
            "/api/v1/access_tokens",
            &a.key,
            json!({"user": {"email": "three@a.test"}}),
        )
        .await,
        "max_users",
        2,
        2,
    );
    // An existing user still gets tokens.
    a.access_token(&app, "one@a.test").await;
    // A plan more generous than the operator's cap does not lift it.
    let big = app
        .post(
            "/api/v1/plans",
            &a.key,
            json!({"name": "Big", "max_sites": 10}),
        )
        .await
        .expect(201)
        .body;
    app.patch(
        &format!("/api/v1/users/{}", one.user_id),
        &a.key,
        json!({"plan_id": big["id"]}),
    )
    .await
    .expect(200);
    app.post("/api/v1/sites", &one.token, json!({"name": "one-a"}))
        .await
        .expect(201);
    quota(
        app.post("/api/v1/sites", &one.token, json!({"name": "one-b"}))
            .await,
        "max_sites",
        1,
        1,
    );
}

#[tokio::test]
async fn a_plan_limits_form_submissions_per_month() {
    let app = TestApp::spawn().await;
    let a = app.reseller("Forms A").await;
    default_plan(
        &app,
        &a.key,
        json!({"name": "Tiny", "max_submissions_month": 1}),
    )
    .await;
    let ann = a.access_token(&app, "ann@a.test").await;
    let site = app
        .post("/api/v1/sites", &ann.token, json!({"name": "tiny-forms"}))
        .await
        .expect(201)
        .body;
    let page = br#"<html><body><form name="contact" data-netlify="true"><input name="email"></form></body></html>"#;
    crate::sites::zip_deploy(
        &app,
        &ann.token,
        site["id"].as_str().unwrap(),
        crate::sites::zip_of(&[("index.html", page)]),
    )
    .await
    .expect(200);
    let submit = |email: &'static str| {
        app.client
            .post(app.url("/"))
            .header("host", "tiny-forms.localhost")
            .form(&[("form-name", "contact"), ("email", email)])
            .send()
    };
    assert!(submit("one@x.test").await.unwrap().status().as_u16() < 400);
    let over = submit("two@x.test").await.unwrap();
    assert_eq!(over.status(), 403);
    assert!(over.text().await.unwrap().contains("this month"));
    let subs = app
        .get("/api/v1/submissions", &ann.token)
        .await
        .expect(200)
        .body;
    assert_eq!(
        subs.as_array().unwrap().len(),
        1,
        "the refused one is not stored"
    );
}

#[tokio::test]
async fn bandwidth_over_a_block_plan_shows_the_quota_page_and_tells_once() {
    let app =
        TestApp::spawn_with(&["--traffic-flush-interval", "1", "--allow-private-targets"]).await;
    let a = app.reseller("Bandwidth A").await;
    let hook = app
        .post(
            "/api/v1/webhooks",
            &a.key,
            json!({"url": "http://127.0.0.1:9/hook", "events": ["quota.warning", "quota.exceeded"]}),
        )
        .await
        .expect(201)
        .body;
    let plan = app
        .post(
            "/api/v1/plans",
            &a.key,
            json!({"name": "1 MB", "max_bandwidth_mb_month": 1, "overuse": "block"}),
        )
        .await
        .expect(201)
        .body;
    let generous = app
        .post(
            "/api/v1/plans",
            &a.key,
            json!({"name": "1 MB, notify", "max_bandwidth_mb_month": 1, "overuse": "notify"}),
        )
        .await
        .expect(201)
        .body;
    let fetch = |host: &'static str| {
        let app = &app;
        async move {
            let r = app
                .client
                .get(app.url("/big.bin"))
                .header("host", host)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap().len())
        }
    };
    let body = vec![7u8; 300_000];
    for (email, name, plan) in [
        ("blocked@a.test", "bw-blocked", &plan),
        ("notified@a.test", "bw-notified", &generous),
    ] {
        let user = a.access_token(&app, email).await;
        app.patch(
            &format!("/api/v1/users/{}", user.user_id),
            &a.key,
            json!({"plan_id": plan["id"]}),
        )
        .await
        .expect(200);
        let site = app
            .post("/api/v1/sites", &user.token, json!({"name": name}))
            .await
            .expect(201)
            .body;
        crate::sites::zip_deploy(
            &app,
            &user.token,
            site["id"].as_str().unwrap(),
            crate::sites::zip_of(&[("big.bin", &body)]),
        )
        .await
        .expect(200);
    }
    // 1.2 MB each: over 1 MB.
    for _ in 0..4 {
        assert_eq!(fetch("bw-blocked.localhost").await, (200, 300_000));
        assert_eq!(fetch("bw-notified.localhost").await, (200, 300_000));
    }
    // Within a flush interval or two, the block plan's site shows the quota page.
    let mut blocked = (0, 0);
    for _ in 0..50 {
        blocked = fetch("bw-blocked.localhost").await;
        if blocked.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(blocked.0, 503, "the quota page");
    assert_eq!(
        fetch("bw-notified.localhost").await,
        (200, 300_000),
        "notify keeps serving"
    );

    // Each user's warning and exceeded are told once, however many batches pass.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let hook_id = hook["id"].as_str().unwrap();
    let deliveries = app
        .get(&format!("/api/v1/webhooks/{hook_id}/deliveries"), &a.key)
        .await
        .expect(200)
        .body;
    let mut kinds: Vec<&str> = deliveries
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["event_type"].as_str().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "quota.exceeded",
            "quota.exceeded",
            "quota.warning",
            "quota.warning"
        ]
    );
    let exceeded = deliveries
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["event_type"] == "quota.exceeded")
        .unwrap();
    assert_eq!(
        exceeded["payload"]["data"]["limit"],
        "max_bandwidth_mb_month"
    );
    assert_eq!(exceeded["payload"]["data"]["max"], 1_000_000);

    // Raising the limit lets the site serve again after the next batch.
    app.patch(
        &format!("/api/v1/plans/{}", plan["id"].as_str().unwrap()),
        &a.key,
        json!({"max_bandwidth_mb_month": 100}),
    )
    .await
    .expect(200);
    let mut served = (0, 0);
    for _ in 0..50 {
        served = fetch("bw-blocked.localhost").await;
        if served.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(served, (200, 300_000));

    // Blocked again, then restarted: the block holds from the first request on, before any
    // traffic batch of the new process.
    app.patch(
        &format!("/api/v1/plans/{}", plan["id"].as_str().unwrap()),
        &a.key,
        json!({"max_bandwidth_mb_month": 1}),
    )
    .await
    .expect(200);
    let mut status = 0;
    for _ in 0..50 {
        status = fetch("bw-blocked.localhost").await.0;
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, 503);
    let app = app.restart().await;
    let r = app
        .client
        .get(app.url("/big.bin"))
        .header("host", "bw-blocked.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "a restart forgot the block");
}

/// The user's storage in bytes and each site's, from `GET /users/{id}/usage`.
pub(crate) async fn storage(app: &TestApp, key: &str, user_id: &str) -> (u64, Vec<(String, u64)>) {
    let rows = app
        .get(&format!("/api/v1/users/{user_id}/usage"), key)
        .await
        .expect(200)
        .body;
    let rows = rows.as_array().unwrap();
    let user = rows
        .first()
        .map_or(0, |r| r["user_storage_bytes"].as_u64().unwrap());
    for r in rows {
        assert_eq!(r["user_storage_bytes"], user, "one total per user");
    }
    let mut sites: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["site_name"].as_str().unwrap().to_string(),
                r["storage_bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    sites.sort();
    (user, sites)
}

#[tokio::test]
async fn storage_counts_each_distinct_file_once_and_a_plan_limits_it() {
    use crate::helpers::noise;
    use crate::sites::{zip_deploy, zip_of};
    let mut app = TestApp::spawn().await;
    let a = app.reseller("Storage A").await;
    default_plan(&app, &a.key, json!({"name": "Small", "max_storage_mb": 1})).await;
    let ann = a.access_token(&app, "ann@a.test").await;
    let site = |name: &'static str| app.post("/api/v1/sites", &ann.token, json!({"name": name}));
    for name in ["st-one", "st-two", "st-three", "st-four"] {
        site(name).await.expect(201);
    }
    let (big, other) = (noise(400_000, 1), noise(300_000, 2));
    let first = zip_deploy(&app, &ann.token, "st-one", zip_of(&[("a.bin", &big)]))
        .await
        .expect(200);
    let first = first.body["id"].as_str().unwrap().to_string();
    // The same content on a second site counts once for the user, and for each site.
    zip_deploy(
        &app,
        &ann.token,
        "st-two",
        zip_of(&[("a.bin", &big), ("copy/a.bin", &big), ("b.bin", &other)]),
    )
    .await
    .expect(200);
    let (user, sites) = storage(&app, &a.key, &ann.user_id).await;
    assert_eq!(user, 700_000);
    assert_eq!(
        sites,
        [
            ("st-four".into(), 0),
            ("st-one".into(), 400_000),
            ("st-three".into(), 0),
            ("st-two".into(), 700_000)
        ]
    );

    // 300,000 bytes are left: of two concurrent deploys of 200,000 each, one passes.
    let (c, d) = (noise(200_000, 3), noise(200_000, 4));
    let (r3, r4) = tokio::join!(
        zip_deploy(&app, &ann.token, "st-three", zip_of(&[("c.bin", &c)])),
        zip_deploy(&app, &ann.token, "st-four", zip_of(&[("d.bin", &d)])),
    );
    let (passed, refused) = if r3.status == 200 { (r3, r4) } else { (r4, r3) };
    passed.expect(200);
    quota(refused, "max_storage_mb", 1, 1);
    assert_eq!(storage(&app, &a.key, &ann.user_id).await.0, 900_000);

    // In the digest flow the bytes count when they arrive: an upload past the limit is
    // refused and not stored.
    let e = noise(200_000, 5);
    let sha = crate::sites::sha1(&e);
    let deploy = app
        .post(
            "/api/v1/sites/st-one/deploys",
            &ann.token,
            json!({"files": {"/e.bin": sha}}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(deploy["required"][0], sha.as_str());
    let r = app
        .client
        .put(app.url(&format!(
            "/api/v1/deploys/{}/files/e.bin",
            deploy["id"].as_str().unwrap()
        )))
        .bearer_auth(&ann.token)
        .header("content-type", "application/octet-stream")
        .body(e.clone())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("max_storage_mb"), "{text}");
    assert_eq!(storage(&app, &a.key, &ann.user_id).await.0, 900_000);

    // A canceled deploy stops counting: half uploaded, then canceled.
    let (g, h) = (noise(50_000, 6), noise(50_000, 7));
    let deploy = app
        .post(
            "/api/v1/sites/st-one/deploys",
            &ann.token,
            json!({"files": {"/g.bin": crate::sites::sha1(&g), "/h.bin": crate::sites::sha1(&h)}}),
        )
        .await
        .expect(200)
        .body;
    let id = deploy["id"].as_str().unwrap().to_string();
    assert_eq!(
        crate::sites::upload(&app, &ann.token, &id, "g.bin", &g).await,
        200
    );
    assert_eq!(storage(&app, &a.key, &ann.user_id).await.0, 950_000);
    app.post(
        &format!("/api/v1/deploys/{id}/cancel"),
        &ann.token,
        json!({}),
    )
    .await
    .expect(201);
    assert_eq!(storage(&app, &a.key, &ann.user_id).await.0, 900_000);

    // Deleting a site frees what no other deploy of the user names; the count survives a
    // restart.
    app.delete("/api/v1/sites/st-two", &ann.token)
        .await
        .expect(204);
    let expected = 400_000 + 200_000;
    assert_eq!(storage(&app, &a.key, &ann.user_id).await.0, expected);
    app.kill9();
    let app = app.restart().await;
    assert_eq!(storage(&app, &a.key, &ann.user_id).await.0, expected);

    // An old deploy can be deleted (`DELETE /deploys/{id}`), and what only it named stops
    // counting; the published one cannot.
    let k = noise(60_000, 8);
    let newer = zip_deploy(&app, &ann.token, "st-one", zip_of(&[("k.bin", &k)]))
        .await
        .expect(200);
    assert_eq!(
        storage(&app, &a.key, &ann.user_id).await.0,
        expected + 60_000
    );
    app.delete(
        &format!("/api/v1/deploys/{}", newer.body["id"].as_str().unwrap()),
        &ann.token,
    )
    .await
    .expect_error(400, "invalid_request");
    app.delete(&format!("/api/v1/deploys/{first}"), &ann.token)
        .await
        .expect(204);
    app.get(&format!("/api/v1/deploys/{first}"), &ann.token)
        .await
        .expect_error(404, "not_found");
    assert_eq!(
        storage(&app, &a.key, &ann.user_id).await.0,
        expected + 60_000 - 400_000
    );
    let page = crate::edge::get(&app, "st-one.localhost", "/k.bin").await;
    assert_eq!(page.status, 200, "the published deploy still serves");

    // Another reseller's user sees none of it.
    let b = app.reseller("Storage B").await;
    app.get(&format!("/api/v1/users/{}/usage", ann.user_id), &b.key)
        .await
        .expect_error(404, "not_found");
}

/// A data dir from before storage was counted (format 6) gets it counted on opening.
#[tokio::test]
async fn a_format_6_data_dir_gets_its_storage_counted() {
    if crate::helpers::on_postgres() {
        return; // it edits the embedded database's files: nothing of it runs on PostgreSQL
    }
    use crate::sites::publish_site;
    let mut app = TestApp::spawn().await;
    let a = app.reseller("Counted A").await;
    let ann = a.access_token(&app, "ann@a.test").await;
    publish_site(&app, &ann.token, "counted", &[("x.bin", &[7u8; 12_345])]).await;
    let before = storage(&app, &a.key, &ann.user_id).await;
    assert_eq!(before.0, 12_345);
    app.kill9();
    {
        let db = crate::helpers::open_embedded(&app.data_dir);
        db.drop_tree("storage_refs").unwrap();
        let counters = db.open_tree("counters").unwrap();
        for key in counters.scan_prefix("storage_").keys() {
            counters.remove(key.unwrap()).unwrap();
        }
        db.open_tree("meta")
            .unwrap()
            .insert("format", &6u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let app = app.restart().await;
    assert_eq!(storage(&app, &a.key, &ann.user_id).await, before);
}

/// Every file under the data dir's blobs (temp files included) and their bytes.
fn blob_bytes(app: &TestApp) -> (usize, u64) {
    fn walk(dir: &std::path::Path, out: &mut (usize, u64)) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                walk(&e.path(), out);
            } else {
                out.0 += 1;
                out.1 += meta.len();
            }
        }
    }
    let mut out = (0, 0);
    walk(&app.data_dir.join("blobs"), &mut out);
    out
}

/// Zip deploys refused for quota leave the disk and the records as they were: refused from the
/// zip's directory before anything is expanded when its files alone are over the plan, and
/// after expansion (before anything is stored) when what is new to the user is.
#[tokio::test]
async fn refused_zip_deploys_leave_no_bytes_or_records_behind() {
    use crate::helpers::noise;
    use crate::sites::{zip_deploy, zip_of};
    let app = TestApp::spawn().await;
    let a = app.reseller("Disk A").await;
    default_plan(&app, &a.key, json!({"name": "Small", "max_storage_mb": 1})).await;
    let ann = a.access_token(&app, "ann@a.test").await;
    app.post("/api/v1/sites", &ann.token, json!({"name": "disk"}))
        .await
        .expect(201);
    let first = noise(700_000, 1);
    zip_deploy(&app, &ann.token, "disk", zip_of(&[("a.bin", &first)]))
        .await
        .expect(200);
    let deploys = || app.get("/api/v1/sites/disk/deploys", &ann.token);
    let listed = deploys().await.expect(200).body.as_array().unwrap().len();
    let before = blob_bytes(&app);
    for i in 0..4u64 {
        // 3 MB of new files: refused from the directory.
        let big: Vec<Vec<u8>> = (0..3).map(|j| noise(1_000_000, 10 * i + j + 2)).collect();
        let files: Vec<(&str, &[u8])> =
            vec![("x.bin", &big[0]), ("y.bin", &big[1]), ("z.bin", &big[2])];
        quota(
            zip_deploy(&app, &ann.token, "disk", zip_of(&files)).await,
            "max_storage_mb",
            1,
            1,
        );
        // 0.5 MB new beside the 0.7 MB already counted: refused once expanded.
        let half = noise(500_000, 100 + i);
        let files: [(&str, &[u8]); 2] = [("a.bin", &first), ("b.bin", &half)];
        quota(
            zip_deploy(&app, &ann.token, "disk", zip_of(&files)).await,
            "max_storage_mb",
            1,
            1,
        );
    }
    assert_eq!(
        blob_bytes(&app),
        before,
        "refused deploys left files behind"
    );
    assert_eq!(
        deploys().await.expect(200).body.as_array().unwrap().len(),
        listed,
        "refused deploys left records behind"
    );
    // What fits still deploys, and what the user already has costs nothing.
    let files: [(&str, &[u8]); 2] = [("a.bin", &first), ("copy.bin", &first)];
    zip_deploy(&app, &ann.token, "disk", zip_of(&files))
        .await
        .expect(200);
}

/// Another tenant's content changes nothing of a deploy's answer or its storage: naming its
/// digest on a 1 MB plan is the same as naming a digest nobody has.
#[tokio::test]
async fn another_tenants_content_is_not_counted_or_told() {
    use crate::helpers::noise;
    use crate::sites::{sha1, zip_deploy, zip_of};
    let app = TestApp::spawn().await;
    let a = app.reseller("Oracle A").await;
    let b = app.reseller("Oracle B").await;
    let ann = a.access_token(&app, "ann@a.test").await;
    let big = noise(3_000_000, 42);
    app.post("/api/v1/sites", &ann.token, json!({"name": "holder"}))
        .await
        .expect(201);
    zip_deploy(&app, &ann.token, "holder", zip_of(&[("big.bin", &big)]))
        .await
        .expect(200);
    default_plan(&app, &b.key, json!({"name": "Tiny", "max_storage_mb": 1})).await;
    let bob = b.access_token(&app, "bob@b.test").await;
    app.post("/api/v1/sites", &bob.token, json!({"name": "prober"}))
        .await
        .expect(201);
    let absent = sha1(b"nobody has this");
    let mut answers = Vec::new();
    for digest in [sha1(&big), absent] {
        let r = app
            .post(
                "/api/v1/sites/prober/deploys",
                &bob.token,
                json!({"files": {"/f.bin": digest}}),
            )
            .await;
        let (status, required) = (r.status, r.body["required"].clone());
        assert_eq!(status, 200, "{}", r.text);
        assert_eq!(required, json!([digest]));
        let (user_bytes, _) = storage(&app, &b.key, &bob.user_id).await;
        answers.push((status, user_bytes));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].1, 0);
}

/// A deploy that never gets its files expires (`--deploy-expiry`), and the periodic sweep then
/// removes what it had uploaded (`--blob-gc-grace`): no path keeps bytes for good.
#[tokio::test]
async fn unfinished_deploys_expire_and_their_files_are_swept() {
    use crate::sites::{sha1, upload};
    let app = TestApp::spawn_with(&["--deploy-expiry", "1", "--blob-gc-grace", "1"]).await;
    let a = app.reseller("Expiry A").await;
    let ann = a.access_token(&app, "ann@a.test").await;
    app.post("/api/v1/sites", &ann.token, json!({"name": "waits"}))
        .await
        .expect(201);
    let (one, two) = (b"first file".as_slice(), b"second file".as_slice());
    let d = app
        .post(
            "/api/v1/sites/waits/deploys",
            &ann.token,
            json!({"files": {"/one.txt": sha1(one), "/two.txt": sha1(two)}}),
        )
        .await
        .expect(200);
    let id = d.body["id"].as_str().unwrap().to_string();
    assert_eq!(upload(&app, &ann.token, &id, "one.txt", one).await, 200);
    assert_eq!(blob_bytes(&app).0, 1);
    let mut state = Value::Null;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        state = app
            .get(&format!("/api/v1/deploys/{id}"), &ann.token)
            .await
            .expect(200)
            .body;
        if state["state"] == "error" && blob_bytes(&app).0 == 0 {
            break;
        }
    }
    assert_eq!(state["state"], "error", "{state}");
    assert!(
        state["error_message"].as_str().unwrap().contains("expired"),
        "{state}"
    );
    assert_eq!(blob_bytes(&app), (0, 0), "the uploaded file was not swept");
}
