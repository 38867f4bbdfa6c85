//! `resellerd doctor`: every check passes on a healthy deployment (with a real DNS server),
//! and each kind of problem is reported as FAIL with a non-zero exit.

use crate::helpers::{binary, TestApp};
use crate::pebble::ChallTestSrv;
use std::os::unix::fs::PermissionsExt;

fn doctor(dir: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(binary())
        .arg("doctor")
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .output()
        .expect("run doctor");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn line<'a>(report: &'a str, check: &str) -> &'a str {
    report
        .lines()
        .find(|l| l[6..].starts_with(check))
        .unwrap_or_else(|| panic!("no {check} line in:\n{report}"))
}

#[tokio::test]
async fn doctor_passes_a_healthy_deployment_and_names_each_problem() {
    if crate::helpers::on_postgres() {
        return; // doctor's checks of the embedded database (PostgreSQL's: `doctor_checks_postgresql`): nothing of it runs on PostgreSQL
    }
    let dns = ChallTestSrv::start();
    let dns_server = dns.dns_server();
    let mut app = TestApp::spawn().await;
    let (ok, report) = doctor(
        &app.data_dir,
        &["--dns-server", &dns_server, "--disk-reserve", "0"],
    );
    assert!(ok, "{report}");
    for check in [
        "data dir",
        "database",
        "ports",
        "certificate",
        "dns resolver",
        "clock",
    ] {
        assert!(line(&report, check).starts_with("ok"), "{report}");
    }
    assert!(
        line(&report, "database").contains("running server"),
        "{report}"
    );
    assert!(
        line(&report, "ports").contains("is listening on http://127.0.0.1:"),
        "{report}"
    );
    assert!(!line(&report, "ports").contains('{'), "{report}");
    assert!(
        line(&report, "certificate").contains("self-signed: browsers warn"),
        "{report}"
    );
    assert!(line(&report, "free space").contains("MiB free"), "{report}");
    assert!(!line(&report, "free space").starts_with("FAIL"), "{report}");
    assert!(
        line(&report, "memory").contains("page cache 64 MiB"),
        "{report}"
    );
    let (_, report) = doctor(
        &app.data_dir,
        &["--dns-server", &dns_server, "--cache-mb", "200"],
    );
    assert!(
        line(&report, "memory").contains("page cache 200 MiB"),
        "{report}"
    );
    assert!(
        line(&report, "builds").contains("bubblewrap makes sandboxes"),
        "{report}"
    );
    let (_, report) = doctor(&app.data_dir, &["--build-concurrency", "0"]);
    assert!(line(&report, "builds").contains("turned off"), "{report}");
    assert!(line(&report, "api host").starts_with("ok"), "{report}");
    // Listening publicly without --api-host: a warning that says what to set.
    let (_, report) = doctor(
        &app.data_dir,
        &["--dns-server", &dns_server, "--http-addr", "0.0.0.0:0"],
    );
    let api_host = line(&report, "api host");
    assert!(api_host.starts_with("warn"), "{report}");
    assert!(api_host.contains("set --api-host"), "{report}");

    // Stopped: the ports are probed by binding them; a port in use is a failure.
    app.kill9();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let common = ["--dns-server", &dns_server, "--https-addr", "127.0.0.1:0"];
    let (ok, report) = doctor(
        &app.data_dir,
        &[&common[..], &["--http-addr", &taken_addr]].concat(),
    );
    assert!(!ok, "{report}");
    assert!(line(&report, "ports").starts_with("FAIL"), "{report}");
    assert!(line(&report, "database").contains("no server"), "{report}");

    // A data dir anyone can write to.
    std::fs::set_permissions(&app.data_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (ok, report) = doctor(
        &app.data_dir,
        &[&common[..], &["--http-addr", "127.0.0.1:0"]].concat(),
    );
    assert!(!ok);
    assert!(line(&report, "data dir").starts_with("FAIL"), "{report}");
    std::fs::set_permissions(&app.data_dir, std::fs::Permissions::from_mode(0o700)).unwrap();

    // An expired certificate.
    let mut params = rcgen::CertificateParams::new(vec!["old.test".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (tmp.path().join("c.pem"), tmp.path().join("k.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let (ok, report) = doctor(
        &app.data_dir,
        &[
            &common[..],
            &[
                "--http-addr",
                "127.0.0.1:0",
                "--tls-cert",
                cert_path.to_str().unwrap(),
                "--tls-key",
                key_path.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    assert!(!ok);
    assert!(line(&report, "certificate").contains("expired"), "{report}");

    // A DNS server that does not answer.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let (ok, report) = doctor(
        &app.data_dir,
        &[
            "--dns-server",
            &silent_addr,
            "--http-addr",
            "127.0.0.1:0",
            "--https-addr",
            "127.0.0.1:0",
        ],
    );
    assert!(!ok);
    assert!(
        line(&report, "dns resolver").starts_with("FAIL"),
        "{report}"
    );
    assert!(line(&report, "data dir").starts_with("ok"), "{report}");
}

/// On PostgreSQL, doctor says whether the database answers and whether its schema is one this
/// build serves, without creating or changing anything.
#[tokio::test]
async fn doctor_checks_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let Some(url) = crate::helpers::database_for(&data) else {
        return; // the sled run: there is no PostgreSQL to check
    };
    let (_, report) = doctor(&data, &["--database-url", &url]);
    assert!(
        line(&report, "database").contains("no schema yet"),
        "{report}"
    );
    let mut app = TestApp::spawn_in(&data, &[]);
    app.get("/healthz", &app.operator).await.expect(200);
    let (_, report) = doctor(&data, &["--database-url", &url]);
    let db = line(&report, "database");
    assert!(db.starts_with("ok"), "{report}");
    assert!(db.contains("schema version 1"), "{report}");
    assert!(db.contains("1 node serving it, one leading"), "{report}");
    let second = TestApp::spawn_in(&dir.path().join("second"), &["--database-url", &url]);
    let (_, report) = doctor(&data, &["--database-url", &url]);
    assert!(
        line(&report, "database").contains("2 nodes serving it, one leading"),
        "{report}"
    );
    drop(second);
    app.kill9();
    // The database notices the killed servers' connections closing within moments.
    let mut report = String::new();
    for _ in 0..50 {
        report = doctor(&data, &["--database-url", &url]).1;
        if line(&report, "database").contains("no node serves it now") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        line(&report, "database").contains("no node serves it now"),
        "{report}"
    );
    // A server that does not answer is a failure, and says where.
    let closed = format!(
        "postgres://postgres@127.0.0.1:{}/x",
        crate::pebble::free_port()
    );
    let (ok, report) = doctor(&data, &["--database-url", &closed]);
    assert!(!ok);
    let db = line(&report, "database");
    assert!(
        db.starts_with("FAIL") && db.contains("cannot reach PostgreSQL"),
        "{report}"
    );
}

/// Data-dir mistakes say what is wrong and what to do: a file given as the data dir, a dir
/// this user may not write, and `operator-token` on a dir no server uses (which makes nothing).
#[test]
fn data_dir_mistakes_say_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(crate::helpers::binary())
            .args(args)
            .env_remove("RESELLERD_DATABASE_URL")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let (ok, said) = run(&[
        "serve",
        "--data-dir",
        file.to_str().unwrap(),
        "--http-addr",
        "127.0.0.1:0",
        "--https-addr",
        "127.0.0.1:0",
    ]);
    assert!(!ok);
    assert!(said.contains("is a file, not a directory"), "{said}");
    let typo = tmp.path().join("dta");
    let (ok, said) = run(&["operator-token", "--data-dir", typo.to_str().unwrap()]);
    assert!(!ok);
    assert!(said.contains("holds no resellerd data"), "{said}");
    assert!(!typo.exists(), "a mistyped data dir was made");
    // A port another process holds: named, with what to do.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let dir = tmp.path().join("data");
    let (ok, said) = run(&[
        "serve",
        "--data-dir",
        dir.to_str().unwrap(),
        "--http-addr",
        &port,
        "--https-addr",
        "127.0.0.1:0",
    ]);
    assert!(!ok);
    assert!(
        said.contains("another process is listening there") && said.contains("--http-addr"),
        "{said}"
    );
}
