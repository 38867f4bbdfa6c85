//! Compatibility with the real Netlify clients pinned in `tests/compat` (installed by
//! `scripts/test`): `netlify deploy` and `@netlify/api` against resellerd, then the edge.

use crate::helpers::{reply, Reply, TestApp};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

pub(crate) fn compat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat")
}

pub(crate) fn netlify_bin() -> PathBuf {
    let bin = compat_dir().join("node_modules/.bin/netlify");
    assert!(
        bin.exists(),
        "netlify-cli is not installed: run scripts/test (it runs npm ci in tests/compat)"
    );
    bin
}

/// Runs `netlify deploy --prod` of `dir` to `site` and returns its `--json` output.
async fn cli_deploy(app: &TestApp, token: &str, work: &Path, dir: &Path, site: &str) -> Value {
    let home = work.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = tokio::process::Command::new(netlify_bin())
        .args([
            "deploy",
            "--no-build",
            "--prod",
            "--json",
            "--site",
            site,
            "--dir",
        ])
        .arg(dir)
        .current_dir(work)
        .env("HOME", &home)
        .env("NETLIFY_API_URL", &app.http)
        .env("NETLIFY_AUTH_TOKEN", token)
        .env("CI", "true")
        .env("NO_UPDATE_NOTIFIER", "1")
        .env_remove("NETLIFY_SITE_ID")
        .output()
        .await
        .expect("run netlify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "netlify deploy failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("not JSON: {stdout}"))
}

async fn edge(app: &TestApp, host: &str, path: &str) -> Reply {
    let r = app
        .client
        .get(app.url(path))
        .header("host", host)
        .send()
        .await
        .unwrap();
    reply(r).await
}

fn write(dir: &Path, path: &str, content: &str) {
    let p = dir.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

#[tokio::test]
async fn netlify_cli_deploys_and_redeploys_without_uploading_again() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    app.post("/api/v1/sites", &ann.token, json!({"name": "cli-site"}))
        .await
        .expect(201);
    let work = tempfile::tempdir().unwrap();
    let site_dir = work.path().join("public");
    write(&site_dir, "index.html", "<h1>from the cli</h1>");
    write(&site_dir, "about.html", "<p>about</p>");
    write(&site_dir, "docs/a b.txt", "spaced name");
    write(&site_dir, "docs/copy.txt", "spaced name");
    write(&site_dir, "404.html", "cli 404");
    write(&site_dir, "_redirects", "/old /about 301\n");
    write(&site_dir, "_headers", "/*\n  X-Deployed-By: cli\n");

    let first = cli_deploy(&app, &ann.token, work.path(), &site_dir, "cli-site").await;
    assert_eq!(first["site_name"], "cli-site");
    let first_id = first["deploy_id"].as_str().unwrap();
    let d1 = app
        .get(&format!("/api/v1/deploys/{first_id}"), &ann.token)
        .await
        .expect(200);
    assert_eq!(d1.body["state"], "ready");
    assert_eq!(d1.body["draft"], false);
    // index, about, the shared text (once), 404 and the generated netlify.toml.
    assert_eq!(
        d1.body["required"].as_array().unwrap().len(),
        5,
        "{}",
        d1.text
    );

    let host = "cli-site.localhost";
    let home = edge(&app, host, "/").await.expect(200);
    assert_eq!(home.text, "<h1>from the cli</h1>");
    assert_eq!(home.header("x-deployed-by"), Some("cli"));
    assert_eq!(
        edge(&app, host, "/about").await.expect(200).text,
        "<p>about</p>"
    );
    assert_eq!(
        edge(&app, host, "/docs/a%20b.txt").await.expect(200).text,
        "spaced name"
    );
    assert_eq!(
        edge(&app, host, "/old")
            .await
            .expect(301)
            .header("location"),
        Some("/about")
    );
    assert_eq!(
        edge(&app, host, "/missing").await.expect(404).text,
        "cli 404"
    );
    edge(&app, host, "/netlify.toml").await.expect(404);

    // Unchanged redeploy: nothing required, nothing uploaded, new deploy published.
    let second = cli_deploy(&app, &ann.token, work.path(), &site_dir, "cli-site").await;
    let second_id = second["deploy_id"].as_str().unwrap();
    assert_ne!(second_id, first_id);
    let d2 = app
        .get(&format!("/api/v1/deploys/{second_id}"), &ann.token)
        .await
        .expect(200);
    assert_eq!(d2.body["required"], json!([]));
    assert_eq!(d2.body["state"], "ready");
    let site = app
        .get("/api/v1/sites/cli-site", &ann.token)
        .await
        .expect(200);
    assert_eq!(site.body["published_deploy"]["id"], second_id);

    // A changed file is the only one uploaded.
    write(&site_dir, "about.html", "<p>about v2</p>");
    let third = cli_deploy(&app, &ann.token, work.path(), &site_dir, "cli-site").await;
    let d3 = app
        .get(
            &format!("/api/v1/deploys/{}", third["deploy_id"].as_str().unwrap()),
            &ann.token,
        )
        .await
        .expect(200);
    assert_eq!(d3.body["required"].as_array().unwrap().len(), 1);
    assert_eq!(
        edge(&app, host, "/about").await.expect(200).text,
        "<p>about v2</p>"
    );
}

