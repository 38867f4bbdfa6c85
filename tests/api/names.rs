//! The instance's own names: no tenant can answer on the API host (not with a site, a preview
//! domain, a client domain or a proxy rule), a preview domain takes effect only once DNS proves
//! it, and random sequences of two resellers' naming actions never move an instance name or
//! another tenant's name.

use crate::edge::visit;
use crate::helpers::{Reply, TestApp};
use crate::pebble::ChallTestSrv;
use crate::sites::{publish_site, zip_deploy, zip_of};
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// An origin that records every request it gets (method, path, Authorization) and answers 200.
fn recording_origin() -> (u16, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            use std::io::{Read, Write};
            let mut buf = [0u8; 8192];
            let n = stream.read(&mut buf).unwrap_or(0);
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\ncaptured",
            );
        }
    });
    (port, seen)
}

/// Reseller B's best try at the API host `api.hosting.test`: a proxy profile to its own origin,
/// a site deploying `/* origin/:splat 200!`, and every name that could put it on the host.
async fn attack_the_api_host(app: &TestApp, named: bool) {
    let (port, seen) = recording_origin();
    let a = app.reseller("Victim").await;
    let b = app.reseller("Attacker").await;
    let origin = format!("http://127.0.0.1:{port}");
    app.post(
        "/api/v1/proxy_profiles",
        &b.key,
        json!({"name": "Mine", "origin": origin, "headers": {}}),
    )
    .await
    .expect(201);
    let mallory = b.access_token(app, "mallory@b.test").await;
    let rules = format!("/* {origin}/:splat 200!\n");
    let files: [(&str, &[u8]); 2] = [
        ("index.html", b"fake panel"),
        ("_redirects", rules.as_bytes()),
    ];
    publish_site(app, &mallory.token, "capture", &files).await;
    for preview in ["hosting.test", "test", "api.hosting.test", "x.hosting.test"] {
        let r = app
            .patch(
                "/api/v1/reseller",
                &b.key,
                json!({"preview_domain": preview}),
            )
            .await;
        if preview == "test" {
            r.expect_error(400, "invalid_request"); // one label: not a domain name at all
        } else if named {
            r.expect_error(400, "name_reserved");
        }
    }
    app.post("/api/v1/sites", &mallory.token, json!({"name": "api"}))
        .await
        .expect(if named { 400 } else { 201 });
    for domain in ["api.hosting.test", "hosting.test", "x.hosting.test"] {
        let r = app
            .post(
                "/api/v1/domains",
                &b.key,
                json!({"domain": domain, "email": "mallory@b.test", "site_id": "capture"}),
            )
            .await;
        if named {
            r.expect_error(400, "name_reserved");
        }
    }
    // A CRM calls the API on its host name with reseller A's key.
    let call = app
        .client
        .get(app.url("/api/v1/reseller"))
        .header("host", "api.hosting.test")
        .bearer_auth(&a.key)
        .send()
        .await
        .unwrap();
    let r = crate::helpers::reply(call).await;
    if named {
        let r = r.expect(200);
        assert_eq!(r.body["id"], a.id.as_str());
    } else {
        // Not configured: no API there, and no site either.
        assert_eq!(r.status, 404);
        assert_ne!(r.text, "captured");
    }
    let page = visit(app, Method::GET, "api.hosting.test", "/admin/", &[]).await;
    assert_ne!(page.text, "captured");
    assert!(!page.text.contains("fake panel"));
    assert!(
        seen.lock().unwrap().is_empty(),
        "the attacker's origin heard {:?}",
        seen.lock().unwrap()
    );
    // The attacker's own site still works through its proxy rule.
    let own = visit(app, Method::GET, "capture.hosting.test", "/x", &[]).await;
    if named {
        assert_eq!(own.text, "captured");
        let heard = seen.lock().unwrap().join("\n");
        assert!(!heard.contains(&a.key), "{heard}");
    }
}

#[tokio::test]
async fn no_tenant_can_capture_the_api_host() {
    let named = TestApp::spawn_with(&[
        "--allow-private-targets",
        "--api-host",
        "api.hosting.test",
        "--default-preview-domain",
        "hosting.test",
    ])
    .await;
    attack_the_api_host(&named, true).await;
    let unset = TestApp::spawn_with(&[
        "--allow-private-targets",
        "--default-preview-domain",
        "hosting.test",
    ])
    .await;
    attack_the_api_host(&unset, false).await;
}

