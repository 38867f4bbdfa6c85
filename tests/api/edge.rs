//! The edge: sites served by Host over HTTP and HTTPS, pretty URLs, caching headers, ranges,
//! redirect/header rules, the not-found chain, the password gate, and forms with submissions.

use crate::helpers::{reply, Reply, TestApp};
use crate::sites::{publish_site, zip_deploy, zip_of};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::json;

/// A request to the edge with this Host header, sent.
async fn send(
    app: &TestApp,
    method: Method,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = app
        .client
        .request(method, app.url(path))
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("edge request")
}

/// A request to the edge with this Host header.
pub async fn visit(
    app: &TestApp,
    method: Method,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    reply(send(app, method, host, path, headers).await).await
}

pub async fn get(app: &TestApp, host: &str, path: &str) -> Reply {
    visit(app, Method::GET, host, path, &[]).await
}

async fn post_form(
    app: &TestApp,
    host: &str,
    path: &str,
    fields: &[(&str, &str)],
    cookie: Option<&str>,
) -> Reply {
    let mut req = app
        .client
        .post(app.url(path))
        .header("host", host)
        .form(fields);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    reply(req.send().await.expect("form post")).await
}

/// `PUT /reseller/pages/KIND` with this HTML.
async fn put_page(app: &TestApp, key: &str, kind: &str, html: &str) {
    let r = app
        .client
        .put(app.url(&format!("/api/v1/reseller/pages/{kind}")))
        .bearer_auth(key)
        .header("content-type", "text/html; charset=utf-8")
        .body(html.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

fn ctype(h: &HeaderMap) -> &str {
    h.get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// A reseller, a user token and a site deployed from a zip.
async fn site_with(
    app: &TestApp,
    name: &str,
    files: &[(&str, &[u8])],
) -> (crate::helpers::Reseller, String) {
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(app, "ann@acme.test").await;
    publish_site(app, &ann.token, name, files).await;
    (acme, ann.token)
}

#[tokio::test]
async fn serves_a_deploy_by_host_with_http_semantics() {
    let app = TestApp::spawn().await;
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (acme, _) = site_with(
        &app,
        "docs",
        &[
            ("index.html", b"<h1>home</h1>"),
            ("about.html", b"<h1>about</h1>"),
            ("guide/index.html", b"<h1>guide</h1>"),
            ("app.js", b"console.log(1)"),
            ("big.bin", &big),
            (
                "_redirects",
                b"/old /about 301\n/spa/* /index.html 200\n/forced /app.js 302!\n",
            ),
            ("_headers", b"/*\n  X-Frame-Options: DENY\n"),
            (
                "netlify.toml",
                b"[[redirects]]\nfrom = \"/toml\"\nto = \"/guide/\"\nstatus = 302\n",
            ),
        ],
    )
    .await;
    let host = "docs.localhost";
    let home = get(&app, host, "/").await.expect(200);
    assert_eq!(home.text, "<h1>home</h1>");
    assert_eq!(ctype(&home.headers), "text/html; charset=utf-8");
    assert_eq!(home.header("x-frame-options"), Some("DENY"));
    assert!(home.header("cache-control").unwrap().contains("max-age=0"));
    let etag = home.header("etag").unwrap().to_string();
    assert_eq!(
        etag,
        format!("\"{}\"", crate::sites::sha1(b"<h1>home</h1>"))
    );
    visit(&app, Method::GET, host, "/", &[("if-none-match", &etag)])
        .await
        .expect(304);
    // Last-Modified is the deploy's time; a CDN revalidating by date gets 304 at it or later and
    // the page before it, and an If-None-Match that does not match wins over a date that would.
    let modified = home.header("last-modified").unwrap().to_string();
    assert!(modified.ends_with(" GMT"), "{modified}");
    visit(
        &app,
        Method::GET,
        host,
        "/",
        &[("if-modified-since", &modified)],
    )
    .await
    .expect(304);
    let earlier = "Thu, 01 Jan 2015 00:00:00 GMT";
    visit(
        &app,
        Method::GET,
        host,
        "/",
        &[("if-modified-since", earlier)],
    )
    .await
    .expect(200);
    let stale = [
        ("if-none-match", "\"other\""),
        ("if-modified-since", &modified),
    ];
    visit(&app, Method::GET, host, "/", &stale)
        .await
        .expect(200);
    assert_eq!(
        get(&app, host, "/app.js")
            .await
            .expect(200)
            .header("last-modified"),
        Some(modified.as_str()),
        "every file of a deploy carries the deploy's time"
    );

    // Pretty URLs and directory index; port in the Host header is fine.
    assert_eq!(
        get(&app, "docs.localhost:8080", "/about")
            .await
            .expect(200)
            .text,
        "<h1>about</h1>"
    );
    assert_eq!(
        get(&app, host, "/guide/").await.expect(200).text,
        "<h1>guide</h1>"
    );
    assert_eq!(
        get(&app, host, "/guide").await.expect(200).text,
        "<h1>guide</h1>"
    );
    let js = get(&app, host, "/app.js").await.expect(200);
    assert_eq!(ctype(&js.headers), "text/javascript; charset=utf-8");

    let head = visit(&app, Method::HEAD, host, "/big.bin", &[])
        .await
        .expect(200);
    assert!(head.text.is_empty());
    assert_eq!(head.header("content-length"), Some("100000"));
    let part = visit(
        &app,
        Method::GET,
        host,
        "/big.bin",
        &[("range", "bytes=10-19")],
    )
    .await
    .expect(206);
    assert_eq!(part.header("content-range"), Some("bytes 10-19/100000"));
    assert_eq!(part.text.as_bytes(), &big[10..20]);
    visit(
        &app,
        Method::GET,
        host,
        "/big.bin",
        &[("range", "bytes=200000-")],
    )
    .await
    .expect(416);
    // Past 1 MiB a file is streamed from disk; ranges work the same.
    let mut x: u32 = 7;
    let huge: Vec<u8> = (0..3 << 20)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 24) as u8
        })
        .collect();
    let token = acme.access_token(&app, "ann@acme.test").await.token;
    app.post("/api/v1/sites", &token, json!({"name": "huge"}))
        .await
        .expect(201);
    zip_deploy(&app, &token, "huge", zip_of(&[("huge.bin", &huge)]))
        .await
        .expect(200);
    let full = app
        .client
        .get(app.url("/huge.bin"))
        .header("host", "huge.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(
        full.headers()["content-length"],
        (3 << 20).to_string().as_str()
    );
    assert!(full.bytes().await.unwrap() == huge);
    let span = app
        .client
        .get(app.url("/huge.bin"))
        .header("host", "huge.localhost")
        .header("range", "bytes=262000-262300")
        .send()
        .await
        .unwrap();
    assert_eq!(span.status(), 206);
    assert!(span.bytes().await.unwrap() == huge[262000..=262300]);
    let tail = visit(
        &app,
        Method::GET,
        "huge.localhost",
        "/huge.bin",
        &[("range", "bytes=-5")],
    )
    .await
    .expect(206);
    assert_eq!(
        tail.header("content-range"),
        Some("bytes 3145723-3145727/3145728")
    );

    // Rules from _redirects and netlify.toml; the config files themselves are not served.
    let old = get(&app, host, "/old").await.expect(301);
    assert_eq!(old.header("location"), Some("/about"));
    assert_eq!(
        get(&app, host, "/spa/deep/link").await.expect(200).text,
        "<h1>home</h1>"
    );
    assert_eq!(
        get(&app, host, "/toml")
            .await
            .expect(302)
            .header("location"),
        Some("/guide/")
    );
    get(&app, host, "/forced").await.expect(302);
    for hidden in ["/netlify.toml", "/_redirects", "/_headers"] {
        get(&app, host, hidden).await.expect(404);
    }
    let missing = get(&app, host, "/nope").await.expect(404);
    assert!(ctype(&missing.headers).starts_with("text/html"));

    // Unknown hosts get a plain page; a site's host is the site's on every path (the API and
    // probes answer on the instance's own hosts).
    let unknown = get(&app, "nobody.localhost", "/").await.expect(404);
    assert!(unknown.text.contains("No site here"));
    get(&app, "other.example", "/").await.expect(404);
    // A name the operator did not configure is no API host either (`--api-host` is unset).
    let r = get(&app, "other.example", "/healthz").await.expect(404);
    assert!(r.text.contains("No site here"), "{}", r.text);
    get(&app, "localhost", "/healthz").await.expect(200);
    get(&app, "[::1]", "/healthz").await.expect(200);
    for path in ["/healthz", "/api/v1/nothing"] {
        let r = get(&app, host, path).await.expect(404);
        assert!(ctype(&r.headers).starts_with("text/html"), "{path}");
    }
    visit(&app, Method::GET, "127.0.0.1", "/api/v1/nothing", &[])
        .await
        .expect_error(404, "not_found");

    // HTTPS with SNI, same site.
    let tls = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve(
            host,
            format!("127.0.0.1:{}", app.https_port).parse().unwrap(),
        )
        .build()
        .unwrap();
    let r = tls
        .get(format!("https://{host}:{}/about", app.https_port))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "<h1>about</h1>");

    // With a preview domain the site moves to NAME.<preview_domain>.
    app.set_preview_domain(&acme, "sites.acme.test").await;
    get(&app, "docs.sites.acme.test", "/").await.expect(200);
    get(&app, host, "/").await.expect(404);
    let site = app.get("/api/v1/sites/docs", &acme.key).await.expect(200);
    assert_eq!(
        site.body["ssl_url"],
        format!("https://docs.sites.acme.test:{}", app.https_port)
    );

    // A draft is not published but has its own permalink host.
    let draft = app
        .client
        .post(app.url("/api/v1/sites/docs/deploys?draft=true"))
        .bearer_auth(&acme.key)
        .header("content-type", "application/zip")
        .body(zip_of(&[("index.html", b"draft!")]))
        .send()
        .await
        .unwrap();
    let draft = reply(draft).await.expect(200);
    assert_eq!(draft.body["draft"], true);
    let url = draft.body["deploy_url"].as_str().unwrap();
    let draft_host = url.strip_prefix("http://").unwrap();
    let draft_host = crate::helpers::host_of(draft_host);
    assert!(draft_host.ends_with("--docs.sites.acme.test"), "{url}");
    assert_eq!(get(&app, draft_host, "/").await.expect(200).text, "draft!");
    assert_eq!(
        get(&app, "docs.sites.acme.test", "/")
            .await
            .expect(200)
            .text,
        "<h1>home</h1>"
    );
}

