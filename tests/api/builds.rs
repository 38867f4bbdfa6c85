//! Builds from git against real parts on loopback: a git server (`git http-backend` behind a
//! small HTTP server that wants a token), real `git`, real `npm`, bubblewrap.

use crate::edge::get as visit;
use crate::helpers::TestApp;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "git-token-7f3a9c1e55";

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t.test"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A repository `root/site.git` (bare) with `files` on branch main.
fn repo(root: &Path, files: &[(&str, &str)]) -> PathBuf {
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    commit(&work, files);
    let bare = root.join("site.git");
    git(root, &["clone", "-q", "--bare", "work", "site.git"]);
    bare
}

fn commit(work: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let p = work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", "change"]);
}

/// Serves `git http-backend` for the repositories under `root` on loopback; a request without
/// `Authorization: Basic base64(x:TOKEN)` gets 401. Returns the port.
fn git_server(root: PathBuf) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || {
                let _ = serve_git(conn, &root);
            });
        }
    });
    port
}

fn serve_git(conn: std::net::TcpStream, root: &Path) -> std::io::Result<()> {
    use base64::Engine;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end().to_string();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{TOKEN}"))
    );
    if header("authorization").as_deref() != Some(want.as_str()) {
        out.write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    }
    let mut body = Vec::new();
    if let Some(len) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut child = Command::new("git")
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REQUEST_METHOD", &method)
        .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
        .env("CONTENT_LENGTH", body.len().to_string())
        .env(
            "HTTP_CONTENT_ENCODING",
            header("content-encoding").unwrap_or_default(),
        )
        .env("GIT_PROTOCOL", header("git-protocol").unwrap_or_default())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    child.stdin.take().unwrap().write_all(&body)?;
    let mut cgi = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut cgi)?;
    child.wait()?;
    let split = cgi
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| cgi.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)))
        .unwrap_or((0, 0));
    let head = String::from_utf8_lossy(&cgi[..split.0]).into_owned();
    let content = &cgi[split.0 + split.1..];
    let mut status = "200 OK".to_string();
    let mut resp = String::new();
    for l in head.lines() {
        if let Some(s) = l.strip_prefix("Status:") {
            status = s.trim().to_string();
        } else if !l.is_empty() {
            resp.push_str(l);
            resp.push_str("\r\n");
        }
    }
    out.write_all(
        format!(
            "HTTP/1.1 {status}\r\n{resp}Content-Length: {}\r\nConnection: close\r\n\r\n",
            content.len()
        )
        .as_bytes(),
    )?;
    out.write_all(content)?;
    Ok(())
}

/// A repository with `files` on branch main behind the token-protected git server: its
/// directory (keep it as long as the test) and its URL with the token.
fn served_repo(files: &[(&str, &str)]) -> (tempfile::TempDir, String) {
    let tmp = tempfile::tempdir().unwrap();
    repo(tmp.path(), files);
    let port = git_server(tmp.path().to_path_buf());
    let url = format!("http://x-access-token:{TOKEN}@127.0.0.1:{port}/site.git");
    (tmp, url)
}

/// A reseller's user with a site linked to `url`; returns (token, site id, PATCH answer, the
/// reseller's key).
async fn linked_site(app: &TestApp, name: &str, repo: Value) -> (String, String, Value, String) {
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(app, &format!("{name}@acme.test")).await;
    let site = app
        .post("/api/v1/sites", &ann.token, json!({"name": name}))
        .await
        .expect(201);
    let id = site.body["id"].as_str().unwrap().to_string();
    let linked = app
        .patch(
            &format!("/api/v1/sites/{id}"),
            &ann.token,
            json!({"repo": repo}),
        )
        .await
        .expect(200);
    (ann.token, id, linked.body, acme.key)
}

/// Waits for a build to end; returns it.
async fn finished(app: &TestApp, token: &str, build_id: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..600 {
        let b = app
            .get(&format!("/api/v1/builds/{build_id}"), token)
            .await
            .expect(200);
        if b.body["done"] == json!(true) {
            return b.body;
        }
        last = b.body;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = match last["deploy_id"].as_str() {
        Some(d) => log_text(app, token, d).await,
        None => String::new(),
    };
    panic!("the build did not finish: {last}\n{log}");
}
async fn log_text(app: &TestApp, token: &str, deploy_id: &str) -> String {
    let log = app
        .get(&format!("/api/v1/deploys/{deploy_id}/log"), token)
        .await
        .expect(200);
    log.body
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            format!(
                "[{}] {}\n",
                l["section"].as_str().unwrap(),
                l["message"].as_str().unwrap()
            )
        })
        .collect()
}

