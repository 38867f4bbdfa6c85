//! Test harness: `TestApp::spawn()` starts the real binary on 127.0.0.1:0 with a fresh data dir
//! and reads the bound ports from its first stdout line; builders create resellers and users.

#![allow(dead_code)] // a shared toolbox: not every test module uses every helper

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct TestApp {
    pub http: String,
    pub https_port: u16,
    pub data_dir: PathBuf,
    pub operator: String,
    pub client: reqwest::Client,
    child: Child,
    extra_args: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

/// A reply: status, headers and the body parsed as JSON (Null when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// Asserts the status, printing the body when it differs.
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// Asserts an error reply of API.md's shape with this status and machine code.
    pub fn expect_error(self, status: u16, code: &str) -> Self {
        let r = self.expect(status);
        assert_eq!(r.body["code"], status, "body: {}", r.text);
        assert_eq!(r.body["error"], code, "body: {}", r.text);
        assert!(
            r.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "body: {}",
            r.text
        );
        r
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_resellerd")
}

fn start(data_dir: &Path, extra: &[String]) -> (Child, String, u16) {
    start_configured(data_dir, extra, |cmd| {
        cmd.env("RUST_LOG", "warn").stderr(Stdio::inherit());
        // For the servers a test points at its S3 server (`--blob-store`); moto takes any.
        cmd.env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing");
    })
}

/// Starts `serve` on `data_dir` with `extra` flags; `configure` may change the command (its
/// environment, where stderr goes) before it runs. Returns the child, the HTTP base URL and the
/// HTTPS port.
pub fn start_configured(
    data_dir: &Path,
    extra: &[String],
    configure: impl FnOnce(&mut Command),
) -> (Child, String, u16) {
    let mut cmd = serve_command(data_dir);
    cmd.args(["--workers", "2"])
        .args(extra)
        // Load tests would trip the default API rate limits; the rate limit tests set their own
        // with flags, which win over these.
        .env("RESELLERD_RATE_LIMIT_IP", "0")
        .env("RESELLERD_RATE_LIMIT_CREDENTIAL", "0")
        // A test machine's disk may be nearly full; the full-disk tests set their own reserve.
        .env("RESELLERD_DISK_RESERVE", "0")
        // Lets a test move the server's clock (`TestApp::advance_clock`; debug builds only).
        .env("RESELLERD_TEST_CLOCK", "1")
        .stdout(Stdio::piped());
    configure(&mut cmd);
    let mut child = cmd.spawn().expect("start resellerd");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the listening line");
    assert!(
        line.starts_with("resellerd listening"),
        "unexpected first line: {line:?}"
    );
    let http = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http="))
        .expect("http=")
        .to_string();
    let https = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("https="))
        .expect("https=");
    let https_port = https
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("https port");
    (child, http, https_port)
}

