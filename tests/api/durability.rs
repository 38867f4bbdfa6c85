//! Persistence and durability: restarts keep everything, a kill -9 under load loses no
//! acknowledged write, one data dir serves one process, HTTPS works with the self-signed
//! certificate, and the operator token rotates while the server runs.

use crate::helpers::{all_emails, binary, serve_expecting_exit, TestApp, TokenLoad};

#[tokio::test]
async fn everything_survives_a_restart() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let user = acme.access_token(&app, "client@example.test").await;
    app.set_preview_domain(&acme, "sites.acme.test").await;
    let op = app.operator.clone();
    let app = app.restart().await;
    assert_eq!(app.operator, op, "the operator token is kept");
    assert_eq!(
        app.get("/api/v1/reseller", &acme.key)
            .await
            .expect(200)
            .body["preview_domain"],
        "sites.acme.test"
    );
    assert_eq!(
        app.get("/api/v1/user", &user.token).await.expect(200).body["id"],
        user.user_id.as_str()
    );
    assert_eq!(
        app.get("/api/v1/admin/resellers", &app.operator)
            .await
            .expect(200)
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn kill_9_under_concurrent_writes_loses_no_acknowledged_write() {
    let mut app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let load = TokenLoad::start(&app, &acme.key, 16);
    load.until_acked(200).await;
    app.kill9();
    let acked = load.stop().await;
    assert!(
        acked.len() > 50,
        "the load produced only {} writes",
        acked.len()
    );

    let app = app.restart().await;
    let stored = all_emails(&app, &acme.key).await;
    for (email, _) in &acked {
        assert!(stored.contains(email), "acknowledged user {email} lost");
    }
    // Tokens too: the most recent ones were acknowledged closest to the kill.
    for (_, token) in acked.iter().rev().take(100) {
        app.get("/api/v1/user", token).await.expect(200);
    }
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_exits_with_a_clear_message() {
    let app = TestApp::spawn().await;
    let out = serve_expecting_exit(&app.data_dir);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another resellerd process"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    app.get("/healthz", &app.operator).await.expect(200);
}

#[tokio::test]
async fn https_serves_the_api_with_the_self_signed_certificate() {
    let app = TestApp::spawn().await;
    let pem = std::fs::read(app.data_dir.join("tls/self-signed.crt")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], app.https_port).into())
        .build()
        .unwrap();
    let url = format!(
        "https://localhost:{}/api/v1/admin/resellers",
        app.https_port
    );
    let r = client
        .get(&url)
        .bearer_auth(&app.operator)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "[]");
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn the_operator_token_rotates_while_the_server_runs() {
    let app = TestApp::spawn().await;
    app.get("/api/v1/admin/resellers", &app.operator)
        .await
        .expect(200);
    let out = std::process::Command::new(binary())
        .args(["operator-token", "--data-dir"])
        .arg(&app.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let new = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(new.starts_with("op_"));
    app.get("/api/v1/admin/resellers", &app.operator)
        .await
        .expect_error(401, "unauthorized");
    app.get("/api/v1/admin/resellers", &new).await.expect(200);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(app.data_dir.join("operator-token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn a_write_acknowledged_just_before_a_kill_9_survives() {
    // A quiet server buffers writes in memory for up to half a second unless the request
    // flushes; killing right after each acknowledgement catches a missing flush.
    let mut app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    for round in 0..3 {
        let email = format!("round{round}@kill.test");
        let token = acme.access_token(&app, &email).await;
        app.kill9();
        app = app.restart().await;
        let found = app
            .get(&format!("/api/v1/users?email={email}"), &acme.key)
            .await
            .expect(200);
        assert_eq!(
            found.body.as_array().unwrap().len(),
            1,
            "user of round {round} lost"
        );
        app.get("/api/v1/user", &token.token).await.expect(200);
    }
}

/// The newest sled snapshot of a data dir: its log position (the hex file name suffix), 0 if
/// there is none yet.
fn snapshot_position(data_dir: &std::path::Path) -> u64 {
    std::fs::read_dir(data_dir.join("db"))
        .expect("db dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            u64::from_str_radix(name.strip_prefix("snap.")?, 16).ok()
        })
        .max()
        .unwrap_or(0)
}

/// A stop (SIGTERM) leaves the database checkpointed: the recovery snapshot is brought up to
/// the end of the log, so the next start reads it instead of replaying what was written since
/// the last start; the data is all there after it.
#[tokio::test]
async fn a_stop_checkpoints_the_database_and_a_start_after_it_keeps_everything() {
    if crate::helpers::on_postgres() {
        return; // the checkpoint is the embedded database's: nothing of it runs on PostgreSQL
    }
    // sled's: redb needs no checkpoint (its open reads two pages at any size).
    let mut app = TestApp::spawn_with(&["--store-engine", "sled"]).await;
    let acme = app.reseller("Acme").await;
    let mut tokens = Vec::new();
    for i in 0..20 {
        tokens.push(
            acme.access_token(&app, &format!("user{i}@example.test"))
                .await,
        );
    }
    let before = snapshot_position(&app.data_dir);
    assert_eq!(app.terminate(), Some(0), "a stop exits 0");
    let after = snapshot_position(&app.data_dir);
    assert!(
        after > before,
        "the stop wrote a snapshot at the end of the log ({before:x} -> {after:x})"
    );
    let dir = app.data_dir.clone();
    let op = app.operator.clone();
    let next = TestApp::spawn_on(&dir, &op);
    for t in &tokens {
        assert_eq!(
            next.get("/api/v1/user", &t.token).await.expect(200).body["id"],
            t.user_id.as_str()
        );
    }
    assert_eq!(
        next.get("/api/v1/users?per_page=1", &acme.key)
            .await
            .expect(200)
            .header("x-total-count"),
        Some("20")
    );
}

/// `resellerd compact` gives back the space of deleted records: after a burst of tokens that are
/// then revoked, the stopped server's database shrinks, a running server's is refused, a
/// compaction cut short by a crash is settled on the next open (sled's: it copies the database),
/// and everything live is kept.
#[tokio::test]
async fn compact_gives_back_the_space_of_deleted_records_and_keeps_the_rest() {
    compact_on("sled").await;
}

#[tokio::test]
async fn compact_gives_back_the_space_of_a_redb_database() {
    compact_on("redb").await;
}

async fn compact_on(engine: &str) {
    if crate::helpers::on_postgres() {
        return; // compaction is the embedded database's: nothing of it runs on PostgreSQL
    }
    let mut app = TestApp::spawn_with(&["--store-engine", engine]).await;
    let acme = app.reseller("Acme").await;
    let kept = acme.access_token(&app, "kept@example.test").await;
    let burst = futures_util::future::join_all((0..16).map(|w| {
        let (app, acme) = (&app, &acme);
        async move {
            let mut users = Vec::new();
            // Enough short-lived records that what compaction gives back is well over a
            // sled segment (a few hundred leave too thin a margin on a loaded machine).
            for i in 0..300 {
                let t = acme
                    .access_token(app, &format!("burst{}@example.test", (w * 100 + i) % 40))
                    .await;
                users.push(t.user_id);
            }
            users
        }
    }))
    .await;
    let mut burst_users: Vec<String> = burst.into_iter().flatten().collect();
    burst_users.sort();
    burst_users.dedup();
    for id in &burst_users {
        app.delete(&format!("/api/v1/users/{id}/access_tokens"), &acme.key)
            .await
            .expect(204);
    }
    let data_dir = app.data_dir.clone();
    let compact = || {
        std::process::Command::new(binary())
            .arg("compact")
            .arg("--data-dir")
            .arg(&data_dir)
            .output()
            .expect("run resellerd compact")
    };
    let refused = compact();
    assert!(
        !refused.status.success(),
        "a running server's dir is refused"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("in use"));
    let nowhere = std::process::Command::new(binary())
        .args(["compact", "--data-dir"])
        .arg(data_dir.join("missing"))
        .output()
        .unwrap();
    assert!(!nowhere.status.success());
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("no database"));
    assert_eq!(app.terminate(), Some(0));

    let sled = engine == "sled";
    if sled {
        // A compaction a crash cut short left its unfinished copy behind: the next open
        // removes it.
        std::fs::create_dir(app.data_dir.join("db.compacting")).unwrap();
        std::fs::write(app.data_dir.join("db.compacting/db"), b"half").unwrap();
    } else {
        // redb's: the half-written copy beside the database is removed, the database kept.
        std::fs::write(app.data_dir.join(".store.redb.compacting"), b"half").unwrap();
    }
    let done = compact();
    assert!(done.status.success(), "{done:?}");
    let line = String::from_utf8_lossy(&done.stdout).to_string();
    let sizes: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        sizes.len() == 2 && sizes[1] < sizes[0],
        "the database shrank: {line}"
    );
    assert!(!app.data_dir.join("db.compacting").exists());
    assert!(!app.data_dir.join("db.old").exists());
    assert!(!app.data_dir.join(".store.redb.compacting").exists());
    assert_eq!(app.data_dir.join("db").exists(), sled);

    if sled {
        // The crash between the two renames: the complete copy is put in place on the next
        // open.
        std::fs::rename(app.data_dir.join("db"), app.data_dir.join("db.compacting")).unwrap();
        std::fs::create_dir(app.data_dir.join("db.old")).unwrap();
    }
    let dir = app.data_dir.clone();
    let next = TestApp::spawn_on(&dir, &app.operator.clone());
    assert_eq!(
        next.get("/api/v1/user", &kept.token).await.expect(200).body["id"],
        kept.user_id.as_str()
    );
    for id in &burst_users {
        let user = next
            .get(&format!("/api/v1/users/{id}"), &acme.key)
            .await
            .expect(200);
        assert_eq!(user.body["token_count"], 0, "{}", user.text);
    }
    assert_eq!(
        next.get("/api/v1/users?per_page=1", &acme.key)
            .await
            .expect(200)
            .header("x-total-count"),
        Some((burst_users.len() + 1).to_string().as_str())
    );
}
