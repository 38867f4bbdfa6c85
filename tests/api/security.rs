//! Every tenant is hostile: one test per attack a review reproduced against the release binary,
//! each doing the attack against the real server and checking the refusal and that nothing was
//! written. Timing-dependent checks assert generous bounds only.

use crate::edge::get as edge_get;
use crate::helpers::{noise, reply, Reply, TestApp};
use crate::sites::{publish_site, sha1, upload, zip_deploy, zip_of};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// A POST to the edge with this Host and form fields.
async fn form_post(app: &TestApp, host: &str, path: &str, fields: &[(&str, &str)]) -> Reply {
    let r = app
        .client
        .post(app.url(path))
        .header("host", host)
        .form(fields)
        .send()
        .await
        .expect("form post");
    reply(r).await
}

#[tokio::test]
async fn content_addressing_never_crosses_tenants() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let evil = app.reseller("Evil").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    let bob = acme.access_token(&app, "bob@acme.test").await;
    let eve = evil.access_token(&app, "eve@evil.test").await;
    let secret: &[u8] = b"<h1>acme's private launch page</h1>";
    publish_site(&app, &ann.token, "acme-private", &[("index.html", secret)]).await;
    let digest = sha1(secret);

    // Another reseller's user names the digest: it is required, never taken as present.
    app.post("/api/v1/sites", &eve.token, json!({"name": "stolen"}))
        .await
        .expect(201);
    let d = app
        .post(
            "/api/v1/sites/stolen/deploys",
            &eve.token,
            json!({"files": {"index.html": digest}}),
        )
        .await
        .expect(200);
    assert_eq!(d.body["required"], json!([digest]), "{}", d.text);
    assert_ne!(d.body["state"], "ready");
    let deploy_id = d.body["id"].as_str().unwrap();
    // Uploading something else under that path is refused; the site never serves the secret.
    assert_eq!(
        upload(&app, &eve.token, deploy_id, "index.html", b"guess").await,
        422
    );
    let page = edge_get(&app, "stolen.localhost", "/").await;
    assert!(!page.text.contains("private launch"), "{}", page.text);
    // Not even another user of the same reseller gets it for free...
    app.post("/api/v1/sites", &bob.token, json!({"name": "bobs"}))
        .await
        .expect(201);
    let d = app
        .post(
            "/api/v1/sites/bobs/deploys",
            &bob.token,
            json!({"files": {"index.html": digest}}),
        )
        .await
        .expect(200);
    assert_eq!(d.body["required"], json!([digest]));
    // ...while its owner redeploys it without uploading again.
    let d = app
        .post(
            "/api/v1/sites/acme-private/deploys",
            &ann.token,
            json!({"files": {"index.html": digest}}),
        )
        .await
        .expect(200);
    assert_eq!(d.body["required"], json!([]));
    assert_eq!(d.body["state"], "ready");
}

/// Sends a request head and the first byte of its body, then nothing (until dropped).
fn start_slow_post(addr: &str, path: &str, token: &str) -> std::net::TcpStream {
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn
}