async fn dns_app(dns: &ChallTestSrv, extra: &[&str]) -> TestApp {
    let server = dns.dns_server();
    let mut args = vec!["--dns-server", server.as_str()];
    args.extend_from_slice(extra);
    TestApp::spawn_with(&args).await
}

async fn edge_text(app: &TestApp, host: &str) -> String {
    visit(app, Method::GET, host, "/", &[]).await.text
}

#[tokio::test]
async fn a_preview_domain_serves_only_once_dns_proves_it() {
    let dns = ChallTestSrv::start();
    let app = dns_app(&dns, &[]).await;
    let acme = app.reseller("Acme").await;
    let globex = app.reseller("Globex").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    publish_site(&app, &ann.token, "docs", &[("index.html", b"acme docs")]).await;
    let r = app
        .patch(
            "/api/v1/reseller",
            &acme.key,
            json!({"preview_domain": "sites.acme.test"}),
        )
        .await
        .expect(200);
    assert_eq!(r.body["preview_domain"], Value::Null);
    let pending = &r.body["preview_domain_pending"];
    assert_eq!(pending["domain"], "sites.acme.test");
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["txt_record"]["name"], "_resellerd.sites.acme.test");
    let value = pending["txt_record"]["value"].as_str().unwrap().to_string();
    assert!(value.starts_with("resellerd-verification="), "{value}");
    // The old name keeps serving; the new one does not yet.
    assert_eq!(edge_text(&app, "docs.localhost").await, "acme docs");
    assert!(edge_text(&app, "docs.sites.acme.test")
        .await
        .contains("No site here"));
    // Another reseller cannot claim names under a pending preview domain.
    app.post(
        "/api/v1/domains",
        &globex.key,
        json!({"domain": "shop.sites.acme.test", "email": "x@globex.test"}),
    )
    .await
    .expect_error(400, "name_reserved");

    // Checked now: no record, then a wrong one, each with the reason.
    let verify = || {
        app.post(
            "/api/v1/reseller/preview_domain/verify",
            &acme.key,
            json!({}),
        )
    };
    let r = verify().await.expect(200);
    let reason = r.body["preview_domain_pending"]["verification_error"]
        .as_str()
        .unwrap();
    assert!(
        reason.contains("no TXT record at _resellerd.sites.acme.test"),
        "{reason}"
    );
    dns.set_txt("_resellerd.sites.acme.test", "resellerd-verification=wrong")
        .await;
    let r = verify().await.expect(200);
    let reason = r.body["preview_domain_pending"]["verification_error"]
        .as_str()
        .unwrap();
    assert!(reason.contains("change the record's value"), "{reason}");
    assert_eq!(r.body["preview_domain"], Value::Null);
    dns.set_txt("_resellerd.sites.acme.test", &value).await;
    let r = verify().await.expect(200);
    assert_eq!(r.body["preview_domain"], "sites.acme.test");
    assert_eq!(r.body["preview_domain_pending"], Value::Null);
    assert_eq!(edge_text(&app, "docs.sites.acme.test").await, "acme docs");
    assert!(edge_text(&app, "docs.localhost")
        .await
        .contains("No site here"));

    // A preview domain may not cover another reseller's client domain, pending or not.
    app.post(
        "/api/v1/domains",
        &acme.key,
        json!({"domain": "client.example", "email": "ann@acme.test"}),
    )
    .await
    .expect(201);
    for covering in ["client.example", "www.client.example"] {
        let r = app
            .patch(
                "/api/v1/reseller",
                &globex.key,
                json!({"preview_domain": covering}),
            )
            .await;
        if covering == "client.example" {
            r.expect_error(400, "name_reserved");
        } else {
            // Lies inside the client's domain: only its owner's DNS can prove it.
            r.expect(200);
        }
    }
    // Nor overlap another reseller's preview domain.
    app.patch(
        "/api/v1/reseller",
        &globex.key,
        json!({"preview_domain": "acme.test"}),
    )
    .await
    .expect_error(400, "name_reserved");
    app.patch(
        "/api/v1/reseller",
        &globex.key,
        json!({"preview_domain": "x.sites.acme.test"}),
    )
    .await
    .expect_error(400, "name_reserved");
    // Withdrawn: back to the current one, nothing pending.
    let r = app
        .patch(
            "/api/v1/reseller",
            &globex.key,
            json!({"preview_domain": null}),
        )
        .await
        .expect(200);
    assert_eq!(r.body["preview_domain_pending"], Value::Null);
}