#[tokio::test]
async fn not_found_falls_back_from_site_to_reseller_to_builtin() {
    let app = TestApp::spawn().await;
    let (acme, token) = site_with(&app, "plain", &[("index.html", b"hi")]).await;
    let builtin = get(&app, "plain.localhost", "/missing").await.expect(404);
    assert!(builtin.text.contains("Page not found"));
    let page = "<html><body>Acme lost it</body></html>";
    put_page(&app, &acme.key, "not_found", page).await;
    assert_eq!(
        get(&app, "plain.localhost", "/missing")
            .await
            .expect(404)
            .text,
        page
    );
    zip_deploy(
        &app,
        &token,
        "plain",
        zip_of(&[("index.html", b"hi"), ("404.html", b"site 404")]),
    )
    .await
    .expect(200);
    let own = get(&app, "plain.localhost", "/missing").await.expect(404);
    assert_eq!(own.text, "site 404");
    // A site with no deploy yet is also "not found".
    app.post("/api/v1/sites", &token, json!({"name": "empty"}))
        .await
        .expect(201);
    assert_eq!(
        get(&app, "empty.localhost", "/").await.expect(404).text,
        page
    );
    // Deleting a site takes it off the edge at once; restoring a deploy switches back at once.
    let deploys = app
        .get("/api/v1/sites/plain/deploys", &token)
        .await
        .expect(200);
    let first = deploys.body[1]["id"].as_str().unwrap().to_string();
    app.post(
        &format!("/api/v1/sites/plain/deploys/{first}/restore"),
        &token,
        json!({}),
    )
    .await
    .expect(201);
    assert_eq!(
        get(&app, "plain.localhost", "/missing")
            .await
            .expect(404)
            .text,
        page
    );
    app.delete("/api/v1/sites/plain", &token).await.expect(204);
    let gone = get(&app, "plain.localhost", "/").await.expect(404);
    assert!(gone.text.contains("No site here"));
}