fn sandbox_works() -> bool {
    Command::new("bwrap")
        .args([
            "--unshare-all",
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/bin",
            "/bin",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
            "--",
            "/bin/true",
        ])
        .status()
        .is_ok_and(|s| s.success())
}

/// A server whose builds run in a directory of the test's (searchable by the builds' own users);
/// keep the second value as long as the server.
async fn app_with_builds(extra: &[&str]) -> (TestApp, tempfile::TempDir) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let build_dir = dir.path().join("builds");
    let mut args = vec![
        "--allow-private-targets",
        "--build-dir",
        build_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    (TestApp::spawn_with(&args).await, dir)
}

#[tokio::test]
async fn a_linked_repository_builds_in_the_sandbox_and_is_served() {
    assert!(
        sandbox_works(),
        "bubblewrap must work here (scripts/test installs it)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let package = r#"{"name":"s","version":"1.0.0","private":true,"scripts":{"build":"mkdir -p dist && node -e \"require('fs').writeFileSync('dist/index.html', '<h1>built ' + process.env.BRANCH + ' ' + process.env.GREETING + '</h1>')\" && echo the secret is $API_SECRET && echo $API_SECRET | base64"}}"#;
    repo(
        tmp.path(),
        &[("package.json", package), ("README.md", "hi")],
    );
    let port = git_server(tmp.path().to_path_buf());
    let url = format!("http://x-access-token:{TOKEN}@127.0.0.1:{port}/site.git");
    let (app, _builds) = app_with_builds(&[]).await;
    let (token, site, linked, key) = linked_site(
        &app,
        "built",
        json!({"provider": "manual", "repo_url": url, "repo_branch": "main", "cmd": "npm run build", "dir": "dist"}),
    )
    .await;
    // The token in the URL is never shown again.
    assert!(!linked.to_string().contains(TOKEN), "{linked}");
    assert_eq!(linked["build_settings"]["repo_branch"], "main");
    assert!(linked["deploy_hook"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/git_hooks/{site}")));
    assert!(linked["deploy_hook_secret"].as_str().unwrap().len() >= 32);
    let again = app
        .get(&format!("/api/v1/sites/{site}"), &token)
        .await
        .expect(200);
    assert!(again.body.get("deploy_hook_secret").is_none());
    // An environment variable for the account, and a secret one.
    let account = again.body["account_id"].as_str().unwrap().to_string();
    app.post(
        &format!("/api/v1/accounts/{account}/env?site_id={site}"),
        &token,
        json!([
            {"key": "GREETING", "scopes": ["builds"], "values": [{"value": "hello", "context": "all"}]},
            {"key": "API_SECRET", "is_secret": true, "values": [{"value": "sup3r-s3cret-value", "context": "all"}]},
        ]),
    )
    .await
    .expect(201);

    let build = app
        .post(&format!("/api/v1/sites/{site}/builds"), &token, json!({}))
        .await
        .expect(200);
    let done = finished(&app, &token, build.body["id"].as_str().unwrap()).await;
    let deploy_id = done["deploy_id"].as_str().unwrap().to_string();
    let log = log_text(&app, &token, &deploy_id).await;
    assert_eq!(done["state"], "done", "{done}\n{log}");
    assert!(done["sha"].as_str().unwrap().len() == 40);
    assert!(log.contains("[building] $ npm run build"), "{log}");
    assert!(!log.contains("sup3r-s3cret-value"), "{log}");
    assert!(!log.contains("c3VwM3ItczNjcmV0LXZhbHVl"), "{log}");
    assert!(log.contains("the secret is ****"), "{log}");
    assert!(!log.contains(TOKEN), "{log}");
    let deploy = app
        .get(&format!("/api/v1/deploys/{deploy_id}"), &token)
        .await
        .expect(200);
    assert_eq!(deploy.body["state"], "ready", "{}", deploy.body);
    let page = visit(&app, "built.localhost", "/").await.expect(200);
    assert_eq!(page.text, "<h1>built main hello</h1>");
    // The log as server-sent events, resumed after line 2, ends with `done`.
    let events = app
        .client
        .get(app.url(&format!("/api/v1/deploys/{deploy_id}/log")))
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .header("last-event-id", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let text = events.text().await.unwrap();
    assert!(text.starts_with("id: 3\nevent: log\ndata: {"), "{text}");
    assert!(text.trim_end().ends_with("event: done\ndata: {}"), "{text}");
    assert!(!text.contains("sup3r-s3cret-value"), "{text}");
    // The usage counts the builds' seconds.
    let usage = app.get("/api/v1/usage", &key).await.expect(200);
    let row = usage
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["site_id"] == site.as_str())
        .unwrap()
        .clone();
    assert!(row["build_seconds"].as_u64().unwrap() >= 1, "{row}");

    // A push signed as GitHub signs it builds the new commit; a mis-signed one queues nothing.
    let secret = linked["deploy_hook_secret"].as_str().unwrap().to_string();
    commit(
        &tmp.path().join("work"),
        &[("package.json", &package.replace("built '", "rebuilt '"))],
    );
    git(
        &tmp.path().join("work"),
        &[
            "push",
            "-q",
            tmp.path().join("site.git").to_str().unwrap(),
            "main",
        ],
    );
    let hook = linked["deploy_hook"].as_str().unwrap().to_string();
    let body =
        json!({"ref": "refs/heads/main", "after": "1111111111111111111111111111111111111111"})
            .to_string();
    let sign = |key: &str| {
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
        hex::encode(ring::hmac::sign(&k, body.as_bytes()).as_ref())
    };
    let client = reqwest::Client::new();
    let send = |headers: Vec<(&'static str, String)>| {
        let mut req = client.post(&hook).body(body.clone());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    for bad in [
        vec![],
        vec![("X-Hub-Signature-256", format!("sha256={}", sign("wrong")))],
        vec![("X-Gitea-Signature", sign("wrong"))],
        vec![("X-Gitlab-Token", "wrong".to_string())],
    ] {
        let r = send(bad).await.unwrap();
        assert_eq!(r.status(), 401);
    }
    let builds = app
        .get(&format!("/api/v1/sites/{site}/builds"), &token)
        .await
        .expect(200);
    assert_eq!(
        builds.body.as_array().unwrap().len(),
        1,
        "mis-signed pushes queued nothing"
    );
    // A push to a branch the site does not build is acknowledged and ignored.
    let other = json!({"ref": "refs/heads/feature"}).to_string();
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let r = client
        .post(&hook)
        .header(
            "X-Hub-Signature-256",
            format!(
                "sha256={}",
                hex::encode(ring::hmac::sign(&k, other.as_bytes()).as_ref())
            ),
        )
        .header("X-GitHub-Event", "push")
        .body(other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = send(vec![
        ("X-Hub-Signature-256", format!("sha256={}", sign(&secret))),
        ("X-GitHub-Event", "push".into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let pushed: Value = r.json().await.unwrap();
    let done = finished(&app, &token, pushed["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "done", "{done}");
    let page = visit(&app, "built.localhost", "/").await.expect(200);
    assert_eq!(page.text, "<h1>rebuilt main hello</h1>");
    // An allowed branch other than the site's builds a branch deploy: kept, not published,
    // with CONTEXT=branch-deploy.
    app.patch(
        &format!("/api/v1/sites/{site}"),
        &token,
        json!({"repo": {"allowed_branches": ["preview"]}}),
    )
    .await
    .expect(200);
    let work = tmp.path().join("work");
    git(&work, &["checkout", "-q", "-b", "preview"]);
    commit(
        &work,
        &[(
            "package.json",
            &package.replace("built '", "' + process.env.CONTEXT + ' '"),
        )],
    );
    git(
        &work,
        &[
            "push",
            "-q",
            tmp.path().join("site.git").to_str().unwrap(),
            "preview",
        ],
    );
    let b = app
        .post(
            &format!("/api/v1/sites/{site}/builds?branch=preview"),
            &token,
            json!({}),
        )
        .await
        .expect(200);
    let done = finished(&app, &token, b.body["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "done", "{done}");
    let deploy = app
        .get(
            &format!("/api/v1/deploys/{}", done["deploy_id"].as_str().unwrap()),
            &token,
        )
        .await
        .expect(200);
    assert_eq!(deploy.body["state"], "ready");
    assert_eq!(deploy.body["branch"], "preview");
    assert!(deploy.body["published_at"].is_null(), "{}", deploy.body);
    let page = visit(&app, "built.localhost", "/").await.expect(200);
    assert_eq!(
        page.text, "<h1>rebuilt main hello</h1>",
        "production still serves main"
    );
    let preview = format!("{}--built.localhost", done["deploy_id"].as_str().unwrap());
    let page = visit(&app, &preview, "/").await.expect(200);
    assert_eq!(page.text, "<h1>branch-deploy preview hello</h1>");
    // GitLab's token and Gitea's signature are accepted too.
    for headers in [
        vec![
            ("X-Gitlab-Token", secret.clone()),
            ("X-Gitlab-Event", "Push Hook".to_string()),
        ],
        vec![
            ("X-Gitea-Signature", sign(&secret)),
            ("X-Gitea-Event", "push".to_string()),
        ],
    ] {
        let r = send(headers).await.unwrap();
        assert_eq!(r.status(), 200);
        let b: Value = r.json().await.unwrap();
        assert!(b["id"].is_string(), "{b}");
    }
}

/// Points the site's repository at a new build command, builds, and returns the ended build
/// and its log.
async fn build_with(app: &TestApp, token: &str, site: &str, cmd: &str) -> (Value, String) {
    app.patch(
        &format!("/api/v1/sites/{site}"),
        token,
        json!({"repo": {"cmd": cmd}}),
    )
    .await
    .expect(200);
    let b = app
        .post(&format!("/api/v1/sites/{site}/builds"), token, json!({}))
        .await
        .expect(200);
    let done = finished(app, token, b.body["id"].as_str().unwrap()).await;
    let log = log_text(app, token, done["deploy_id"].as_str().unwrap()).await;
    (done, log)
}

/// Processes whose command line contains `marker`, but for the test itself.
fn processes_with(marker: &str) -> usize {
    let out = Command::new("pgrep").args(["-f", marker]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[tokio::test]
async fn hostile_builds_each_fail_alone_and_the_server_keeps_serving() {
    let (_repo, url) = served_repo(&[("index.html", "<h1>static</h1>")]);
    let (app, _builds) = app_with_builds(&[
        "--build-timeout",
        "8",
        "--build-memory-mb",
        "256",
        "--build-processes",
        "64",
        "--build-disk-mb",
        "64",
    ])
    .await;
    let (token, site, _, _) = linked_site(&app, "hostile", json!({"repo_url": url})).await;
    let api_port = app.http_port();

    // Each hostile build fails with its reason, and leaves no process behind (the markers are
    // in their command lines).
    let hostile: [(&str, &[&str]); 4] = [
        // An endless loop is killed at the time limit, every process of it.
        ("sh -c 'while :; do :; done' # endless-7x", &["time limit"]),
        // A fork bomb meets the process limit (its shell may give up first), or the time limit.
        (
            "bomb() { bomb | bomb & }; bomb; sleep 30 # forkbomb-7x",
            &["time limit", "exited with status"],
        ),
        // A memory hog dies alone.
        (
            "node -e 'const a=[]; for(;;) a.push(Buffer.alloc(1<<20, 1))' # hog-7x",
            &["exited with status"],
        ),
        // A disk filler is stopped at the disk limit.
        (
            "for i in $(seq 200); do head -c 1000000 /dev/zero > f$i; done; sleep 30 # filler-7x",
            &["MiB of disk"],
        ),
    ];
    for (cmd, reasons) in hostile {
        let (b, log) = build_with(&app, &token, &site, cmd).await;
        assert_eq!(b["state"], "error", "{cmd}\n{log}");
        let error = b["error"].as_str().unwrap();
        assert!(
            reasons.iter().any(|r| error.contains(r)),
            "{cmd}: {b}\n{log}"
        );
        let marker = cmd.rsplit("# ").next().unwrap().replace("-7x", "-7[x]");
        assert_eq!(processes_with(&marker), 0, "{cmd} left processes");
    }

    // The network reaches neither the host's loopback (the API) nor the metadata address,
    // directly or through the build's proxy.
    let cmd = format!(
        "echo direct=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 --noproxy '*' http://127.0.0.1:{api_port}/api/v1/ || true); \
         echo proxied=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 -x $HTTP_PROXY http://127.0.0.1:{api_port}/api/v1/ || true); \
         echo metadata=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 -x $HTTP_PROXY http://169.254.169.254/latest/meta-data/ || true); \
         echo tunnel=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 -x $HTTP_PROXY https://10.0.0.1/ || true)"
    );
    let (b, log) = build_with(&app, &token, &site, &cmd).await;
    assert_eq!(b["state"], "done", "{log}");
    assert!(log.contains("direct=000"), "{log}");
    assert!(log.contains("proxied=403"), "{log}");
    assert!(log.contains("metadata=403"), "{log}");
    assert!(!log.contains("tunnel=200"), "{log}");
    assert!(
        log.contains("Network: refused a connection to 169.254.169.254:80"),
        "{log}"
    );

    // The server kept serving through all of it, and the last build's site is live.
    app.get("/api/v1/sites", &token).await.expect(200);
    let page = visit(&app, "hostile.localhost", "/").await.expect(200);
    assert_eq!(page.text, "<h1>static</h1>");
}

#[tokio::test]
async fn a_build_interrupted_by_kill_9_runs_again_once_and_the_queue_stays_consistent() {
    let (_repo, url) = served_repo(&[("index.html", "<h1>static</h1>")]);
    let (app, _builds) = app_with_builds(&["--build-timeout", "6"]).await;
    let (token, site, _, _) = linked_site(
        &app,
        "interrupted",
        json!({"repo_url": url, "cmd": "sleep 30 # interrupted-7x"}),
    )
    .await;
    let b = app
        .post(&format!("/api/v1/sites/{site}/builds"), &token, json!({}))
        .await
        .expect(200);
    let id = b.body["id"].as_str().unwrap().to_string();
    // Killed once the command runs (its log line stored, its sandbox started).
    let deploy_id = b.body["deploy_id"].as_str().unwrap().to_string();
    let mut running = false;
    for _ in 0..200 {
        let log = log_text(&app, &token, &deploy_id).await;
        if log.contains("$ sleep 30") && processes_with("interrupted-7[x]") > 0 {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(running, "the build never started");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let app = app.restart().await;
    // The sandbox died with the server.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let done = finished(&app, &token, &id).await;
    let log = log_text(&app, &token, done["deploy_id"].as_str().unwrap()).await;
    assert!(
        log.contains("(attempt 1)") && log.contains("(attempt 2)"),
        "{log}"
    );
    assert_eq!(done["state"], "error", "{log}");
    let builds = app
        .get(&format!("/api/v1/sites/{site}/builds"), &token)
        .await
        .expect(200);
    assert_eq!(builds.body.as_array().unwrap().len(), 1, "{}", builds.body);
    assert_eq!(processes_with("interrupted-7[x]"), 0);
}

/// The files of `tests/fixtures/npm-site`: a build that runs `npm ci` (one small pinned
/// dependency from the registry, through the build's proxy) and `npm run build`.
fn npm_site() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/npm-site");
    ["package.json", "package-lock.json", "build.js"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read_to_string(dir.join(f)).unwrap()))
        .collect()
}

#[tokio::test]
async fn npm_ci_reaches_the_registry_through_the_proxy_and_the_cache_warms_the_next_build() {
    let tmp = tempfile::tempdir().unwrap();
    let files = npm_site();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    repo(tmp.path(), &files);
    let port = git_server(tmp.path().to_path_buf());
    let url = format!("http://x-access-token:{TOKEN}@127.0.0.1:{port}/site.git");
    let (app, builds) = app_with_builds(&[]).await;
    let (token, site, _, _) = linked_site(
        &app,
        "npm-site",
        json!({"repo_url": url, "cmd": "npm ci && npm run build", "dir": "dist"}),
    )
    .await;
    let started = std::time::Instant::now();
    let build = |clear: bool| {
        let (app, token, site) = (&app, &token, &site);
        async move {
            let b = app
                .post(
                    &format!("/api/v1/sites/{site}/builds?clear_cache={clear}"),
                    token,
                    json!({}),
                )
                .await
                .expect(200);
            let done = finished(app, token, b.body["id"].as_str().unwrap()).await;
            let log = log_text(app, token, done["deploy_id"].as_str().unwrap()).await;
            (done, log)
        }
    };
    let (cold, log) = build(false).await;
    let cold_time = started.elapsed();
    assert_eq!(cold["state"], "done", "{log}");
    assert!(log.contains("added 1 package"), "{log}");
    assert!(log.contains("Saved node_modules"), "{log}");
    let page = visit(&app, "npm-site.localhost", "/").await.expect(200);
    assert_eq!(page.text, "<h1>is-number says true</h1>");
    // The same lockfile: the next build starts from the cached node_modules.
    let started = std::time::Instant::now();
    let (warm, log) = build(false).await;
    let warm_time = started.elapsed();
    assert_eq!(warm["state"], "done", "{log}");
    assert!(
        log.contains("Restored node_modules from the cache"),
        "{log}"
    );
    eprintln!("npm build: cold {cold_time:?}, warm {warm_time:?}");
    let cache = builds.path().join("builds/cache").join(&site);
    assert!(cache.join("node_modules/is-number").is_dir());
    // clear_cache=true starts from nothing.
    let (cleared, log) = build(true).await;
    assert_eq!(cleared["state"], "done", "{log}");
    assert!(log.contains("Clearing the site's build cache"), "{log}");
    assert!(!log.contains("Restored node_modules"), "{log}");
    // The site's caches go with it.
    app.delete(&format!("/api/v1/sites/{site}"), &token)
        .await
        .expect(204);
    assert!(
        !cache.exists(),
        "the deleted site's build cache is still there"
    );
}

#[tokio::test]
async fn netlify_cli_triggers_a_build_and_watches_it_finish() {
    let (_repo, url) = served_repo(&[("index.html", "<h1>triggered</h1>")]);
    let (app, _builds) = app_with_builds(&[]).await;
    let (token, site, _, _) = linked_site(
        &app,
        "cli-built",
        json!({"repo_url": url, "cmd": "sleep 2"}),
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let netlify = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(crate::netlify::netlify_bin());
        cmd.args(args)
            .current_dir(work.path())
            .env("HOME", &home)
            .env("NETLIFY_API_URL", &app.http)
            .env("NETLIFY_AUTH_TOKEN", &token)
            .env("NETLIFY_SITE_ID", &site)
            .env("CI", "true")
            .env("NO_UPDATE_NOTIFIER", "1");
        cmd
    };
    let out = netlify(&["deploy", "--trigger", "--json", "--site", "cli-built"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let triggered: Value = serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{stdout}"));
    let deploy_id = triggered["deploy_id"].as_str().unwrap().to_string();
    let out = netlify(&["watch"]).output().await.unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // watch returned once the build was done.
    let deploy = app
        .get(&format!("/api/v1/deploys/{deploy_id}"), &token)
        .await
        .expect(200);
    assert_eq!(deploy.body["state"], "ready", "{}", deploy.body);
    let page = visit(&app, "cli-built.localhost", "/").await.expect(200);
    assert_eq!(page.text, "<h1>triggered</h1>");
}

#[tokio::test]
async fn a_plans_build_minutes_and_a_suspension_stop_builds() {
    let (_repo, url) = served_repo(&[("index.html", "<h1>static</h1>")]);
    let (app, _builds) = app_with_builds(&[]).await;
    let (token, site, linked, key) =
        linked_site(&app, "limited", json!({"repo_url": url, "cmd": "true"})).await;
    let user = linked["user_id"].as_str().unwrap().to_string();
    // One build runs; then a plan of 0 build minutes refuses the next with quota_exceeded.
    let b = app
        .post(&format!("/api/v1/sites/{site}/builds"), &token, json!({}))
        .await
        .expect(200);
    let done = finished(&app, &token, b.body["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "done", "{done}");
    let plan = app
        .post(
            "/api/v1/plans",
            &key,
            json!({"name": "No builds", "max_build_minutes_month": 0}),
        )
        .await
        .expect(201);
    assert_eq!(plan.body["max_build_minutes_month"], 0, "{}", plan.body);
    app.patch(
        &format!("/api/v1/users/{user}"),
        &key,
        json!({"plan_id": plan.body["id"]}),
    )
    .await
    .expect(200);
    let b = app
        .post(&format!("/api/v1/sites/{site}/builds"), &token, json!({}))
        .await
        .expect(200);
    let done = finished(&app, &token, b.body["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "error", "{done}");
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .starts_with("quota_exceeded"),
        "{done}"
    );
    let deploy = app
        .get(
            &format!("/api/v1/deploys/{}", done["deploy_id"].as_str().unwrap()),
            &token,
        )
        .await
        .expect(200);
    assert!(deploy.body["error_message"]
        .as_str()
        .unwrap()
        .contains("quota_exceeded"));
    // Unlimited again; a suspended owner's pushes do not build.
    app.patch(
        &format!("/api/v1/plans/{}", plan.body["id"].as_str().unwrap()),
        &key,
        json!({"max_build_minutes_month": null}),
    )
    .await
    .expect(200);
    let hook = app
        .post(
            &format!("/api/v1/sites/{site}/build_hooks"),
            &token,
            json!({"title": "cms"}),
        )
        .await
        .expect(201);
    app.post(
        &format!("/api/v1/users/{user}/suspend"),
        &key,
        json!({"reason": "unpaid"}),
    )
    .await
    .expect(200);
    let r = app
        .client
        .post(hook.body["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    let done = finished(&app, &key, b["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "error", "{done}");
    assert!(
        done["error"].as_str().unwrap().contains("suspended"),
        "{done}"
    );
}

/// The operations of `netlify init --manual` and of builds, hooks, deploy keys and environment
/// variables, called by their operationIds through the pinned `@netlify/api`.
const API_SCRIPT: &str = r#"
import { NetlifyAPI } from '@netlify/api';
const api = new NetlifyAPI(process.env.TOK, { scheme: 'http', host: '127.0.0.1:' + process.env.PORT });
const siteId = process.env.SITE, accountId = process.env.ACCOUNT;
const out = {};
// What `netlify init --manual` does: a deploy key, then the repo, then it prints deploy_hook.
const key = await api.createDeployKey();
out.key = key;
const site = await api.updateSite({ siteId, body: { repo: {
  provider: 'manual', repo_path: process.env.REPO, repo_branch: 'main', allowed_branches: ['main'],
  deploy_key_id: key.id, base: '', dir: '', functions_dir: 'netlify/functions', cmd: 'true' },
  plugins: [] } });
out.deploy_hook = site.deploy_hook;
out.build_settings = site.build_settings;
out.keys = (await api.listDeployKeys()).map((k) => k.id);
out.got_key = (await api.getDeployKey({ keyId: key.id })).public_key;
const hook = await api.createSiteBuildHook({ siteId, body: { title: 'cms', branch: 'main' } });
out.hooks = (await api.listSiteBuildHooks({ siteId })).length;
await api.updateSiteBuildHook({ siteId, id: hook.id, body: { title: 'renamed' } });
out.hook = await api.getSiteBuildHook({ siteId, id: hook.id });
await api.deleteSiteBuildHook({ siteId, id: hook.id });
out.vars = await api.createEnvVars({ accountId, siteId, body: [{ key: 'TOKEN', is_secret: true, values: [{ value: 's3cret-api-value', context: 'all' }] }] });
await api.setEnvVarValue({ accountId, siteId, key: 'TOKEN', body: { context: 'production', value: 'prod-value' } });
const got = await api.getEnvVar({ accountId, siteId, key: 'TOKEN' });
out.env = got;
await api.deleteEnvVarValue({ accountId, siteId, key: 'TOKEN', id: got.values.find((v) => v.context === 'production').id });
out.env_after = await api.getEnvVars({ accountId, siteId });
await api.updateEnvVar({ accountId, siteId, key: 'TOKEN', body: { key: 'TOKEN', values: [{ value: 'plain', context: 'all' }] } });
out.env_plain = await api.getEnvVar({ accountId, siteId, key: 'TOKEN' });
await api.deleteEnvVar({ accountId, siteId, key: 'TOKEN' });
const build = await api.createSiteBuild({ siteId });
out.build = build;
out.builds = (await api.listSiteBuilds({ siteId })).map((b) => b.id);
out.got_build = (await api.getSiteBuild({ buildId: build.id })).deploy_id;
out.unlinked = (await api.unlinkSiteRepo({ siteId })).build_settings;
await api.deleteDeployKey({ keyId: key.id });
try { await api.getDeployKey({ keyId: key.id }); out.after_delete = 'found'; } catch (e) { out.after_delete = e.status; }
console.log(JSON.stringify(out));
"#;

#[tokio::test]
async fn netlify_api_client_links_builds_and_keeps_variables() {
    crate::netlify::netlify_bin();
    let (app, _builds) = app_with_builds(&[]).await;
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    let site = app
        .post("/api/v1/sites", &ann.token, json!({"name": "api-built"}))
        .await
        .expect(201);
    let out = tokio::process::Command::new("node")
        .args(["--input-type=module", "-e", API_SCRIPT])
        .current_dir(crate::netlify::compat_dir())
        .env("TOK", &ann.token)
        .env("PORT", app.http_port().to_string())
        .env("SITE", site.body["id"].as_str().unwrap())
        .env("ACCOUNT", &ann.user_id)
        .env("REPO", "ssh://git@127.0.0.1:9/acme/site.git")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("{stdout}"));
    assert!(
        v["key"]["public_key"]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519 "),
        "{v}"
    );
    assert!(v["key"].get("private_key").is_none());
    assert!(
        v["deploy_hook"]
            .as_str()
            .unwrap()
            .contains("/api/v1/git_hooks/"),
        "{v}"
    );
    assert_eq!(
        v["build_settings"]["repo_path"],
        "ssh://git@127.0.0.1:9/acme/site.git"
    );
    assert_eq!(v["build_settings"]["provider"], "manual");
    assert_eq!(v["keys"].as_array().unwrap().len(), 1);
    assert_eq!(v["got_key"], v["key"]["public_key"]);
    assert_eq!(v["hooks"], 1);
    assert_eq!(v["hook"]["title"], "renamed");
    assert!(v["hook"]["url"]
        .as_str()
        .unwrap()
        .contains("/api/v1/build_hooks/"));
    // A secret's values are never shown.
    assert!(
        !stdout.contains("s3cret-api-value") && !stdout.contains("prod-value"),
        "{stdout}"
    );
    assert_eq!(v["env"]["values"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(
        v["env_after"][0]["values"].as_array().unwrap().len(),
        1,
        "{v}"
    );
    assert_eq!(v["env_plain"]["values"][0]["value"], "plain", "{v}");
    assert_eq!(v["builds"].as_array().unwrap().len(), 1);
    assert_eq!(v["got_build"], v["build"]["deploy_id"]);
    assert_eq!(v["unlinked"], json!({}));
    assert_eq!(v["after_delete"], 404);
}

/// An `sshd` for one test, stopped when dropped.
struct Sshd(std::process::Child);

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sshd` on a loopback port with `authorized` as the only key it accepts (for this
/// test's user); returns the port and the process.
fn sshd(dir: &Path, authorized: &str) -> (u16, Sshd) {
    let host_key = dir.join("host_key");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&host_key)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(dir.join("authorized_keys"), format!("{authorized}\n")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\nStrictModes no\nPidFile none\n",
            host_key.display(),
            dir.join("authorized_keys").display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let child = Sshd(
        Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start sshd (Debian package openssh-server)"),
    );
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (port, child);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("sshd did not start");
}

#[tokio::test]
async fn an_ssh_repository_is_cloned_with_the_sites_deploy_key() {
    let tmp = tempfile::tempdir().unwrap();
    let bare = repo(tmp.path(), &[("index.html", "<h1>over ssh</h1>")]);
    let (app, _builds) = app_with_builds(&[]).await;
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    let key = app
        .post("/api/v1/deploy_keys", &ann.token, json!({}))
        .await
        .expect(201);
    let (port, server) = sshd(tmp.path(), key.body["public_key"].as_str().unwrap());
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let url = format!("ssh://{user}@127.0.0.1:{port}{}", bare.display());
    let site = app
        .post("/api/v1/sites", &ann.token, json!({"name": "over-ssh"}))
        .await
        .expect(201);
    let id = site.body["id"].as_str().unwrap();
    // An SSH repository without a key is refused before anything changes.
    app.patch(
        &format!("/api/v1/sites/{id}"),
        &ann.token,
        json!({"repo": {"repo_url": url}}),
    )
    .await
    .expect_error(400, "invalid_request");
    app.patch(
        &format!("/api/v1/sites/{id}"),
        &ann.token,
        json!({"repo": {"repo_url": url, "deploy_key_id": key.body["id"]}}),
    )
    .await
    .expect(200);
    let b = app
        .post(&format!("/api/v1/sites/{id}/builds"), &ann.token, json!({}))
        .await
        .expect(200);
    let done = finished(&app, &ann.token, b.body["id"].as_str().unwrap()).await;
    let log = log_text(&app, &ann.token, done["deploy_id"].as_str().unwrap()).await;
    drop(server);
    assert_eq!(done["state"], "done", "{log}");
    let page = visit(&app, "over-ssh.localhost", "/").await.expect(200);
    assert_eq!(page.text, "<h1>over ssh</h1>");
}

#[tokio::test]
async fn netlify_cli_builds_locally_with_the_sites_build_settings_and_variables() {
    let (app, _builds) = app_with_builds(&[]).await;
    let (token, site, linked, _) = linked_site(
        &app,
        "local-built",
        json!({"repo_url": "https://git.example.com/acme/site.git",
               "cmd": "mkdir -p out && echo \"<h1>local $GREETING</h1>\" > out/index.html",
               "dir": "out"}),
    )
    .await;
    let account = linked["account_slug"].as_str().unwrap().to_string();
    app.post(
        &format!("/api/v1/accounts/{account}/env?site_id={site}"),
        &token,
        json!([{"key": "GREETING", "values": [{"value": "from the env API", "context": "all"}]}]),
    )
    .await
    .expect(201);
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = tokio::process::Command::new(crate::netlify::netlify_bin())
        .args([
            "deploy",
            "--build",
            "--prod",
            "--json",
            "--site",
            "local-built",
        ])
        .current_dir(work.path())
        .env("HOME", &home)
        .env("NETLIFY_API_URL", &app.http)
        .env("NETLIFY_AUTH_TOKEN", &token)
        .env("CI", "true")
        .env("NO_UPDATE_NOTIFIER", "1")
        .env_remove("NETLIFY_SITE_ID")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = visit(&app, "local-built.localhost", "/").await.expect(200);
    assert_eq!(page.text.trim(), "<h1>local from the env API</h1>");
}