/// The model the property test checks the edge against: every host that should serve a site,
/// with the site's marker and its reseller.
async fn served_names(app: &TestApp, keys: &[(&str, &str)]) -> BTreeMap<String, (String, String)> {
    let mut want: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut domains = Vec::new();
    for (rid, key) in keys {
        let me = app.get("/api/v1/reseller", key).await.expect(200);
        let preview = me.body["preview_domain"]
            .as_str()
            .unwrap_or("hosting.test")
            .to_string();
        let sites = app.get("/api/v1/sites", key).await.expect(200);
        for s in sites.body.as_array().unwrap() {
            let name = s["name"].as_str().unwrap();
            let marker = format!("site {}", s["id"].as_str().unwrap());
            want.insert(format!("{name}.{preview}"), (marker, rid.to_string()));
        }
        let list = app.get("/api/v1/domains", key).await.expect(200);
        for d in list.body.as_array().unwrap() {
            if d["verification_status"] == "verified" {
                if let Some(site) = d["site_id"].as_str() {
                    let marker = format!("site {site}");
                    domains.push((
                        d["domain"].as_str().unwrap().to_string(),
                        marker,
                        rid.to_string(),
                    ));
                }
            }
        }
    }
    // A verified client domain wins over a preview host, but only ever within one reseller.
    for (domain, marker, rid) in domains {
        for host in [domain.clone(), format!("www.{domain}")] {
            if let Some((_, owner)) = want.get(&host) {
                assert_eq!(owner, &rid, "{host} is named by two resellers");
            }
            want.insert(host, (marker.clone(), rid.clone()));
        }
    }
    want
}

async fn proven(dns: &ChallTestSrv, r: &Reply, pending: &str) {
    let record = &r.body[pending];
    let (name, value) = (
        record["txt_record"]["name"]
            .as_str()
            .or(record["name"].as_str()),
        record["txt_record"]["value"]
            .as_str()
            .or(record["value"].as_str()),
    );
    if let (Some(name), Some(value)) = (name, value) {
        dns.set_txt(name, value).await;
    }
}

