//! Several nodes on one PostgreSQL database and one S3 bucket (the PostgreSQL run only; on sled
//! a data dir has one server). Two real servers, each with its own data dir: a write through
//! one is seen by the other's API and edge, a site deployed through one is served by the other
//! from the bucket, a certificate ordered through one is validated by the CA on the other's
//! HTTP port and served by SNI from it, the operator token works on both, and when the leader
//! is killed with kill -9 the other takes over the background work, with no acknowledged write
//! lost.

use crate::blob_store::S3;
use crate::edge;
use crate::helpers::{all_emails, database_for, TestApp, TokenLoad};
use crate::pebble::{ChallTestSrv, Pebble};
use crate::sites::publish_site;
use crate::webhooks::{endpoint, Receiver};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// A node on the cluster's database and bucket, with `extra` flags.
fn node(dir: &Path, url: &str, blob_store: &str, extra: &[&str]) -> TestApp {
    let mut args = vec![
        "--database-url",
        url,
        "--blob-store",
        blob_store,
        "--blob-gc-grace",
        "0",
    ];
    args.extend_from_slice(extra);
    TestApp::spawn_in(dir, &args)
}

/// Asks until `check` holds, for at most 2 s; returns how many asks it took. Another node
/// hears of a change by a notice the writer sends before it answers, so in practice the first
/// ask already sees it; the bound keeps a loaded test machine from failing on scheduling.
async fn asks_until<F, Fut>(what: &str, mut check: F) -> usize
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let began = Instant::now();
    for asks in 1.. {
        if check().await {
            return asks;
        }
        assert!(
            began.elapsed() < Duration::from_secs(2),
            "{what}: not seen after {asks} asks"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unreachable!()
}

/// True if `/metrics` says the node leads the cluster.
async fn leads(app: &TestApp) -> bool {
    app.metrics_text()
        .await
        .lines()
        .any(|l| l == "resellerd_cluster_leader 1")
}

#[tokio::test]
async fn two_nodes_share_records_files_caches_and_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(url) = database_for(&tmp.path().join("a")) else {
        return; // the sled run: one server per data dir
    };
    let s3 = S3::start("cluster").await;
    let blob_store = format!("s3://cluster?endpoint={}&region=us-east-1", s3.url);
    let dns = ChallTestSrv::start();
    let mut pebble = Pebble::prepare();
    let (server, directory) = (dns.dns_server(), pebble.directory());
    let ca = pebble.ca_pem.to_string_lossy().to_string();
    let acme_args = [
        "--dns-server",
        &server,
        "--acme-directory",
        &directory,
        "--acme-ca-bundle",
        &ca,
    ];
    let mut args = acme_args.to_vec();
    args.push("--allow-private-targets");
    let a = node(&tmp.path().join("a"), &url, &blob_store, &args);
    let mut b = node(&tmp.path().join("b"), &url, &blob_store, &args);
    assert!(leads(&a).await, "the first node leads");

    // The second node took the cluster's operator token; its own, never valid, is gone.
    assert!(!b.data_dir.join("operator-token").exists());
    b.get("/api/v1/admin/resellers", &a.operator)
        .await
        .expect(200);
    b.operator = a.operator.clone();
    assert!(!leads(&b).await, "one leader");

    // The CA validates HTTP-01 on node B; the order goes through node A.
    pebble.start(b.http_port(), &dns);

    let acme = a.reseller("Acme").await;
    b.get("/api/v1/reseller", &acme.key).await.expect(200);

    // A webhook endpoint made through A hears of a user made through B: B writes the event
    // because it heard of the subscription, and A, the leader, delivers it.
    let receiver = Receiver::start(&[200]).await;
    endpoint(&a, &acme.key, &receiver.url, json!(["user.created"])).await;
    b.post(
        "/api/v1/access_tokens",
        &acme.key,
        json!({"user": {"email": "hooked@shop.test"}}),
    )
    .await
    .expect(201);
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].json()["type"], "user.created");
    assert_eq!(got[0].json()["data"]["email"], "hooked@shop.test");

    let ann = acme.access_token(&a, "ann@shop.test").await;
    publish_site(
        &a,
        &ann.token,
        "shop",
        &[("index.html", b"<h1>secure shop</h1>")],
    )
    .await;
    // B serves what A deployed: the records from the database, the files from the bucket.
    let page = edge::get(&b, "shop.localhost", "/").await.expect(200);
    assert!(page.text.contains("secure shop"));

    // A domain registered through B is verified through A.
    let d = b
        .post(
            "/api/v1/domains",
            &acme.key,
            json!({"domain": "shop.example.test", "email": "ann@shop.test", "site_id": "shop"}),
        )
        .await
        .expect(201);
    let domain_id = d.body["id"].as_str().unwrap().to_string();
    dns.set_txt(
        "_resellerd.shop.example.test",
        d.body["verification"]["value"].as_str().unwrap(),
    )
    .await;
    let verified = a
        .post(
            &format!("/api/v1/domains/{domain_id}/verify"),
            &acme.key,
            json!({}),
        )
        .await;
    assert_eq!(verified.body["verification_status"], "verified");

    // A certificate ordered through A (the CA asks B for the challenge) is served by B.
    let pm = a
        .post(
            "/api/v1/payment_methods",
            &acme.key,
            json!({"label": "Card", "type": "card", "reference": "4242"}),
        )
        .await
        .expect(201);
    let issued = a
        .post(
            "/api/v1/sites/shop/ssl",
            &acme.key,
            json!({"payment_method_id": pm.body["id"]}),
        )
        .await
        .expect(200);
    assert_eq!(issued.body["state"], "issued", "{}", issued.text);
    let root = pebble.issuing_root().await;
    let trusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).unwrap())
        .resolve("shop.example.test", ([127, 0, 0, 1], b.https_port).into())
        .build()
        .unwrap();
    let url_b = format!("https://shop.example.test:{}/", b.https_port);
    let asks = asks_until("the certificate on B", || async {
        match trusting.get(&url_b).send().await {
            Ok(r) => r.status() == 200 && r.text().await.unwrap().contains("secure shop"),
            Err(_) => false,
        }
    })
    .await;
    println!("B served the certificate A ordered after {asks} ask(s)");

    // B's caches hold ann's token and the site's host; a change through A drops both.
    b.get("/api/v1/sites", &ann.token).await.expect(200);
    edge::get(&b, "shop.localhost", "/").await.expect(200);
    a.delete(&format!("/api/v1/users/{}", ann.user_id), &acme.key)
        .await
        .expect(204);
    let asks = asks_until("the revoked token on B", || async {
        b.get("/api/v1/sites", &ann.token).await.status == 401
    })
    .await;
    println!("B refused the deleted user's token after {asks} ask(s)");
    let asks = asks_until("the deleted site on B", || async {
        edge::get(&b, "shop.localhost", "/").await.status == 404
    })
    .await;
    println!("B stopped serving the deleted site after {asks} ask(s)");

    // A key made through B works on A, and deleted through B stops working on A.
    let k = b
        .post("/api/v1/keys", &acme.key, json!({"name": "crm"}))
        .await
        .expect(201);
    let (kid, secret) = (
        k.body["id"].as_str().unwrap().to_string(),
        k.body["key"].as_str().unwrap().to_string(),
    );
    a.get("/api/v1/reseller", &secret).await.expect(200);
    b.delete(&format!("/api/v1/keys/{kid}"), &acme.key)
        .await
        .expect(204);
    asks_until("the deleted key on A", || async {
        a.get("/api/v1/reseller", &secret).await.status == 401
    })
    .await;

    // The operator token rotated in A's data dir works on both nodes, the old one on neither;
    // rotated with --database-url, at once on every node.
    let rotate = |dir: &Path, url: Option<&str>| {
        let mut cmd = std::process::Command::new(crate::helpers::binary());
        cmd.args(["operator-token", "--data-dir"]).arg(dir);
        if let Some(url) = url {
            cmd.args(["--database-url", url]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let old = a.operator.clone();
    let new = rotate(&a.data_dir, None);
    a.get("/api/v1/admin/resellers", &new).await.expect(200);
    b.get("/api/v1/admin/resellers", &new).await.expect(200);
    b.get("/api/v1/admin/resellers", &old).await.expect(401);
    let newest = rotate(&b.data_dir, Some(&url));
    a.get("/api/v1/admin/resellers", &newest).await.expect(200);
    a.get("/api/v1/admin/resellers", &new).await.expect(401);
}

#[tokio::test]
async fn when_the_leader_is_killed_another_node_takes_over_and_nothing_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(url) = database_for(&tmp.path().join("a")) else {
        return; // the sled run
    };
    let s3 = S3::start("leader").await;
    let blob_store = format!("s3://leader?endpoint={}&region=us-east-1", s3.url);
    let dns = ChallTestSrv::start();
    let server = dns.dns_server();
    let args = ["--dns-server", &server, "--verify-interval", "1"];
    let mut a = node(&tmp.path().join("a"), &url, &blob_store, &args);
    let mut b = node(&tmp.path().join("b"), &url, &blob_store, &args);
    b.operator = a.operator.clone();
    assert!(leads(&a).await && !leads(&b).await);

    let acme = a.reseller("Acme").await;
    // Writes through both nodes while the leader dies.
    let (load_a, load_b) = (
        TokenLoad::start(&a, &acme.key, 4),
        TokenLoad::start(&b, &acme.key, 4),
    );
    load_a.until_acked(50).await;
    load_b.until_acked(50).await;
    // A domain is pending; its TXT record appears only once the leader is gone, so only the
    // new leader's background checker can verify it.
    let d = b
        .post(
            "/api/v1/domains",
            &acme.key,
            json!({"domain": "leader.example.test", "email": "ops@acme.test"}),
        )
        .await
        .expect(201);
    let domain_id = d.body["id"].as_str().unwrap().to_string();
    a.kill9();
    let killed = Instant::now();
    dns.set_txt(
        "_resellerd.leader.example.test",
        d.body["verification"]["value"].as_str().unwrap(),
    )
    .await;
    while !leads(&b).await {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no node took the lead within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("B took the lead {:?} after the kill", killed.elapsed());
    loop {
        let r = b
            .get(&format!("/api/v1/domains/{domain_id}"), &acme.key)
            .await
            .expect(200);
        if r.body["verification_status"] == "verified" {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "the new leader did not verify the domain: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut acked = load_a.stop().await;
    acked.extend(load_b.stop().await);
    let stored = all_emails(&b, &acme.key).await;
    let lost: Vec<_> = acked
        .iter()
        .filter(|(email, _)| !stored.contains(email))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost",
        lost.len(),
        acked.len()
    );
    // Every acknowledged token works on the surviving node.
    for (_, token) in acked.iter().step_by(7) {
        b.get("/api/v1/sites", token).await.expect(200);
    }
}

/// Limits checked by count hold when the calls race on two nodes: the 6-key limit (checked in
/// a SERIALIZABLE transaction), a plan's site limit and the pending-domain limit (counted under
/// an advisory lock), and a site name's uniqueness.
#[tokio::test]
async fn limits_hold_when_calls_race_on_two_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(url) = database_for(&tmp.path().join("a")) else {
        return; // the sled run
    };
    let s3 = S3::start("limits").await;
    let blob_store = format!("s3://limits?endpoint={}&region=us-east-1", s3.url);
    let pending = ["--max-pending-domains", "4"];
    let a = node(&tmp.path().join("a"), &url, &blob_store, &pending);
    let b = node(&tmp.path().join("b"), &url, &blob_store, &pending);
    let acme = a.reseller("Acme").await;
    let on = |i: usize| if i.is_multiple_of(2) { &a } else { &b };
    let statuses = |replies: Vec<crate::helpers::Reply>| {
        let mut s: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
        s.sort();
        s
    };

    // Five more keys fit beside the first, whichever node each call reaches.
    let keys = futures_util::future::join_all(
        (0..12).map(|i| on(i).post("/api/v1/keys", &acme.key, json!({"name": format!("k{i}")}))),
    )
    .await;
    let created = statuses(keys).iter().filter(|s| **s == 201).count();
    assert_eq!(created, 5, "the 6-key limit across nodes");

    // A plan of 3 sites.
    let plan = a
        .post(
            "/api/v1/plans",
            &acme.key,
            json!({"name": "Three", "max_sites": 3}),
        )
        .await
        .expect(201);
    a.patch(
        "/api/v1/reseller",
        &acme.key,
        json!({"default_plan_id": plan.body["id"]}),
    )
    .await
    .expect(200);
    let ann = acme.access_token(&a, "ann@limits.test").await;
    let sites = futures_util::future::join_all((0..10).map(|i| {
        on(i).post(
            "/api/v1/sites",
            &ann.token,
            json!({"name": format!("race-{i}")}),
        )
    }))
    .await;
    let created = statuses(sites).iter().filter(|s| **s == 201).count();
    assert_eq!(created, 3, "the plan's site limit across nodes");

    // One name, asked for on both nodes at once: one site gets it.
    let bob = acme.access_token(&b, "bob@limits.test").await;
    let same = futures_util::future::join_all(
        (0..6).map(|i| on(i).post("/api/v1/sites", &bob.token, json!({"name": "only-one"}))),
    )
    .await;
    assert_eq!(
        statuses(same).iter().filter(|s| **s == 201).count(),
        1,
        "a site name across nodes"
    );

    // At most 4 pending domains, however the registrations are spread.
    let domains = futures_util::future::join_all((0..10).map(|i| {
        on(i).post(
            "/api/v1/domains",
            &acme.key,
            json!({"domain": format!("d{i}.limits.test"), "email": "ops@limits.test"}),
        )
    }))
    .await;
    let created = statuses(domains).iter().filter(|s| **s == 201).count();
    assert_eq!(created, 4, "the pending-domain limit across nodes");
}

/// The scale-out recipe's balancer (packaging/haproxy.cfg, run by Debian's haproxy with the
/// nodes' loopback ports in place of the compose names) in front of two nodes: API calls and
/// site requests over HTTP reach both nodes, with the client's address passed on through the
/// trusted proxy; HTTPS is passed through, so the node does TLS for the site's name.
#[tokio::test]
async fn the_recipes_balancer_spreads_both_protocols_over_both_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(url) = database_for(&tmp.path().join("a")) else {
        return; // the sled run
    };
    let haproxy = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("haproxy (Debian package haproxy; ./scripts/test installs it)");
    let s3 = S3::start("balanced").await;
    let blob_store = format!("s3://balanced?endpoint={}&region=us-east-1", s3.url);
    let trusted = ["--trusted-proxies", "127.0.0.1/32"];
    let a = node(&tmp.path().join("a"), &url, &blob_store, &trusted);
    let mut b = node(&tmp.path().join("b"), &url, &blob_store, &trusted);
    b.operator = a.operator.clone();

    let (http, https) = (crate::pebble::free_port(), crate::pebble::free_port());
    let recipe = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/haproxy.cfg"
    ))
    .unwrap();
    let config: String = recipe
        .lines()
        .map(|line| {
            let mut line = line
                .replace("bind :80", &format!("bind 127.0.0.1:{http}"))
                .replace("bind :443", &format!("bind 127.0.0.1:{https}"));
            for (name, app) in [("node1", &a), ("node2", &b)] {
                if line.contains(name) {
                    line = line
                        .replace(
                            &format!("{name}:8080"),
                            &format!("127.0.0.1:{}", app.http_port()),
                        )
                        .replace(
                            &format!("{name}:8443"),
                            &format!("127.0.0.1:{}", app.https_port),
                        )
                        .replace("port 8080", &format!("port {}", app.http_port()));
                }
            }
            line + "\n"
        })
        .collect();
    let config_path = tmp.path().join("haproxy.cfg");
    std::fs::write(&config_path, config).unwrap();
    let mut balancer = std::process::Command::new(haproxy)
        .arg("-db")
        .arg("-f")
        .arg(&config_path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start haproxy");
    let front = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::new();
    let began = Instant::now();
    while client.get(format!("{front}/healthz")).send().await.is_err() {
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "haproxy did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The API through the balancer, from a client the proxy names in X-Forwarded-For.
    let acme = a.reseller("Acme").await;
    let ann = acme.access_token(&a, "ann@balanced.test").await;
    publish_site(
        &a,
        &ann.token,
        "balanced",
        &[("index.html", b"<h1>either node</h1>")],
    )
    .await;
    for i in 0..6 {
        let r = client
            .post(format!("{front}/api/v1/access_tokens"))
            .bearer_auth(&acme.key)
            .header("x-forwarded-for", "203.0.113.9")
            .json(&json!({"user": {"email": format!("lb{i}@balanced.test")}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let page = client
            .get(format!("{front}/"))
            .header("host", "balanced.localhost")
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("either node"));
    }
    let audit = a.get("/api/v1/audit", &acme.key).await.expect(200);
    assert_eq!(audit.body[0]["ip"], "203.0.113.9", "{}", audit.text);
    for node in [&a, &b] {
        let metrics = node.metrics_text().await;
        assert!(
            metrics.contains("route=\"/api/v1/access_tokens\",method=\"POST\",status=\"201\""),
            "a node got no call through the balancer"
        );
    }

    // HTTPS is passed through: the node answers the site's name with its own TLS.
    let tls = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve("balanced.localhost", ([127, 0, 0, 1], https).into())
        .build()
        .unwrap();
    for _ in 0..4 {
        let page = tls
            .get(format!("https://balanced.localhost:{https}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("either node"));
    }
    let _ = balancer.kill();
    let _ = balancer.wait();
}
