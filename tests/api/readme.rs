//! The README works as written: its shell blocks (first steps, deploying a site, client domains,
//! operating it) are read from README.md and run in order against the real binary in a fresh
//! directory, with only the port and the secrets each step printed filled in.

use crate::helpers::binary;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// The indented shell block after the heading `## {title}` (continuation lines joined).
fn block(readme: &str, title: &str) -> Vec<String> {
    let heading = format!("## {title}");
    let after = readme
        .split_once(&heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"))
        .1;
    let mut commands: Vec<String> = Vec::new();
    let mut started = false;
    let mut continued = false;
    for line in after.lines().skip(1) {
        match line.strip_prefix("    ") {
            Some(code) => {
                started = true;
                let code = code.trim();
                if continued {
                    if let Some(last) = commands.last_mut() {
                        last.push(' ');
                        last.push_str(code.trim_end_matches('\\').trim());
                    }
                } else if !code.starts_with('#') && !code.is_empty() {
                    commands.push(code.trim_end_matches('\\').trim().to_string());
                }
                continued = code.ends_with('\\');
            }
            None if started && !line.trim().is_empty() => break,
            None => {}
        }
    }
    commands
}

/// Runs one README line in `dir` with bash, the binary and the Netlify CLI on the PATH.
fn sh(dir: &Path, line: &str, env: &[(&str, &str)]) -> (bool, String) {
    let bin_dir = Path::new(binary()).parent().unwrap().to_path_buf();
    let netlify = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/node_modules/.bin");
    let path = format!(
        "{}:{}:{}",
        bin_dir.display(),
        netlify.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(line).current_dir(dir).env("PATH", path);
    cmd.env("NETLIFY_SITE_ID", "").env("HOME", dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run bash");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test]
async fn the_readme_works_as_written() {
    if crate::helpers::on_postgres() {
        return; // the README's commands are the embedded defaults' (backup, restore, compact)
    }
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // `cargo run --release -- serve`, as the binary the tests built, on a free port.
    let first = block(&readme, "First steps");
    assert_eq!(first[0], "cargo run --release -- serve");
    let mut server = Command::new(binary())
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--https-addr",
            "127.0.0.1:0",
        ])
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    let port = banner
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the banner names the port")
        .to_string();
    let secrets = std::cell::RefCell::new((String::new(), String::new()));
    let run = |line: &str| -> String {
        let (key, token) = secrets.borrow().clone();
        let line = line
            .replace("localhost:8080", &format!("localhost:{port}"))
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
            .replace("sk_org_…", &key)
            .replace("rt_…", &token);
        let op = std::fs::read_to_string(dir.join("data/operator-token")).unwrap_or_default();
        let (ok, out) = sh(dir, &line, &[("OP", op.trim())]);
        assert!(ok, "`{line}` failed:\n{out}");
        if let Ok(v) = serde_json::from_str::<Value>(&out) {
            assert!(v.get("error").is_none(), "`{line}` answered {out}");
            let mut got = secrets.borrow_mut();
            if let Some(k) = v["key"]["key"].as_str() {
                got.0 = k.to_string();
            }
            if let Some(t) = v["access_token"].as_str() {
                got.1 = t.to_string();
            }
        }
        out
    };
    for line in &first[1..] {
        if !line.starts_with("OP=") {
            run(line);
        }
    }
    {
        let (key, token) = &*secrets.borrow();
        assert!(key.starts_with("sk_org_") && token.starts_with("rt_"));
    }

    std::fs::create_dir(dir.join("public")).unwrap();
    std::fs::write(dir.join("public/index.html"), "<h1>my site</h1>").unwrap();
    let mut page = String::new();
    for line in block(&readme, "Deploying a site") {
        page = run(&line);
    }
    assert!(page.contains("<h1>my site</h1>"), "{page}");
    for line in block(&readme, "Client domains and certificates") {
        let out = run(&line);
        assert!(out.contains("resellerd-verification="), "{out}");
    }

    let operating = block(&readme, "Operating it");
    assert_eq!(operating.len(), 4, "{operating:?}");
    run(&operating[0]); // backup, while serve runs
    run(&operating[1]); // restore into data2
    assert!(dir.join("backup.tar").is_file() && dir.join("data2").is_dir());
    // doctor exits 1 when a check fails (this machine may have no DNS resolver): it must run
    // and print its checklist.
    let (_, report) = sh(dir, &operating[2], &[]);
    assert!(
        report.contains("database") && report.contains("ports"),
        "{report}"
    );
    Command::new("kill")
        .arg(server.id().to_string())
        .status()
        .unwrap();
    server.wait().unwrap();
    let out = run(&operating[3]); // compact, server stopped
    assert!(out.contains("compacted"), "{out}");
}