/// Runs `sql` with psql against `url`; returns what it printed (a failure fails the test).
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-qtAc", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The PostgreSQL server the suite runs on (`scripts/test` starts one for its second run), if any.
fn postgres_url() -> Option<String> {
    std::env::var("RESELLERD_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// The embedded database of a stopped server's data dir `dir`, on the engine it was made with,
/// for a test to edit it as an older resellerd would have left it.
pub fn open_embedded(dir: &Path) -> resellerd::kv::Db {
    use resellerd::store::Engine;
    Engine::open(dir, 8 << 20, Engine::Redb).unwrap().0
}

/// True when this run keeps the records in PostgreSQL: tests of the embedded database's own
/// files (its backup, compaction, format upgrades) do not apply there.
pub fn on_postgres() -> bool {
    postgres_url().is_some()
}

/// On PostgreSQL, the database of the server on `data_dir`: one per data dir, made on first
/// use, so a restart on the same dir finds its records and another test never does.
pub fn database_for(data_dir: &Path) -> Option<String> {
    let admin = postgres_url()?;
    let name = database_name(data_dir);
    if psql(
        &admin,
        &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
    ) != "1"
    {
        let made = Command::new("psql")
            .arg(&admin)
            .args(["-v", "ON_ERROR_STOP=1", "-qc"])
            .arg(format!("CREATE DATABASE {name}"))
            .output()
            .expect("run psql");
        let err = String::from_utf8_lossy(&made.stderr);
        assert!(
            made.status.success() || err.contains("already exists"),
            "psql: {err}"
        );
    }
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    Some(format!("{base}/{name}"))
}

/// The name of the database `database_for` makes for `data_dir`.
fn database_name(data_dir: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    format!("t_{}", hex::encode(&digest[..10]))
}

/// On PostgreSQL, drops the database of `data_dir` once its test is done with the dir: each is
/// a copy of the template (about 8 MB, and as much again in WAL), and a whole run made hundreds.
fn drop_database_for(data_dir: &Path) {
    if let Some(admin) = postgres_url() {
        let name = database_name(data_dir);
        let _ = Command::new("psql")
            .arg(&admin)
            .args(["-qc"])
            .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .output();
    }
}

/// Runs `serve` on `data_dir` where it is expected to exit at once (e.g. a refused data dir),
/// and returns what it printed.
pub fn serve_expecting_exit(data_dir: &Path) -> std::process::Output {
    serve_expecting_exit_with(data_dir, &[])
}

/// `serve_expecting_exit` with extra flags.
pub fn serve_expecting_exit_with(data_dir: &Path, extra: &[&str]) -> std::process::Output {
    serve_command(data_dir)
        .args(extra)
        .output()
        .expect("run resellerd serve")
}

/// `serve` on `data_dir` with ports the system picks, on the run's PostgreSQL if it has one.
fn serve_command(data_dir: &Path) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args([
        "serve",
        "--http-addr",
        "127.0.0.1:0",
        "--https-addr",
        "127.0.0.1:0",
    ])
    .arg("--data-dir")
    .arg(data_dir);
    if let Some(url) = database_for(data_dir) {
        cmd.env("RESELLERD_DATABASE_URL", url);
    }
    // The PostgreSQL run keeps site files in an S3 bucket too (scripts/test starts the server);
    // a test's own `--blob-store` wins.
    if let Ok(bucket) = std::env::var("RESELLERD_TEST_BLOB_STORE") {
        cmd.env("RESELLERD_BLOB_STORE", bucket)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing");
    }
    cmd
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[]).await
    }

    /// Starts with extra `serve` flags.
    pub async fn spawn_with(extra: &[&str]) -> TestApp {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("data");
        let mut app = Self::start_in(&dir, extra.iter().map(|s| s.to_string()).collect());
        app._tmp = Some(tmp);
        app
    }

    /// Starts on `dir` (e.g. on a filesystem a test mounted) with extra `serve` flags.
    pub fn spawn_in(dir: &Path, extra: &[&str]) -> TestApp {
        Self::start_in(dir, extra.iter().map(|s| s.to_string()).collect())
    }

    /// Starts on `dir` with extra flags, after `configure` has changed the command (its
    /// environment, say).
    pub fn spawn_configured(
        dir: &Path,
        extra: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> TestApp {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, http, https_port) = start_configured(dir, &extra, |cmd| {
            cmd.env("RUST_LOG", "warn").stderr(Stdio::inherit());
            configure(cmd);
        });
        Self::with_child(dir, extra, child, http, https_port)
    }

    /// The server's exit status, if it has exited.
    pub fn exit_code(&mut self) -> Option<i32> {
        self.child
            .try_wait()
            .ok()
            .flatten()
            .map(|s| s.code().unwrap_or(-1))
    }

    /// Starts on an existing data dir (e.g. a restored backup) whose operator token is known.
    pub fn spawn_on(dir: &Path, operator: &str) -> TestApp {
        let mut app = Self::start_in(dir, Vec::new());
        app.operator = operator.to_string();
        app
    }

    fn start_in(dir: &Path, extra_args: Vec<String>) -> TestApp {
        let (child, http, https_port) = start(dir, &extra_args);
        Self::with_child(dir, extra_args, child, http, https_port)
    }

    fn with_child(
        dir: &Path,
        extra_args: Vec<String>,
        child: Child,
        http: String,
        https_port: u16,
    ) -> TestApp {
        let operator = std::fs::read_to_string(dir.join("operator-token"))
            .unwrap_or_default()
            .trim()
            .to_string();
        TestApp {
            http,
            https_port,
            data_dir: dir.to_path_buf(),
            operator,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                // Shorter than the server's keep-alive (5 s): a test that blocks its runtime (making
                // a large zip on a busy machine) cannot reuse a connection the server has closed
                // meanwhile, which it has had no chance to notice (a broken pipe on the next send).
                .pool_idle_timeout(std::time::Duration::from_secs(3))
                .build()
                .expect("client"),
            child,
            extra_args,
            _tmp: None,
        }
    }

    /// `GET /metrics` with the operator token, as text.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .bearer_auth(&self.operator)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Moves the server's clock forward (it starts at the real time again after a restart).
    pub async fn advance_clock(&self, secs: i64) {
        self.post(
            "/__test/clock",
            &self.operator,
            json!({"advance_secs": secs}),
        )
        .await
        .expect(200);
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILLs the server (no chance to flush) and waits for it to die.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server as a service manager does (SIGTERM) and waits until the process has
    /// exited, its stop checkpoint included; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        self.child.wait().ok().and_then(|s| s.code())
    }

    /// Kills the server and starts a new one on the same data dir.
    pub async fn restart(mut self) -> TestApp {
        self.kill9();
        let tmp = self._tmp.take();
        let mut next = Self::start_in(&self.data_dir, self.extra_args.clone());
        next._tmp = tmp;
        next
    }

    /// The port of the HTTP listener.
    pub fn http_port(&self) -> u16 {
        self.http
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("http port")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.http, path)
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        reply(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Creates a reseller through the operator API and returns it with its first key.
    pub async fn reseller(&self, name: &str) -> Reseller {
        let email = format!("ops@{}.test", name.to_lowercase().replace(' ', "-"));
        let r = self
            .post(
                "/api/v1/admin/resellers",
                &self.operator,
                json!({"name": name, "email": email}),
            )
            .await
            .expect(201);
        Reseller {
            id: r.body["reseller"]["id"].as_str().expect("id").to_string(),
            key: r.body["key"]["key"].as_str().expect("key").to_string(),
            key_id: r.body["key"]["id"].as_str().expect("key id").to_string(),
        }
    }
}