/// Random sequences of both resellers' naming actions (preview domains asked for and proven or
/// set by the operator, sites named and renamed, client domains added, proven and deleted,
/// sites deleted): after every step each instance name still answers as the API and every
/// served name serves its own tenant's site.
#[tokio::test]
async fn random_naming_never_moves_an_instance_name_or_a_tenants_name() {
    let dns = ChallTestSrv::start();
    let app = dns_app(
        &dns,
        &[
            "--api-host",
            "api.hosting.test,panel.ops.test",
            "--default-preview-domain",
            "hosting.test",
        ],
    )
    .await;
    let resellers = [app.reseller("Prop A").await, app.reseller("Prop B").await];
    let mut users = Vec::new();
    for (i, r) in resellers.iter().enumerate() {
        users.push(r.access_token(&app, &format!("u@{i}.test")).await);
    }
    let keys: Vec<(&str, &str)> = resellers
        .iter()
        .map(|r| (r.id.as_str(), r.key.as_str()))
        .collect();
    let labels = ["api", "panel", "www", "shop", "docs", "ops", "sites"];
    let names = [
        "hosting.test",
        "ops.test",
        "panel.ops.test",
        "api.hosting.test",
        "sites.a.test",
        "sites.b.test",
        "a.test",
        "shop.sites.a.test",
        "docs.sites.b.test",
        "client.test",
        "www.client.test",
        "test",
    ];
    let seed = std::env::var("NAMES_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for step in 0..40 {
        let who = rng.gen_range(0..2);
        let (reseller, user) = (&resellers[who], &users[who]);
        let name = names[rng.gen_range(0..names.len())];
        let label = labels[rng.gen_range(0..labels.len())];
        let action = rng.gen_range(0..7);
        let what = match action {
            0 => {
                let r = app
                    .patch(
                        "/api/v1/reseller",
                        &reseller.key,
                        json!({"preview_domain": name}),
                    )
                    .await;
                if r.status == 200 {
                    proven(&dns, &r, "preview_domain_pending").await;
                    app.post(
                        "/api/v1/reseller/preview_domain/verify",
                        &reseller.key,
                        json!({}),
                    )
                    .await
                    .expect(200);
                } else {
                    assert_eq!(r.status, 400, "{}", r.text);
                }
                format!("reseller {who} asks for preview {name}: {}", r.status)
            }
            1 => {
                let r = app
                    .patch(
                        &format!("/api/v1/admin/resellers/{}", reseller.id),
                        &app.operator,
                        json!({"preview_domain": name}),
                    )
                    .await;
                assert!(matches!(r.status.as_u16(), 200 | 400), "{}", r.text);
                format!("operator sets {who}'s preview {name}: {}", r.status)
            }
            2 => {
                let r = app
                    .post("/api/v1/sites", &user.token, json!({"name": label}))
                    .await;
                if r.status == 201 {
                    let marker = format!("site {}", r.body["id"].as_str().unwrap());
                    zip_deploy(
                        &app,
                        &user.token,
                        label,
                        zip_of(&[("index.html", marker.as_bytes())]),
                    )
                    .await
                    .expect(200);
                }
                format!("user {who} names a site {label}: {}", r.status)
            }
            3 => {
                let sites = app.get("/api/v1/sites", &user.token).await.expect(200);
                let Some(site) = sites.body.as_array().unwrap().first().cloned() else {
                    continue;
                };
                let r = app
                    .post(
                        "/api/v1/domains",
                        &reseller.key,
                        json!({"domain": name, "email": format!("u@{who}.test"), "site_id": site["id"]}),
                    )
                    .await;
                if r.status == 201 {
                    proven(&dns, &r, "verification").await;
                    let id = r.body["id"].as_str().unwrap();
                    app.post(
                        &format!("/api/v1/domains/{id}/verify"),
                        &reseller.key,
                        json!({}),
                    )
                    .await
                    .expect(200);
                }
                format!("reseller {who} adds client domain {name}: {}", r.status)
            }
            4 => {
                let sites = app.get("/api/v1/sites", &user.token).await.expect(200);
                let Some(site) = sites.body.as_array().unwrap().first().cloned() else {
                    continue;
                };
                let id = site["id"].as_str().unwrap();
                let r = app
                    .patch(
                        &format!("/api/v1/sites/{id}"),
                        &user.token,
                        json!({"name": label}),
                    )
                    .await;
                format!("user {who} renames a site to {label}: {}", r.status)
            }
            5 => {
                let list = app.get("/api/v1/domains", &reseller.key).await.expect(200);
                let Some(d) = list.body.as_array().unwrap().first().cloned() else {
                    continue;
                };
                let id = d["id"].as_str().unwrap();
                app.delete(&format!("/api/v1/domains/{id}"), &reseller.key)
                    .await
                    .expect(204);
                format!("reseller {who} deletes client domain {}", d["domain"])
            }
            _ => {
                let sites = app.get("/api/v1/sites", &user.token).await.expect(200);
                let Some(site) = sites.body.as_array().unwrap().last().cloned() else {
                    continue;
                };
                let id = site["id"].as_str().unwrap();
                app.delete(&format!("/api/v1/sites/{id}"), &user.token)
                    .await
                    .expect(204);
                format!("user {who} deletes site {}", site["name"])
            }
        };
        let context = format!("seed {seed}, step {step}: {what}");
        for host in [
            "api.hosting.test",
            "panel.ops.test",
            "localhost",
            "127.0.0.1",
        ] {
            let r = app
                .client
                .get(app.url("/api/v1/reseller"))
                .header("host", host)
                .bearer_auth(&resellers[0].key)
                .send()
                .await
                .unwrap();
            let r = crate::helpers::reply(r).await;
            assert_eq!(r.status, 200, "{context}: {host} answered {}", r.text);
            assert_eq!(r.body["id"], resellers[0].id.as_str(), "{context}: {host}");
            let root = visit(&app, Method::GET, host, "/", &[]).await;
            assert!(
                !root.text.starts_with("site "),
                "{context}: {host} served {}",
                root.text
            );
        }
        for (host, (marker, _)) in served_names(&app, &keys).await {
            if host == "api.hosting.test" || host == "panel.ops.test" {
                panic!("{context}: the instance name {host} is a tenant's");
            }
            assert_eq!(edge_text(&app, &host).await, marker, "{context}: {host}");
        }
    }
}