const API_SCRIPT: &str = r#"
import { NetlifyAPI } from '@netlify/api';
import { createHash } from 'node:crypto';
const api = new NetlifyAPI(process.env.TOK, { scheme: 'http', host: '127.0.0.1:' + process.env.PORT });
const out = {};
const site = await api.createSite({ body: { name: 'api-site' } });
out.site = site;
out.sites = (await api.listSites({ filter: 'all' })).map((s) => s.name);
out.by_name = (await api.getSite({ siteId: 'api-site' })).id;
const body = Buffer.from('<h1>via @netlify/api</h1>');
const sha = createHash('sha1').update(body).digest('hex');
const deploy = await api.createSiteDeploy({ siteId: site.id, body: { files: { '/index.html': sha } } });
out.required = deploy.required;
out.upload = await api.uploadDeployFile({ deployId: deploy.id, path: 'index.html', body });
out.deploy = await api.getSiteDeploy({ siteId: site.id, deployId: deploy.id });
out.deploys = await api.listSiteDeploys({ siteId: site.id });
out.user = await api.getCurrentUser();
out.accounts = await api.listAccountsForUser();
const extra = await api.createSite({ body: {} });
out.deleted = await api.deleteSite({ siteId: extra.id });
try {
  await api.getSite({ siteId: extra.id });
  out.after_delete = 'found';
} catch (e) {
  out.after_delete = e.status;
}
console.log(JSON.stringify(out));
"#;

#[tokio::test]
async fn netlify_api_client_creates_lists_and_deploys() {
    let app = TestApp::spawn().await;
    netlify_bin();
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    let out = tokio::process::Command::new("node")
        .args(["--input-type=module", "-e", API_SCRIPT])
        .current_dir(compat_dir())
        .env("TOK", &ann.token)
        .env("PORT", app.http_port().to_string())
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("{stdout}"));
    assert_eq!(v["site"]["name"], "api-site");
    assert_eq!(v["site"]["user_id"], ann.user_id.as_str());
    assert!(v["sites"].as_array().unwrap().contains(&json!("api-site")));
    assert_eq!(v["by_name"], v["site"]["id"]);
    assert_eq!(v["required"].as_array().unwrap().len(), 1);
    assert_eq!(v["upload"]["path"], "/index.html");
    assert_eq!(v["deploy"]["state"], "ready");
    assert_eq!(v["deploys"].as_array().unwrap().len(), 1);
    assert_eq!(v["user"]["email"], "ann@acme.test");
    assert_eq!(v["accounts"][0]["slug"], ann.user_id.as_str());
    assert_eq!(v["deleted"], "");
    assert_eq!(v["after_delete"], 404);

    let page = app
        .client
        .get(app.url("/"))
        .header("host", "api-site.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(page.text().await.unwrap(), "<h1>via @netlify/api</h1>");
}
