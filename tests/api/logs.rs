//! Request logging: one JSON access line per answered request, and no secret in any line.

use crate::helpers::start_configured;
use std::process::Command;

#[tokio::test]
async fn one_access_line_per_request_and_no_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let log_path = tmp.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let json = ["--log-format".to_string(), "json".to_string()];
    let (mut child, http, _) = start_configured(&dir, &json, |cmd| {
        cmd.env("RUST_LOG", "info").stderr(log);
    });
    let operator = std::fs::read_to_string(dir.join("operator-token")).unwrap();
    let operator = operator.trim();
    let client = reqwest::Client::new();
    let post = |path: &str, bearer: &str, body: serde_json::Value| {
        let request = client
            .post(format!("{http}{path}"))
            .bearer_auth(bearer)
            .json(&body);
        async move {
            let reply = request.send().await.unwrap();
            reply.json::<serde_json::Value>().await.unwrap()
        }
    };
    let reseller = post(
        "/api/v1/admin/resellers",
        operator,
        serde_json::json!({"name": "Acme", "email": "ops@acme.test"}),
    )
    .await;
    let key = reseller["key"]["key"].as_str().unwrap().to_string();
    let key_id = reseller["key"]["id"].as_str().unwrap().to_string();
    let token = post(
        "/api/v1/access_tokens",
        &key,
        serde_json::json!({"user": {"email": "client@example.test"}}),
    )
    .await;
    let token = token["access_token"].as_str().unwrap().to_string();
    let get = |path: &str| client.get(format!("{http}{path}"));
    let basic = get("/api/v1/users?per_page=5").basic_auth(&key_id, Some(&key));
    let me = get("/api/v1/user").bearer_auth(&token);
    let missing = get("/api/v1/users/nobody").bearer_auth(&key);
    for (request, status) in [(basic, 200), (me, 200), (missing, 404)] {
        assert_eq!(request.send().await.unwrap().status(), status);
    }
    // SIGTERM: the logger writes out what it holds before the process exits.
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();

    let log = std::fs::read_to_string(&log_path).unwrap();
    for secret in [operator, key.as_str(), token.as_str()] {
        assert!(!log.contains(secret), "a secret reached the log:\n{log}");
    }
    let access: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("every line is JSON"))
        .filter(|l| l["target"] == "access")
        .collect();
    let seen: Vec<(String, String, u64)> = access
        .iter()
        .map(|l| {
            let f = &l["fields"];
            let ms = f["ms"].as_f64().unwrap();
            assert!(ms >= 0.0);
            assert_eq!(
                (ms * 1000.0).round() / 1000.0,
                ms,
                "timings are rounded: {ms}"
            );
            assert_eq!(f["client"], "127.0.0.1");
            assert!(f["bytes"].as_u64().is_some(), "the bytes sent: {l}");
            assert_eq!(f["host"], "127.0.0.1");
            assert_eq!(l["level"], "INFO");
            assert!(l["timestamp"].as_str().unwrap().ends_with('Z'));
            (
                f["method"].as_str().unwrap().to_string(),
                f["path"].as_str().unwrap().to_string(),
                f["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("POST", "/api/v1/admin/resellers", 201),
        ("POST", "/api/v1/access_tokens", 201),
        ("GET", "/api/v1/users", 200),
        ("GET", "/api/v1/user", 200),
        ("GET", "/api/v1/users/nobody", 404),
    ]
    .map(|(m, p, s)| (m.to_string(), p.to_string(), s));
    assert_eq!(seen, expected, "one line per request, in order");
    assert!(
        log.contains("stopped: every acknowledged write is on disk"),
        "{log}"
    );
    for chatter in [
        "Actix runtime found",
        "starting service",
        "shutting down idle worker",
    ] {
        assert!(!log.contains(chatter), "framework chatter at INFO:\n{log}");
    }
}

/// `--access-log PATH --access-log-format combined`: one line per request in a file of its own
/// (rotated daily, so named `PATH.YYYY-MM-DD`), in Apache's virtual-host combined format, with
/// the bytes the edge sent and what the client sent escaped.
#[tokio::test]
async fn access_lines_go_to_their_own_file_in_the_combined_format() {
    use crate::helpers::TestApp;
    use crate::sites::publish_site;
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("access").join("access.log");
    let mut app = TestApp::spawn_with(&[
        "--access-log",
        path.to_str().unwrap(),
        "--access-log-format",
        "combined",
    ])
    .await;
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    let page = b"<h1>hello</h1>";
    publish_site(&app, &ann.token, "logged", &[("index.html", page)]).await;
    let reply = app
        .client
        .get(app.url("/?utm=1"))
        .header("host", "logged.localhost")
        .header("user-agent", "probe\"\t10.0.0.1 - - [forged]")
        .header("referer", "https://ref.example/")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.bytes().await.unwrap().as_ref(), page);
    app.terminate();

    let files: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("access.log."), "{name}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let edge: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("logged.localhost:"))
        .collect();
    assert_eq!(edge.len(), 1, "one line for the page:\n{text}");
    let line = edge[0];
    assert!(
        line.contains(" 127.0.0.1 - - ["),
        "the client's address: {line}"
    );
    assert!(
        line.contains(&format!(
            "\"GET /?utm=1 HTTP/1.1\" 200 {} \"https://ref.example/\" \"probe\\\"\\x0910.0.0.1 - - [forged]\"",
            page.len()
        )),
        "request, status, bytes sent, referer and an escaped user agent: {line}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"POST /api/v1/sites HTTP/1.1\" 201 ")),
        "API calls are there too:\n{text}"
    );
    assert!(
        lines.iter().all(|l| !l.contains(&ann.token)),
        "no secret in the file"
    );
}

/// `--access-log off`: the server's log has no access line; a bad value is refused at start.
#[tokio::test]
async fn access_lines_can_be_turned_off_and_bad_settings_say_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let log_path = tmp.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let args = ["--log-format", "json", "--access-log", "off"].map(String::from);
    let (mut child, http, _) = start_configured(&dir, &args, |cmd| {
        cmd.env("RUST_LOG", "info").stderr(log);
    });
    let reply = reqwest::get(format!("{http}/healthz")).await.unwrap();
    assert_eq!(reply.status(), 200);
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("\"listening\""), "{text}");
    assert!(!text.contains("\"target\":\"access\""), "{text}");

    let refused = Command::new(crate::helpers::binary())
        .args(["serve", "--data-dir"])
        .arg(tmp.path().join("other"))
        .args(["--access-log-format", "combined"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("needs --access-log PATH"), "{said}");
}
