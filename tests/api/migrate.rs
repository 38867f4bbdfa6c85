//! `resellerd migrate`: an embedded instance's records copied into PostgreSQL, checked tree by
//! tree, safe to run again, and served from there with the same data dir. Runs in the
//! PostgreSQL pass of the suite (`scripts/test`).

use crate::helpers::{binary, AccessToken, Reseller, TestApp};

fn migrate(from: &std::path::Path, to: &str, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(binary())
        .arg("migrate")
        .arg("--from")
        .arg(from)
        .args(["--to", to])
        .args(extra)
        .output()
        .expect("run resellerd migrate")
}

/// A running embedded instance in `tmp`'s `data` (the empty flag wins over the suite's
/// environment) with a reseller and one user's token, and the URL of an empty PostgreSQL
/// database to migrate it to; None on the sled run, which has no PostgreSQL.
async fn embedded_instance(
    tmp: &std::path::Path,
) -> Option<(std::path::PathBuf, String, TestApp, Reseller, AccessToken)> {
    let dir = tmp.join("data");
    let url = crate::helpers::database_for(&tmp.join("target"))?;
    let app = TestApp::spawn_in(&dir, &["--database-url", ""]);
    let acme = app.reseller("Acme").await;
    let token = acme.access_token(&app, "ann@acme.test").await;
    Some((dir, url, app, acme, token))
}

#[tokio::test]
async fn an_embedded_instance_moves_to_postgresql_and_serves_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((dir, url, mut app, acme, token)) = embedded_instance(tmp.path()).await else {
        return; // the sled run: there is no PostgreSQL to migrate to
    };
    for i in 0..30 {
        acme.access_token(&app, &format!("user{i}@acme.test")).await;
    }

    // While it runs, its data dir is refused: the copy must be of one snapshot.
    let out = migrate(&dir, &url, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by a running server"), "{err}");

    app.terminate();
    let out = migrate(&dir, &url, &[]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("count and digest match"), "{said}");
    // Again (an interrupted run is finished the same way): nothing doubles.
    let again = migrate(&dir, &url, &[]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).lines().next(),
        said.lines().next(),
        "the same records the second time"
    );

    // The same data dir served from PostgreSQL: the key, the token and the users are there.
    let app = TestApp::spawn_in(&dir, &["--database-url", &url]);
    app.get("/api/v1/reseller", &acme.key).await.expect(200);
    let me = app.get("/api/v1/user", &token.token).await.expect(200);
    assert_eq!(me.body["email"], "ann@acme.test");
    let users = app
        .get("/api/v1/users?per_page=100", &acme.key)
        .await
        .expect(200);
    assert_eq!(users.header("x-total-count"), Some("31"));
    // New writes land in PostgreSQL.
    acme.access_token(&app, "after@acme.test").await;

    // Another instance's records are not poured over these without --replace, and not at all
    // while a server runs on them.
    let other_dir = tmp.path().join("other");
    let mut other = TestApp::spawn_in(&other_dir, &["--database-url", ""]);
    other.reseller("Other").await;
    other.terminate();
    let out = migrate(&other_dir, &url, &["--replace"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("servers are running"), "{err}");
    app.get("/api/v1/reseller", &acme.key).await.expect(200);
    drop(app);
    // (The database notices the killed server's connections closing within moments.)
    let mut out = migrate(&other_dir, &url, &[]);
    for _ in 0..50 {
        if !String::from_utf8_lossy(&out.stderr).contains("servers are running") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        out = migrate(&other_dir, &url, &[]);
    }
    let out = migrate(&other_dir, &url, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already holds records"), "{err}");
}

/// A migrate killed at any point of its copy can simply be run again: the next run finishes
/// it (the count and digest of every tree match), the source data dir still opens and serves,
/// and the records serve from PostgreSQL.
#[tokio::test]
async fn a_migrate_killed_at_any_point_finishes_when_run_again() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((dir, url, mut app, acme, token)) = embedded_instance(tmp.path()).await else {
        return; // the sled run: there is no PostgreSQL to migrate to
    };
    app.terminate();
    // Enough records that the copy takes a while, so the kills land inside it.
    {
        let db = crate::helpers::open_embedded(&dir);
        let filler = db.open_tree("migrate_filler").unwrap();
        let mut batch = resellerd::kv::Batch::default();
        for i in 0..60_000u32 {
            batch.insert(i.to_be_bytes().to_vec(), vec![7u8; 100]);
        }
        filler.apply_batch(batch).unwrap();
        db.flush().unwrap();
    }
    for wait_ms in [40u64, 150, 400, 900] {
        let mut child = std::process::Command::new(binary())
            .arg("migrate")
            .arg("--from")
            .arg(&dir)
            .args(["--to", &url])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run resellerd migrate");
        tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("migrate killed after {wait_ms} ms (finished before: {finished})");
    }
    let out = migrate(&dir, &url, &[]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("count and digest match"), "{said}");
    let records: u64 = said
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    assert!(records > 60_000, "{said}");

    let mut source = TestApp::spawn_in(&dir, &["--database-url", ""]);
    source.get("/api/v1/user", &token.token).await.expect(200);
    source.terminate();
    let target = TestApp::spawn_in(&dir, &["--database-url", &url]);
    target.get("/api/v1/user", &token.token).await.expect(200);
    target.get("/api/v1/reseller", &acme.key).await.expect(200);
}