impl TestApp {
    /// Gives a reseller a preview domain at once, as the operator does (a reseller's own request
    /// waits for DNS: `settings.rs` tests that).
    pub async fn set_preview_domain(&self, reseller: &Reseller, domain: &str) {
        self.patch(
            &format!("/api/v1/admin/resellers/{}", reseller.id),
            &self.operator,
            json!({"preview_domain": domain}),
        )
        .await
        .expect(200);
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A data dir this app made goes with it, and so does its database.
        if self._tmp.is_some() {
            drop_database_for(&self.data_dir);
        }
    }
}

/// The host of `host[:port]`.
pub fn host_of(authority: &str) -> &str {
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

pub async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

pub struct Reseller {
    pub id: String,
    pub key: String,
    pub key_id: String,
}

pub struct AccessToken {
    pub id: String,
    pub token: String,
    pub user_id: String,
}

impl Reseller {
    /// A new API key of this reseller with these permissions; returns the secret.
    pub async fn key_with(&self, app: &TestApp, permissions: Value) -> String {
        let r = app
            .post(
                "/api/v1/keys",
                &self.key,
                json!({"name": "limited", "permissions": permissions}),
            )
            .await;
        r.expect(201).body["key"].as_str().expect("key").to_string()
    }

    /// `POST /access_tokens` for this email: creates the user if new.
    pub async fn access_token(&self, app: &TestApp, email: &str) -> AccessToken {
        let r = app
            .post(
                "/api/v1/access_tokens",
                &self.key,
                json!({"user": {"email": email}}),
            )
            .await
            .expect(201);
        AccessToken {
            id: r.body["id"].as_str().expect("id").to_string(),
            token: r.body["access_token"].as_str().expect("token").to_string(),
            user_id: r.body["user_id"].as_str().expect("user id").to_string(),
        }
    }
}

/// Concurrent `POST /access_tokens` writers with unique emails, for durability tests. Each
/// acknowledged (201, body read) write is recorded as (email, access token); a writer stops
/// when `stop` is set or the server goes away.
pub struct TokenLoad {
    pub acked: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

impl TokenLoad {
    pub fn start(app: &TestApp, key: &str, writers: usize) -> TokenLoad {
        use std::sync::atomic::Ordering;
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers = (0..writers)
            .map(|w| {
                let (client, url, key, acked, stop) = (
                    app.client.clone(),
                    app.url("/api/v1/access_tokens"),
                    key.to_string(),
                    acked.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let email = format!("w{w}-{i}@load.test");
                        i += 1;
                        let sent = client
                            .post(&url)
                            .bearer_auth(&key)
                            .json(&json!({"user": {"email": email}}))
                            .send()
                            .await;
                        match sent {
                            Ok(r) if r.status() == 201 => {
                                let body: Value = match r.json().await {
                                    Ok(b) => b,
                                    Err(_) => break, // killed while the body was in flight: not acknowledged
                                };
                                let token = body["access_token"].as_str().unwrap().to_string();
                                acked.lock().unwrap().push((email, token));
                            }
                            Ok(r) => panic!("unexpected status {}", r.status()),
                            Err(_) => break, // the server is gone
                        }
                    }
                })
            })
            .collect();
        TokenLoad {
            acked,
            stop,
            writers,
        }
    }

    /// Waits until at least `n` writes are acknowledged (what a test needs, rather than a time
    /// and a rate); fails after a minute.
    pub async fn until_acked(&self, n: usize) {
        let began = std::time::Instant::now();
        while self.acked.lock().unwrap().len() < n {
            assert!(
                began.elapsed() < std::time::Duration::from_secs(60),
                "only {} of {n} writes acknowledged",
                self.acked.lock().unwrap().len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// The writes acknowledged so far.
    pub fn acked(&self) -> Vec<(String, String)> {
        self.acked.lock().unwrap().clone()
    }

    /// Stops the writers and returns every acknowledged write.
    pub async fn stop(self) -> Vec<(String, String)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in self.writers {
            w.await.unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        acked
    }
}

/// Every user email of a reseller, read page by page.
pub async fn all_emails(app: &TestApp, key: &str) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    for page in 1.. {
        let path = format!("/api/v1/users?per_page=100&page={page}");
        let r = app.get(&path, key).await.expect(200);
        let users = r.body.as_array().expect("a list").clone();
        if users.is_empty() {
            break;
        }
        out.extend(
            users
                .iter()
                .map(|u| u["email"].as_str().unwrap().to_string()),
        );
    }
    out
}

/// Bytes that do not compress (xorshift).
pub fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}