#[tokio::test]
async fn password_gate_sets_a_signed_cookie_and_limits_attempts() {
    let app = TestApp::spawn().await;
    let (acme, token) = site_with(&app, "secret", &[("index.html", b"inside")]).await;
    app.patch(
        "/api/v1/sites/secret",
        &token,
        json!({"password": "open sesame"}),
    )
    .await
    .expect(200);
    let page = "<form method=post><input type=password name=password></form><p>Acme gate</p>";
    put_page(&app, &acme.key, "password", page).await;
    let host = "secret.localhost";
    assert_eq!(get(&app, host, "/").await.expect(401).text, page);
    assert_eq!(
        post_form(&app, host, "/", &[("password", "wrong")], None)
            .await
            .expect(401)
            .text,
        page
    );
    let ok = post_form(&app, host, "/?x=1", &[("password", "open sesame")], None)
        .await
        .expect(303);
    assert_eq!(ok.header("location"), Some("/?x=1"));
    let set = ok.header("set-cookie").unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let inside = visit(&app, Method::GET, host, "/", &[("cookie", &cookie)])
        .await
        .expect(200);
    assert_eq!(inside.text, "inside");
    // A forged cookie is not accepted.
    visit(
        &app,
        Method::GET,
        host,
        "/",
        &[("cookie", "resellerd_pw=00")],
    )
    .await
    .expect(401);
    // Changing the password invalidates old cookies.
    app.patch(
        "/api/v1/sites/secret",
        &token,
        json!({"password": "new one"}),
    )
    .await
    .expect(200);
    visit(&app, Method::GET, host, "/", &[("cookie", &cookie)])
        .await
        .expect(401);
    // Attempts are rate-limited per client address.
    let mut last = 0;
    for _ in 0..12 {
        last = post_form(&app, host, "/", &[("password", "guess")], None)
            .await
            .status
            .as_u16();
    }
    assert_eq!(last, 429);
    // Removing the password opens the site.
    app.patch("/api/v1/sites/secret", &token, json!({"password": null}))
        .await
        .expect(200);
    get(&app, host, "/").await.expect(200);
}