#[tokio::test]
async fn a_slow_body_holds_up_nobody_and_gets_408() {
    let app = TestApp::spawn_with(&["--body-timeout", "10"]).await;
    let acme = app.reseller("Acme").await;
    let addr = app.http.trim_start_matches("http://").to_string();
    // Unauthenticated and authenticated trickling writers.
    let mut slow = start_slow_post(&addr, "/api/v1/access_tokens", &acme.key);
    let _anon = start_slow_post(&addr, "/api/v1/admin/resellers", "nope");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A backup (which waits for every gated write) and then a write go through meanwhile.
    let began = Instant::now();
    if !crate::helpers::on_postgres() {
        let backup = app
            .client
            .get(app.url("/api/v1/admin/backup"))
            .bearer_auth(&app.operator)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .expect("the backup is not held up");
        assert_eq!(backup.status().as_u16(), 200);
        backup.bytes().await.unwrap();
    }
    acme.access_token(&app, "quick@acme.test").await;
    // Held by the trickling clients, they would wait for their 10 s deadline.
    assert!(
        began.elapsed() < Duration::from_secs(8),
        "held up for {:?}",
        began.elapsed()
    );
    // The trickling client gets 408 and nothing it started is written.
    let answer = tokio::task::spawn_blocking(move || {
        slow.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut got = vec![0u8; 4096];
        let n = slow.read(&mut got).unwrap_or(0);
        String::from_utf8_lossy(&got[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("request_timeout"), "{answer:?}");
    let users = app.get("/api/v1/users", &acme.key).await.expect(200);
    assert_eq!(users.body.as_array().unwrap().len(), 1);
    // A JSON write labelled as a file upload is still an ordinary (gated, parsed) JSON write.
    let r = app
        .client
        .post(app.url("/api/v1/access_tokens"))
        .bearer_auth(&acme.key)
        .header("content-type", "application/octet-stream")
        .body(r#"{"user":{"email":"octet@acme.test"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
}

#[tokio::test]
async fn deploy_urls_cannot_be_hijacked() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let evil = app.reseller("Evil").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    let eve = evil.access_token(&app, "eve@evil.test").await;
    publish_site(
        &app,
        &ann.token,
        "victim",
        &[("index.html", b"<h1>v1</h1>")],
    )
    .await;
    let deploys = app
        .get("/api/v1/sites/victim/deploys", &ann.token)
        .await
        .expect(200);
    let deploy_id = deploys.body[0]["id"].as_str().unwrap().to_lowercase();
    let hijack = format!("{deploy_id}--victim");
    let r = app
        .post("/api/v1/sites", &eve.token, json!({"name": hijack}))
        .await
        .expect_error(400, "invalid_request");
    assert!(r.text.contains("--"), "{}", r.text);
    // Renaming into the form is refused too.
    app.post("/api/v1/sites", &eve.token, json!({"name": "innocent"}))
        .await
        .expect(201);
    app.patch(
        "/api/v1/sites/innocent",
        &eve.token,
        json!({"name": "x--victim"}),
    )
    .await
    .expect_error(400, "invalid_request");
    let page = edge_get(&app, &format!("{hijack}.localhost"), "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.text, "<h1>v1</h1>");
}

#[tokio::test]
async fn a_site_host_owns_every_path() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    publish_site(
        &app,
        &ann.token,
        "shop",
        &[
            ("index.html", b"home"),
            ("admin/index.html", b"<h1>the shop's own admin</h1>"),
            ("metrics.html", b"shop metrics page"),
        ],
    )
    .await;
    let host = "shop.localhost";
    assert_eq!(
        edge_get(&app, host, "/admin/").await.text,
        "<h1>the shop's own admin</h1>"
    );
    assert_eq!(
        edge_get(&app, host, "/metrics").await.text,
        "shop metrics page"
    );
    for path in [
        "/api/v1/users",
        "/api/v1/openapi.json",
        "/healthz",
        "/.well-known/acme-challenge/abc",
    ] {
        let r = edge_get(&app, host, path).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(
            r.header("content-type").unwrap().starts_with("text/html"),
            "{path} answered {r:?}"
        );
    }
    // The instance's own host still has the panel and the API.
    let panel = app.client.get(app.url("/admin/")).send().await.unwrap();
    assert!(panel.text().await.unwrap().contains("<html"));
    app.get("/api/v1/users", &acme.key).await.expect(200);

    // With --api-host, any other host that is not a site gets the edge's page.
    let app = TestApp::spawn_with(&["--api-host", "panel.example.test"]).await;
    let r = edge_get(&app, "client-domain.example.test", "/admin/").await;
    assert_eq!(r.status, 404);
    assert!(r.text.contains("No site here"), "{}", r.text);
    let r = edge_get(&app, "panel.example.test", "/admin/").await;
    assert_eq!(r.status, 200);
    // No tenant can put a site on a named API host, whatever preview domain and name it picks:
    // the API host's parent domain is the operator's, and even where the operator puts a
    // reseller there, the site name that would spell the API host is refused.
    let acme = app.reseller("Acme").await;
    app.patch(
        "/api/v1/reseller",
        &acme.key,
        json!({"preview_domain": "example.test"}),
    )
    .await
    .expect_error(400, "name_reserved");
    app.set_preview_domain(&acme, "example.test").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    let r = app
        .post("/api/v1/sites", &ann.token, json!({"name": "panel"}))
        .await
        .expect_error(400, "name_reserved");
    assert!(r.text.contains("panel.example.test"), "{}", r.text);
    publish_site(
        &app,
        &ann.token,
        "shop",
        &[("admin/index.html", b"<h1>phishing</h1>")],
    )
    .await;
    let r = app
        .patch("/api/v1/sites/shop", &ann.token, json!({"name": "panel"}))
        .await
        .expect_error(400, "name_reserved");
    assert!(r.text.contains("choose another name"), "{}", r.text);
    let r = edge_get(&app, "panel.example.test", "/admin/").await;
    assert_eq!(r.status, 200);
    assert!(!r.text.contains("phishing"), "{}", r.text);
    // Loopback addresses stay API hosts, for local tools.
    app.get("/api/v1/admin/resellers", &app.operator.clone())
        .await
        .expect(200);
}

#[tokio::test]
async fn keys_cannot_mint_wider_keys() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let create = |key: String, body: Value| {
        let app = &app;
        async move { app.post("/api/v1/keys", &key, body).await }
    };
    let manager = acme.key_with(&app, json!(["keys:manage"])).await;
    let r = create(
        manager.clone(),
        json!({"name": "root", "permissions": ["*"]}),
    )
    .await
    .expect_error(403, "forbidden");
    assert!(r.text.contains("*"), "{}", r.text);
    create(
        manager.clone(),
        json!({"name": "users", "permissions": ["users:write"]}),
    )
    .await
    .expect_error(403, "forbidden");
    create(
        manager.clone(),
        json!({"name": "same", "permissions": ["keys:manage"]}),
    )
    .await
    .expect(201);

    // Expiry no later than the creator's, IP allowlist no wider.
    let limited = app
        .post(
            "/api/v1/keys",
            &acme.key,
            json!({"name": "limited", "permissions": ["*"], "allowed_ips": ["127.0.0.0/8"],
                   "expires_at": "2099-01-01T00:00:00Z"}),
        )
        .await
        .expect(201)
        .body["key"]
        .as_str()
        .unwrap()
        .to_string();
    for body in [
        json!({"name": "forever", "allowed_ips": ["127.0.0.1/32"]}),
        json!({"name": "later", "allowed_ips": ["127.0.0.1/32"], "expires_at": "2100-01-01T00:00:00Z"}),
        json!({"name": "anywhere", "expires_at": "2098-01-01T00:00:00Z"}),
        json!({"name": "wider", "allowed_ips": ["0.0.0.0/0"], "expires_at": "2098-01-01T00:00:00Z"}),
    ] {
        create(limited.clone(), body)
            .await
            .expect_error(403, "forbidden");
    }
    create(
        limited.clone(),
        json!({"name": "narrower", "allowed_ips": ["127.0.0.1/32"], "expires_at": "2098-01-01T00:00:00Z"}),
    )
    .await
    .expect(201);
    // Nothing refused was written: the first key, manager, "same", limited, "narrower".
    let keys = app.get("/api/v1/keys", &acme.key).await.expect(200);
    assert_eq!(keys.body.as_array().unwrap().len(), 5, "{}", keys.text);

    // The reseller-wide allowlist is key management, not a mere setting.
    let settings = acme.key_with(&app, json!(["settings:write"])).await;
    app.patch(
        "/api/v1/reseller",
        &settings,
        json!({"allowed_ips": ["10.0.0.0/8"]}),
    )
    .await
    .expect_error(403, "forbidden");
    app.patch("/api/v1/reseller", &settings, json!({"name": "Acme 2"}))
        .await
        .expect(200);
    let me = app.get("/api/v1/reseller", &acme.key).await.expect(200);
    assert_eq!(me.body["allowed_ips"], json!([]));
}

#[tokio::test]
async fn the_password_gate_redirects_only_within_the_site() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    publish_site(&app, &ann.token, "locked", &[("index.html", b"secret")]).await;
    app.patch(
        "/api/v1/sites/locked",
        &ann.token,
        json!({"password": "pw"}),
    )
    .await
    .expect(200);
    for (path, location) in [
        ("//evil.example/x", "/evil.example/x"),
        ("/\\evil.example/", "/evil.example/"),
        ("/docs/?a=1", "/docs/?a=1"),
    ] {
        let r = app
            .client
            .post(format!("{}{path}", app.http))
            .header("host", "locked.localhost")
            .header("x-forwarded-proto", "https")
            .form(&[("password", "pw")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 303, "{path}");
        assert_eq!(r.headers()["location"], location, "{path}");
        // Plain HTTP from an untrusted peer: no Secure flag whatever the peer claims.
        let cookie = r.headers()["set-cookie"].to_str().unwrap();
        assert!(!cookie.contains("Secure"), "{cookie}");
    }
}

#[tokio::test]
async fn forwarded_headers_count_only_from_trusted_proxies() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    for email in ["a@acme.test", "b@acme.test"] {
        acme.access_token(&app, email).await;
    }
    let r = app
        .client
        .get(app.url("/api/v1/users?per_page=1"))
        .bearer_auth(&acme.key)
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https")
        .header("forwarded", "host=evil.example;proto=https")
        .send()
        .await
        .unwrap();
    let link = r.headers()["link"].to_str().unwrap().to_string();
    assert!(link.contains(&app.http), "{link}");
    assert!(!link.contains("evil"), "{link}");

    // A stored submission's site_url is the host the visitor used.
    let ann = acme.access_token(&app, "ann@acme.test").await;
    let form = b"<form name=\"contact\" netlify><input name=\"email\"></form>";
    publish_site(&app, &ann.token, "shop", &[("index.html", form)]).await;
    let r = app
        .client
        .post(app.url("/"))
        .header("host", "shop.localhost")
        .header("x-forwarded-host", "evil.example")
        .form(&[("form-name", "contact"), ("email", "x@y.test")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let subs = app
        .get("/api/v1/sites/shop/submissions", &ann.token)
        .await
        .expect(200);
    assert_eq!(subs.body[0]["site_url"], "http://shop.localhost");

    // From a trusted proxy the forwarded origin is used.
    let app = TestApp::spawn_with(&["--trusted-proxies", "127.0.0.1/32"]).await;
    let acme = app.reseller("Acme").await;
    let r = app
        .client
        .get(app.url("/api/v1/users"))
        .bearer_auth(&acme.key)
        .header("x-forwarded-host", "api.example.test")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let link = r.headers()["link"].to_str().unwrap().to_string();
    assert!(link.starts_with("<https://api.example.test/"), "{link}");
}

#[tokio::test]
async fn forms_are_rate_limited_capped_and_keep_only_their_fields() {
    let app =
        TestApp::spawn_with(&["--form-rate-ip", "3", "--max-submissions-per-form", "100"]).await;
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    let form = b"<form name=\"contact\" netlify><input name=\"email\"><textarea name=\"msg\"></textarea></form>";
    publish_site(&app, &ann.token, "shop", &[("index.html", form)]).await;
    let host = "shop.localhost";
    let fields = [
        ("form-name", "contact"),
        ("email", "a@b.test"),
        ("msg", "hi"),
        ("injected", &"x".repeat(10_000)),
    ];
    for _ in 0..3 {
        form_post(&app, host, "/", &fields).await.expect(200);
    }
    let limited = form_post(&app, host, "/", &fields).await.expect(429);
    assert!(limited.header("retry-after").is_some());
    let subs = app
        .get("/api/v1/sites/shop/submissions?per_page=2", &ann.token)
        .await
        .expect(200);
    assert_eq!(subs.header("x-total-count"), Some("3"));
    assert_eq!(subs.body.as_array().unwrap().len(), 2);
    let data = subs.body[0]["data"].as_object().unwrap();
    assert!(data.contains_key("email") && data.contains_key("msg"));
    assert!(!data.contains_key("injected"), "{data:?}");
    let last = app
        .get(
            "/api/v1/sites/shop/submissions?per_page=2&page=2",
            &ann.token,
        )
        .await
        .expect(200);
    assert_eq!(last.body.as_array().unwrap().len(), 1);

    // A full form says so and stores nothing more; deleting one makes room.
    let app =
        TestApp::spawn_with(&["--form-rate-ip", "0", "--max-submissions-per-form", "2"]).await;
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    publish_site(&app, &ann.token, "shop", &[("index.html", form)]).await;
    form_post(&app, host, "/", &fields).await.expect(200);
    form_post(&app, host, "/", &fields).await.expect(200);
    let full = form_post(&app, host, "/", &fields).await.expect(403);
    assert!(full.text.contains("full"), "{}", full.text);
    let subs = app
        .get("/api/v1/sites/shop/submissions", &ann.token)
        .await
        .expect(200);
    assert_eq!(subs.body.as_array().unwrap().len(), 2);
    let id = subs.body[0]["id"].as_str().unwrap();
    app.delete(&format!("/api/v1/submissions/{id}"), &ann.token)
        .await
        .expect(204);
    form_post(&app, host, "/", &fields).await.expect(200);
}

#[tokio::test]
async fn invented_methods_add_no_metric_series() {
    let app = TestApp::spawn().await;
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("X{i}").as_bytes()).unwrap();
        app.client
            .request(method, app.url(&format!("/random-{i}")))
            .send()
            .await
            .unwrap();
    }
    let text = app.metrics_text().await;
    assert!(text.contains("method=\"OTHER\""), "{text}");
    assert!(!text.contains("method=\"X1\""), "{text}");
    assert!(!text.contains("random-"), "{text}");
}

/// Peak resident memory of a process, in bytes (Linux).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test]
async fn zip_deploys_stream_to_disk_and_bombs_are_refused() {
    // 64 MiB that does not compress, in 16 entries: memory must not follow the archive. (Built
    // first: compressing it takes longer than the server keeps an idle connection open.)
    let entries: Vec<(String, Vec<u8>)> = (0..16)
        .map(|i| (format!("f{i}.bin"), noise(4 << 20, i + 1)))
        .collect();
    let files: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect();
    let zip = zip_of(&files);
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    app.post("/api/v1/sites", &ann.token, json!({"name": "big"}))
        .await
        .expect(201);
    let before = peak_rss(app.pid());
    zip_deploy(&app, &ann.token, "big", zip).await.expect(200);
    let grew = peak_rss(app.pid()).saturating_sub(before);
    assert!(
        grew < 40 << 20,
        "a 64 MiB zip deploy raised peak RSS by {} MiB",
        grew >> 20
    );
    let served = app
        .client
        .get(app.url("/f3.bin"))
        .header("host", "big.localhost")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(served.as_ref(), entries[3].1.as_slice());

    // Entries of exactly 1 MiB of zeros expand far past the ratio: refused, nothing published.
    let zeros = vec![0u8; 1 << 20];
    let bomb: Vec<(String, &[u8])> = (0..8).map(|i| (format!("z{i}"), &zeros[..])).collect();
    let bomb: Vec<(&str, &[u8])> = bomb.iter().map(|(p, d)| (p.as_str(), *d)).collect();
    zip_deploy(&app, &ann.token, "big", zip_of(&bomb))
        .await
        .expect_error(413, "payload_too_large");
    let site = app.get("/api/v1/sites/big", &ann.token).await.expect(200);
    let deploys = app
        .get("/api/v1/sites/big/deploys", &ann.token)
        .await
        .expect(200);
    assert_eq!(deploys.body.as_array().unwrap().len(), 1);
    assert_eq!(site.body["published_deploy"]["id"], deploys.body[0]["id"]);
}

#[tokio::test]
async fn rules_are_capped_at_deploy_and_cheap_to_match() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    app.post("/api/v1/sites", &ann.token, json!({"name": "rules"}))
        .await
        .expect(201);
    let too_many: String = (0..10_001)
        .map(|i| format!("/old-{i} /new-{i}\n"))
        .collect();
    let r = zip_deploy(
        &app,
        &ann.token,
        "rules",
        zip_of(&[("index.html", b"x"), ("_redirects", too_many.as_bytes())]),
    )
    .await
    .expect_error(400, "rules_too_large");
    assert!(r.text.contains("10000"), "{}", r.text);
    // Through the digest flow the upload of the rules file is refused.
    let d = app
        .post(
            "/api/v1/sites/rules/deploys",
            &ann.token,
            json!({"files": {"_redirects": sha1(too_many.as_bytes())}}),
        )
        .await
        .expect(200);
    let id = d.body["id"].as_str().unwrap();
    assert_eq!(
        upload(&app, &ann.token, id, "_redirects", too_many.as_bytes()).await,
        400
    );
    // The same content named under another path too: uploaded under that path, it is still
    // checked as the rules file, since it stands for both.
    let digest = sha1(too_many.as_bytes());
    let d = app
        .post(
            "/api/v1/sites/rules/deploys",
            &ann.token,
            json!({"files": {"_redirects": digest, "notes.txt": digest}}),
        )
        .await
        .expect(200);
    let id = d.body["id"].as_str().unwrap();
    assert_eq!(
        upload(&app, &ann.token, id, "notes.txt", too_many.as_bytes()).await,
        400
    );
    let d = app
        .get(&format!("/api/v1/deploys/{id}"), &ann.token)
        .await
        .expect(200);
    assert_ne!(d.body["state"], "ready");
    // At the limit it deploys, and the last rule matches.
    let at_limit: String = (0..10_000)
        .map(|i| format!("/old-{i} /new-{i}\n"))
        .collect();
    zip_deploy(
        &app,
        &ann.token,
        "rules",
        zip_of(&[("index.html", b"x"), ("_redirects", at_limit.as_bytes())]),
    )
    .await
    .expect(200);
    let r = edge_get(&app, "rules.localhost", "/old-9999").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/new-9999"));
}

