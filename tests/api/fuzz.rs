//! Fuzzing: schemathesis (PyPI, pinned, installed by the test command into
//! `target/schemathesis`) generates requests for every operation of `/api/v1/openapi.json` and
//! sends them with a reseller key to the running server: no 5xx anywhere, and every response
//! matches the schema the document gives for its status.

use crate::helpers::TestApp;
use serde_json::json;
use std::path::PathBuf;

fn schemathesis() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/schemathesis/bin/st")
}

#[tokio::test]
async fn schemathesis_finds_no_server_errors_and_no_schema_violations() {
    let st = schemathesis();
    assert!(
        st.exists(),
        "{} is missing: ./scripts/test installs schemathesis",
        st.display()
    );
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    // Something for the generated requests to find: a user with a site.
    let ann = acme.access_token(&app, "ann@acme.test").await;
    app.post("/api/v1/sites", &ann.token, json!({"name": "fuzzed"}))
        .await
        .expect(201);
    let report = tempfile::tempdir().unwrap();
    let (url, key) = (app.url("/api/v1/openapi.json"), acme.key.clone());
    let base = app.http.clone();
    let report_dir = report.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(st)
            .args(["run", &url, "--url", &base])
            .args(["--checks", "not_a_server_error,response_schema_conformance"])
            .args(["--max-examples", "25", "--workers", "2", "--seed", "1"])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--suppress-health-check", "all", "--no-color"])
            .arg("-H")
            .arg(format!("Authorization: Bearer {key}"))
            .env("SCHEMATHESIS_HOOKS", "")
            .current_dir(&report_dir)
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    // Not vacuous: every operation of the document was exercised.
    let count = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.trim().split('/').next()?.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no {label:?} in the report:\n{text}"))
    };
    let (selected, tested) = (count("Selected:"), count("Tested:"));
    assert!(selected >= 60 && tested == selected, "{text}");
    // The server is still healthy after the storm.
    app.get("/api/v1/reseller", &acme.key).await.expect(200);
}
