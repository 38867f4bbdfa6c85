//! Proxy rewrites: a `_redirects` 200 rule to a proxy profile's origin (a real HTTP server on
//! loopback) streams 10 MiB both ways with the profile's secret header, strips hop-by-hop
//! headers, follows no redirect, answers 504 and 502 on a slow or absent origin, and counts the
//! bytes toward usage; a rule to any other origin, or to the origin of another reseller's
//! profile, still redirects.

use crate::helpers::{noise, TestApp};
use crate::sites::{sha1, zip_deploy, zip_of};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

const BIG: usize = 10 << 20;

/// The origin: `POST /upload` answers what it received (length, SHA-1, headers), `GET /big`
/// sends 10 MiB with a length, `GET /chunked` 1 MiB without one, `GET /slow` answers after 3 s,
/// `GET /moved` is a redirect, `GET /query` echoes its query string.
fn start_origin() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            actix_web::HttpServer::new(|| {
                actix_web::App::new()
                    .route("/upload", web::post().to(upload))
                    .route(
                        "/big",
                        web::get().to(|| async { HttpResponse::Ok().body(noise(BIG, 7)) }),
                    )
                    .route(
                        "/big",
                        web::head().to(|| async { HttpResponse::Ok().body(noise(BIG, 7)) }),
                    )
                    .route(
                        "/chunked",
                        web::get().to(|| async {
                            let chunks = (0..16).map(|i| {
                                Ok::<_, std::io::Error>(web::Bytes::from(noise(64 << 10, 100 + i)))
                            });
                            HttpResponse::Ok().streaming(futures_util::stream::iter(chunks))
                        }),
                    )
                    .route(
                        "/slow",
                        web::get().to(|| async {
                            actix_web::rt::time::sleep(Duration::from_secs(3)).await;
                            HttpResponse::Ok().body("late")
                        }),
                    )
                    .route(
                        "/moved",
                        web::get().to(|| async {
                            HttpResponse::Found()
                                .insert_header(("location", "http://127.0.0.1:1/elsewhere"))
                                .finish()
                        }),
                    )
                    .route(
                        "/query",
                        web::get().to(|req: HttpRequest| async move {
                            HttpResponse::Ok().body(req.query_string().to_string())
                        }),
                    )
            })
            .listen(listener)
            .unwrap()
            .run()
            .await
            .unwrap();
        });
    });
    port
}