#[tokio::test]
async fn pending_domains_are_capped_and_a_failed_one_frees_its_name() {
    // A DNS server with no record for these names: every check misses at once (a server that
    // never answers would make each check wait for its timeouts, longer than the deadline), so
    // domains fail at the deadline.
    let dns = crate::pebble::ChallTestSrv::start();
    let app = TestApp::spawn_with(&[
        "--max-pending-domains",
        "2",
        "--dns-server",
        &dns.dns_server(),
        "--verify-interval",
        "1",
        "--verify-deadline",
        "1",
    ])
    .await;
    let acme = app.reseller("Acme").await;
    let other = app.reseller("Other").await;
    let typo = app
        .post(
            "/api/v1/domains",
            &acme.key,
            json!({"domain": "typo.example.test", "email": "a@acme.test"}),
        )
        .await
        .expect(201);
    app.post(
        "/api/v1/domains",
        &acme.key,
        json!({"domain": "two.example.test", "email": "a@acme.test"}),
    )
    .await
    .expect(201);
    app.post(
        "/api/v1/domains",
        &acme.key,
        json!({"domain": "three.example.test", "email": "new@acme.test"}),
    )
    .await
    .expect_error(400, "pending_domain_limit");
    // Nothing was written for the refused call: no new user.
    let users = app.get("/api/v1/users", &acme.key).await.expect(200);
    assert_eq!(users.body.as_array().unwrap().len(), 1);
    // Once failed, the name is free for whoever really owns it.
    let path = format!("/api/v1/domains/{}", typo.body["id"].as_str().unwrap());
    let began = Instant::now();
    loop {
        let d = app.get(&path, &acme.key).await.expect(200);
        if d.body["verification_status"] == "failed" {
            break;
        }
        assert!(began.elapsed() < Duration::from_secs(30), "{}", d.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.post(
        "/api/v1/domains",
        &other.key,
        json!({"domain": "typo.example.test", "email": "o@other.test"}),
    )
    .await
    .expect(201);
    // The failed claim cannot take it back, and deleting it leaves the new owner's name alone.
    app.post(&format!("{path}/verify"), &acme.key, json!({}))
        .await
        .expect(200);
    app.delete(&path, &acme.key).await.expect(204);
    app.post(
        "/api/v1/domains",
        &acme.key,
        json!({"domain": "typo.example.test", "email": "a@acme.test"}),
    )
    .await
    .expect_error(400, "domain_taken");
}

#[tokio::test]
async fn a_valid_credential_is_served_while_its_address_is_throttled() {
    let app = TestApp::spawn_with(&["--auth-failures-per-minute", "3"]).await;
    let acme = app.reseller("Acme").await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = app
            .get("/api/v1/users", "sk_org_wrongwrongwrongwrongwrongwrong")
            .await;
        statuses.push(r.status.as_u16());
    }
    assert_eq!(&statuses[..3], [401, 401, 401]);
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    // The same address with valid credentials: served.
    app.get("/api/v1/users", &acme.key).await.expect(200);
    app.get("/api/v1/admin/resellers", &app.operator.clone())
        .await
        .expect(200);
}