#[tokio::test]
async fn forms_are_detected_and_submissions_stored() {
    let app = TestApp::spawn().await;
    let html = br#"<html><body>
        <form name="contact" method="POST" data-netlify="true" netlify-honeypot="bot-field" action="/thanks">
          <input type="hidden" name="form-name" value="contact">
          <input name="email"><textarea name="message"></textarea><input name="bot-field">
        </form>
        <form name="newsletter" netlify><input name="email"></form>
        <form name="search"><input name="q"></form></body></html>"#;
    let (acme, token) = site_with(
        &app,
        "shop",
        &[("index.html", html), ("thanks.html", b"thanks")],
    )
    .await;
    let forms = app
        .get("/api/v1/sites/shop/forms", &token)
        .await
        .expect(200);
    let names: Vec<&str> = forms
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"contact") && names.contains(&"newsletter"));

    let host = "shop.localhost";
    let sent = post_form(
        &app,
        host,
        "/",
        &[
            ("form-name", "contact"),
            ("email", "a@b.test"),
            ("message", "hello"),
            ("bot-field", ""),
        ],
        None,
    )
    .await
    .expect(303);
    assert_eq!(sent.header("location"), Some("/thanks"));
    // A filled honeypot looks accepted but is not stored.
    post_form(
        &app,
        host,
        "/",
        &[
            ("form-name", "contact"),
            ("email", "x@y.test"),
            ("bot-field", "spam"),
        ],
        None,
    )
    .await
    .expect(303);
    // No action: the reseller's form_success page (else the built-in one), 200; multipart works.
    let success = "<p>Acme thanks you</p>";
    put_page(&app, &acme.key, "form_success", success).await;
    let multipart = reqwest::multipart::Form::new()
        .text("form-name", "newsletter")
        .text("email", "m@p.test");
    let r = app
        .client
        .post(app.url("/"))
        .header("host", host)
        .multipart(multipart)
        .send()
        .await
        .unwrap();
    let r = reply(r).await.expect(200);
    assert_eq!(r.text, success);
    post_form(&app, host, "/", &[("form-name", "nope")], None)
        .await
        .expect(404);
    // A plain HTML post without form-name goes to the form whose action is the path.
    post_form(&app, host, "/thanks", &[("email", "plain@b.test")], None)
        .await
        .expect(303);
    // No form-name and no form for this path: not stored.
    post_form(&app, host, "/elsewhere", &[("email", "who@b.test")], None)
        .await
        .expect(404);

    let subs = app
        .get("/api/v1/sites/shop/submissions", &token)
        .await
        .expect(200);
    assert_eq!(subs.body.as_array().unwrap().len(), 3);
    let contact = app.get("/api/v1/forms", &acme.key).await.expect(200);
    let contact_id = contact
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "contact")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let of_form = app
        .get(&format!("/api/v1/forms/{contact_id}/submissions"), &token)
        .await
        .expect(200);
    assert_eq!(of_form.body.as_array().unwrap().len(), 2);
    assert_eq!(
        of_form.body[0]["data"]["email"], "plain@b.test",
        "newest first"
    );
    let one = &of_form.body[1];
    assert_eq!(one["number"], 1);
    assert_eq!(one["data"]["email"], "a@b.test");
    assert_eq!(one["data"]["message"], "hello");
    assert_eq!(one["email"], "a@b.test");
    assert!(one["data"].get("bot-field").is_none());

    // Scope: the reseller sees all, another user none, another reseller none.
    let all = app.get("/api/v1/submissions", &acme.key).await.expect(200);
    assert_eq!(all.body.as_array().unwrap().len(), 3);
    let bob = acme.access_token(&app, "bob@acme.test").await;
    let none = app.get("/api/v1/submissions", &bob.token).await.expect(200);
    assert_eq!(none.body.as_array().unwrap().len(), 0);
    let other = app.reseller("Other").await;
    let id = one["id"].as_str().unwrap();
    app.delete(&format!("/api/v1/submissions/{id}"), &other.key)
        .await
        .expect_error(404, "not_found");
    app.delete(&format!("/api/v1/submissions/{id}"), &token)
        .await
        .expect(204);
    let left = app.get("/api/v1/submissions", &token).await.expect(200);
    assert_eq!(left.body.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_default_preview_domain_is_configurable() {
    let app = TestApp::spawn_with(&["--default-preview-domain", "Preview.Example.test."]).await;
    let (acme, _) = site_with(&app, "conf", &[("index.html", b"configured")]).await;
    assert_eq!(
        get(&app, "conf.preview.example.test", "/")
            .await
            .expect(200)
            .text,
        "configured"
    );
    get(&app, "conf.localhost", "/").await.expect(404);
    let site = app.get("/api/v1/sites/conf", &acme.key).await.expect(200);
    assert_eq!(
        site.body["url"],
        format!("https://conf.preview.example.test:{}", app.https_port)
    );
}

/// The brotli variant `host` sends for `path`, once it has one (within 20 s: variants are made
/// after the deploy is ready).
pub async fn brotli_variant(app: &TestApp, host: &str, path: &str) -> Option<Vec<u8>> {
    for _ in 0..200 {
        let (_, headers, body) =
            raw(app, Method::GET, host, path, &[("accept-encoding", "br")]).await;
        if header(&headers, "content-encoding") == Some("br") {
            return Some(body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    None
}

/// A request to the edge answered as raw bytes (no decoding by the client).
async fn raw(
    app: &TestApp,
    method: Method,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, Vec<u8>) {
    let resp = send(app, method, host, path, headers).await;
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Compressible files get brotli and gzip variants after the deploy is ready, chosen by
/// `Accept-Encoding` with q-values, each with its own ETag and length, `Vary` on every answer of
/// such a file, the site's headers on every variant, ranges on the original only; small and
/// incompressible files stay as they are; and the variants go with the deploy.
#[tokio::test]
async fn serves_precompressed_variants_by_accept_encoding() {
    use std::io::Read;
    let app = TestApp::spawn().await;
    let page: Vec<u8> = (0..2000)
        .flat_map(|i| format!("<p class=\"row\">Row {i} of the price list</p>\n").into_bytes())
        .collect();
    let noise = crate::helpers::noise(4096, 7);
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    let headers_file = b"/*\n  X-Frame-Options: DENY\n";
    let files: [(&str, &[u8]); 4] = [
        ("index.html", &page),
        ("small.css", b"body{margin:0}"),
        ("photo.png", &noise),
        ("_headers", headers_file),
    ];
    crate::sites::publish_site(&app, &ann.token, "zipped-docs", &files).await;
    let token = ann.token;
    let host = "zipped-docs.localhost";
    // Made off the request path: identity until then.
    let mut br = None;
    for _ in 0..200 {
        let got = raw(
            &app,
            Method::GET,
            host,
            "/",
            &[("accept-encoding", "gzip, deflate, br")],
        )
        .await;
        if header(&got.1, "content-encoding") == Some("br") {
            br = Some(got);
            break;
        }
        assert_eq!(got.2, page, "identity while the variants are made");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, h, body) = br.expect("a brotli variant within 20 s");
    assert_eq!(status, 200);
    assert!(
        body.len() * 10 < page.len(),
        "{} bytes of {}",
        body.len(),
        page.len()
    );
    assert_eq!(
        header(&h, "content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(header(&h, "vary"), Some("Accept-Encoding"));
    assert_eq!(
        header(&h, "x-frame-options"),
        Some("DENY"),
        "the site's headers"
    );
    assert_eq!(ctype(&h), "text/html; charset=utf-8");
    let br_etag = header(&h, "etag").unwrap().to_string();
    assert_eq!(br_etag, format!("\"{}\"", crate::sites::sha1(&body)));
    let mut decoded = Vec::new();
    brotli::Decompressor::new(&body[..], 4096)
        .read_to_end(&mut decoded)
        .unwrap();
    assert_eq!(decoded, page);

    // gzip for a client without brotli, or one that ranks it lower.
    for accept in ["gzip, deflate", "br;q=0.2, gzip;q=0.9", "x-gzip"] {
        let (status, h, body) =
            raw(&app, Method::GET, host, "/", &[("accept-encoding", accept)]).await;
        assert_eq!(
            (status, header(&h, "content-encoding")),
            (200, Some("gzip")),
            "{accept}"
        );
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, page, "{accept}");
        assert_ne!(header(&h, "etag"), Some(br_etag.as_str()));
    }
    // Identity for a client that sends none, refuses both, or ranks identity first.
    for accept in [None, Some("br;q=0, gzip;q=0"), Some("identity, br;q=0.5")] {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("accept-encoding", *a)).collect();
        let (status, h, body) = raw(&app, Method::GET, host, "/", &headers).await;
        assert_eq!(
            (status, header(&h, "content-encoding")),
            (200, None),
            "{accept:?}"
        );
        assert_eq!(body, page);
        assert_eq!(header(&h, "vary"), Some("Accept-Encoding"));
        assert_eq!(
            header(&h, "etag").unwrap(),
            format!("\"{}\"", crate::sites::sha1(&page))
        );
    }
    // Each variant revalidates with its own ETag.
    let (status, h, _) = raw(
        &app,
        Method::GET,
        host,
        "/",
        &[("accept-encoding", "br"), ("if-none-match", &br_etag)],
    )
    .await;
    assert_eq!((status, header(&h, "etag")), (304, Some(br_etag.as_str())));
    // A range is of the original, whatever the client accepts.
    let (status, h, body) = raw(
        &app,
        Method::GET,
        host,
        "/",
        &[("accept-encoding", "br, gzip"), ("range", "bytes=0-9")],
    )
    .await;
    assert_eq!((status, header(&h, "content-encoding")), (206, None));
    assert_eq!(body, &page[..10]);
    // HEAD says what GET would send.
    let (status, h, body) = raw(&app, Method::HEAD, host, "/", &[("accept-encoding", "br")]).await;
    assert_eq!((status, header(&h, "content-encoding")), (200, Some("br")));
    assert!(body.is_empty());
    // Too small, or not compressible: as it is, without Vary.
    for path in ["/small.css", "/photo.png"] {
        let (status, h, _) = raw(
            &app,
            Method::GET,
            host,
            path,
            &[("accept-encoding", "br, gzip")],
        )
        .await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(header(&h, "content-encoding"), None, "{path}");
        assert_eq!(header(&h, "vary"), None, "{path}");
    }

    // Storage counts what was uploaded, not the variants.
    let uploaded = files.iter().map(|(_, f)| f.len() as u64).sum::<u64>();
    let (stored, _) = crate::plans::storage(&app, &acme.key, &ann.user_id).await;
    assert_eq!(stored, uploaded);

    // The variants are kept while the deploy is and go with it.
    app.delete("/api/v1/sites/zipped-docs", &token)
        .await
        .expect(204);
    let mut left = Vec::new();
    for head in std::fs::read_dir(app.data_dir.join("blobs"))
        .unwrap()
        .flatten()
    {
        if head.path().is_dir() {
            left.extend(
                std::fs::read_dir(head.path())
                    .unwrap()
                    .flatten()
                    .map(|e| e.path()),
            );
        }
    }
    assert!(left.is_empty(), "blobs left behind: {left:?}");
}