async fn upload(req: HttpRequest, mut body: web::Payload) -> HttpResponse {
    let mut data = Vec::new();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => data.extend_from_slice(&chunk),
            // The edge cut a body over its limit.
            Err(_) => return HttpResponse::BadRequest().finish(),
        }
    }
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
        .collect();
    HttpResponse::Ok().json(json!({"len": data.len(), "sha": sha1(&data), "headers": headers}))
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_200_rule_to_a_profile_origin_is_proxied_and_others_redirect() {
    let port = start_origin();
    let closed = closed_port();
    let app = TestApp::spawn_with(&[
        "--allow-private-targets",
        "--traffic-flush-interval",
        "1",
        "--max-upload",
        &(12u64 << 20).to_string(),
    ])
    .await;
    let a = app.reseller("Proxy A").await;
    let b = app.reseller("Proxy B").await;
    let origin = format!("http://127.0.0.1:{port}");
    let profile = app
        .post(
            "/api/v1/proxy_profiles",
            &a.key,
            json!({"name": "Backend", "origin": format!("{origin}/"), "headers": {"X-Api-Key": "sekrit-value"}, "timeout_ms": 1000}),
        )
        .await
        .expect(201);
    assert_eq!(profile.body["origin"], origin, "normalised");
    assert_eq!(profile.body["headers"], json!(["x-api-key"]));
    assert!(!profile.text.contains("sekrit-value"));
    let listed = app.get("/api/v1/proxy_profiles", &a.key).await.expect(200);
    assert!(!listed.text.contains("sekrit-value"), "{}", listed.text);
    app.post(
        "/api/v1/proxy_profiles",
        &a.key,
        json!({"name": "Twice", "origin": origin}),
    )
    .await
    .expect_error(400, "proxy_origin_taken");
    app.post(
        "/api/v1/proxy_profiles",
        &a.key,
        json!({"name": "Dead", "origin": format!("http://127.0.0.1:{closed}")}),
    )
    .await
    .expect(201);
    // Moving a profile to another origin needs its headers again: the stored values never go
    // to a host they were not given for.
    let movable = app
        .post(
            "/api/v1/proxy_profiles",
            &a.key,
            json!({"name": "Movable", "origin": "http://127.0.0.1:7", "headers": {"X-Key": "kept-secret"}}),
        )
        .await
        .expect(201);
    let path = format!(
        "/api/v1/proxy_profiles/{}",
        movable.body["id"].as_str().unwrap()
    );
    app.patch(&path, &a.key, json!({"origin": "http://127.0.0.1:8"}))
        .await
        .expect_error(400, "invalid_request");
    app.patch(&path, &a.key, json!({"timeout_ms": 2000}))
        .await
        .expect(200);
    app.patch(
        &path,
        &a.key,
        json!({"origin": "http://127.0.0.1:8", "headers": {"X-Key": "new"}}),
    )
    .await
    .expect(200);
    app.delete(&path, &a.key).await.expect(204);
    for bad in [
        json!({"name": "P", "origin": "ftp://x.test"}),
        json!({"name": "P", "origin": "http://x.test/path"}),
        json!({"name": "P", "origin": "http://u:p@x.test"}),
        json!({"name": "P", "origin": "http://127.0.0.1:1", "headers": {"Host": "x"}}),
        json!({"name": "P", "origin": "http://127.0.0.1:1", "headers": {"X-A": "bad\nvalue"}}),
        json!({"name": "P", "origin": "http://127.0.0.1:1", "timeout_ms": 0}),
    ] {
        app.post("/api/v1/proxy_profiles", &a.key, bad.clone())
            .await
            .expect_error(400, "invalid_request");
    }

    let rules = format!(
        "/api/* {origin}/:splat 200\n/gone/* http://127.0.0.1:{closed}/:splat 200\n/ext/* https://unlisted.example/:splat 200\n"
    );
    let ann = a.access_token(&app, "ann@a.test").await;
    let site = app
        .post("/api/v1/sites", &ann.token, json!({"name": "proxied"}))
        .await
        .expect(201);
    let site_id = site.body["id"].as_str().unwrap().to_string();
    zip_deploy(
        &app,
        &ann.token,
        "proxied",
        zip_of(&[("index.html", b"home"), ("_redirects", rules.as_bytes())]),
    )
    .await
    .expect(200);
    let edge = |method: reqwest::Method, path: &str| {
        app.client
            .request(method, app.url(path))
            .header("host", "proxied.localhost")
    };

    // 10 MiB up: the origin gets all of it with the profile's header (not the visitor's), the
    // client address, and none of the hop-by-hop headers.
    let up = noise(BIG, 3);
    let r = edge(reqwest::Method::POST, "/api/upload")
        .header("x-api-key", "forged-by-visitor")
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "1")
        .header("cookie", "resellerd_pw=abc; theme=dark")
        .body(up.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.unwrap();
    assert_eq!(seen["len"], BIG);
    assert_eq!(seen["sha"], sha1(&up));
    let h = &seen["headers"];
    assert_eq!(h["x-api-key"], "sekrit-value");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-host"], "proxied.localhost");
    assert_eq!(h["via"], "1.1 resellerd");
    assert!(h.get("x-drop-me").is_none(), "{h}");
    assert_eq!(h["cookie"], "theme=dark", "the password cookie stays here");

    // A body over the upload limit (12 MiB here) is cut off.
    let r = edge(reqwest::Method::POST, "/api/upload")
        .body(noise(13 << 20, 4))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    // 10 MiB down, with a length and without one.
    let r = edge(reqwest::Method::GET, "/api/big").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    assert!(
        body.as_ref() == noise(BIG, 7).as_slice(),
        "{} bytes",
        body.len()
    );
    let r = edge(reqwest::Method::HEAD, "/api/big")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], BIG.to_string().as_str());
    let r = edge(reqwest::Method::GET, "/api/chunked")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 16 * (64 << 10));

    // The query string goes along; a redirect is passed back, not followed.
    let r = edge(reqwest::Method::GET, "/api/query?q=1&x=y")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "q=1&x=y");
    let r = edge(reqwest::Method::GET, "/api/moved")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "http://127.0.0.1:1/elsewhere");

    // The visitor's part of the path stays inside the rule's: no climbing out with dot
    // segments (encoded or not), and a `?` or `#` of theirs stays in the path.
    for path in [
        "/api/..%2fupload",
        "/api/x/..%2F..%2Fupload",
        "/api/%2e%2e/upload",
    ] {
        let r = edge(reqwest::Method::GET, path).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = edge(reqwest::Method::GET, "/api/query%3Fq=1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "the origin was asked for /query%3Fq=1, not /query?q=1"
    );

    // A request this server proxied already is not proxied again (a profile whose origin is
    // one of this server's own sites would loop).
    let r = edge(reqwest::Method::GET, "/api/query")
        .header("via", "1.1 resellerd")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 508);

    // A slow origin is 504, an absent one 502; both built-in pages.
    let r = edge(reqwest::Method::GET, "/api/slow")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let r = edge(reqwest::Method::GET, "/gone/x").send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.text().await.unwrap().contains("Bad gateway"));

    // An origin without a profile is redirected to, as before.
    let r = edge(reqwest::Method::GET, "/ext/x?y=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "https://unlisted.example/x");

    // Another reseller's site naming A's origin is redirected: A's profile is not B's.
    let bob = b.access_token(&app, "bob@b.test").await;
    app.post("/api/v1/sites", &bob.token, json!({"name": "borrower"}))
        .await
        .expect(201);
    zip_deploy(
        &app,
        &bob.token,
        "borrower",
        zip_of(&[("_redirects", rules.as_bytes())]),
    )
    .await
    .expect(200);
    let r = app
        .client
        .get(app.url("/api/upload"))
        .header("host", "borrower.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], format!("{origin}/upload").as_str());

    // Proxied bytes count toward the site's bandwidth.
    let mut sent = 0;
    for _ in 0..50 {
        let rows = app
            .get(&format!("/api/v1/users/{}/usage", ann.user_id), &a.key)
            .await
            .expect(200)
            .body;
        sent = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["site_id"] == site_id.as_str())
            .map_or(0, |r| r["bytes_sent"].as_u64().unwrap());
        if sent >= (BIG + 16 * (64 << 10)) as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        sent >= (BIG + 16 * (64 << 10)) as u64,
        "{sent} bytes counted"
    );

    // Profiles kept for some of the reseller's clients: another client's site redirects, and
    // each client can have its own profile (its own key) for the same origin.
    let id = profile.body["id"].as_str().unwrap();
    let amy = a.access_token(&app, "amy@a.test").await;
    let scoped = app
        .patch(
            &format!("/api/v1/proxy_profiles/{id}"),
            &a.key,
            json!({"user_ids": [amy.user_id]}),
        )
        .await
        .expect(200);
    assert_eq!(scoped.body["user_ids"], json!([amy.user_id]));
    let r = edge(reqwest::Method::GET, "/api/big").send().await.unwrap();
    assert_eq!(r.status(), 302, "ann's site may not use amy's profile");
    let anns = app
        .post(
            "/api/v1/proxy_profiles",
            &a.key,
            json!({"name": "Ann's", "origin": origin, "headers": {"X-Api-Key": "ann-key"}, "user_ids": [ann.user_id]}),
        )
        .await
        .expect(201);
    let r = edge(reqwest::Method::POST, "/api/upload")
        .body("x")
        .send()
        .await
        .unwrap();
    let seen: Value = r.json().await.unwrap();
    assert_eq!(seen["headers"]["x-api-key"], "ann-key");
    app.post(
        "/api/v1/proxy_profiles",
        &a.key,
        json!({"name": "Everyone's", "origin": origin}),
    )
    .await
    .expect_error(400, "proxy_origin_taken");
    app.delete(
        &format!(
            "/api/v1/proxy_profiles/{}",
            anns.body["id"].as_str().unwrap()
        ),
        &a.key,
    )
    .await
    .expect(204);
    app.patch(
        &format!("/api/v1/proxy_profiles/{id}"),
        &a.key,
        json!({"user_ids": [bob.user_id]}),
    )
    .await
    .expect_error(404, "not_found");
    app.patch(
        &format!("/api/v1/proxy_profiles/{id}"),
        &a.key,
        json!({"user_ids": [ann.user_id, amy.user_id]}),
    )
    .await
    .expect(200);
    let r = edge(reqwest::Method::GET, "/api/query?x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Deleting the profile turns the rule back into a redirect.
    app.delete(&format!("/api/v1/proxy_profiles/{id}"), &a.key)
        .await
        .expect(204);
    let r = edge(reqwest::Method::GET, "/api/big").send().await.unwrap();
    assert_eq!(r.status(), 302);
}

#[tokio::test]
async fn a_private_origin_is_refused_unless_the_operator_allows_it() {
    let app = TestApp::spawn().await;
    let a = app.reseller("Proxy strict").await;
    for origin in [
        "http://127.0.0.1:8080",
        "http://10.0.0.1",
        "http://[::1]:81",
    ] {
        app.post(
            "/api/v1/proxy_profiles",
            &a.key,
            json!({"name": "Inside", "origin": origin}),
        )
        .await
        .expect_error(400, "forbidden_target");
    }
    assert_eq!(
        app.get("/api/v1/proxy_profiles", &a.key)
            .await
            .expect(200)
            .body,
        json!([])
    );
}

/// What a visitor may not make the proxy do: TRACE, TRACK and CONNECT are 405 at the edge
/// (a TRACE-echoing origin would hand back the profile's secret headers), client-address and
/// URL-override headers of the visitor's are dropped and the edge's own set, and a `..;`
/// segment (a dot segment to Tomcat and Spring) is refused before any rule matches.
#[tokio::test]
async fn the_proxy_forwards_only_what_a_site_may_send() {
    let port = start_origin();
    let app = TestApp::spawn_with(&["--allow-private-targets"]).await;
    let a = app.reseller("Proxy A").await;
    let origin = format!("http://127.0.0.1:{port}");
    app.post(
        "/api/v1/proxy_profiles",
        &a.key,
        json!({"name": "Backend", "origin": origin, "headers": {"X-Api-Key": "sekrit-value"}}),
    )
    .await
    .expect(201);
    let ann = a.access_token(&app, "ann@a.test").await;
    app.post("/api/v1/sites", &ann.token, json!({"name": "proxied"}))
        .await
        .expect(201);
    let rules = format!("/api/* {origin}/:splat 200\n/public/* {origin}/query 200\n");
    zip_deploy(
        &app,
        &ann.token,
        "proxied",
        zip_of(&[("index.html", b"home"), ("_redirects", rules.as_bytes())]),
    )
    .await
    .expect(200);
    let http = app.http.trim_start_matches("http://").to_string();
    let raw = |request: String| {
        let http = http.clone();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(&http).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out).await;
            String::from_utf8_lossy(&out).into_owned()
        }
    };
    for method in ["TRACE", "TRACK"] {
        for path in ["/api/upload", "/index.html"] {
            let answer = raw(format!(
                "{method} {path} HTTP/1.1\r\nHost: proxied.localhost\r\nConnection: close\r\n\r\n"
            ))
            .await;
            assert!(
                answer.starts_with("HTTP/1.1 405"),
                "{method} {path}: {answer}"
            );
            assert!(!answer.contains("sekrit-value"), "{answer}");
        }
    }
    let answer = raw(
        "CONNECT proxied.localhost:443 HTTP/1.1\r\nHost: proxied.localhost\r\nConnection: close\r\n\r\n"
            .into(),
    )
    .await;
    assert!(!answer.starts_with("HTTP/1.1 2"), "{answer}");

    // Headers: the visitor's claims about its address and URL never reach the origin.
    let mut req = app
        .client
        .post(app.url("/api/upload"))
        .header("host", "proxied.localhost")
        .body("x");
    for (name, value) in [
        ("X-Real-IP", "6.6.6.6"),
        ("True-Client-IP", "6.6.6.6"),
        ("X-Client-IP", "6.6.6.6"),
        ("CF-Connecting-IP", "6.6.6.6"),
        ("X-Cluster-Client-IP", "6.6.6.6"),
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Original-URL", "/admin"),
        ("X-Rewrite-URL", "/admin"),
        ("X-HTTP-Method-Override", "DELETE"),
    ] {
        req = req.header(name, value);
    }
    let r = crate::helpers::reply(req.send().await.unwrap())
        .await
        .expect(200);
    let headers = &r.body["headers"];
    assert!(!r.text.contains("6.6.6.6"), "{}", r.text);
    assert!(!r.text.contains("/admin"), "{}", r.text);
    assert!(
        headers.get("x-http-method-override").is_none(),
        "{}",
        r.text
    );
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-real-ip"], "127.0.0.1");
    assert_eq!(headers["x-api-key"], "sekrit-value");

    // `..;` and its encodings are refused; a rule's prefix holds.
    for path in [
        "/public/..;/admin/secret",
        "/api/..;/upload",
        "/api/x/.;y/upload",
        "/api/%2e%2e;/upload",
        "/api/..%3b/upload",
    ] {
        let r = app
            .client
            .get(app.url(path))
            .header("host", "proxied.localhost")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
    }
}
