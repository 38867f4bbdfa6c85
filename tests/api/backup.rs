//! Backup and restore: `resellerd backup` while the server takes writes, `resellerd restore`
//! into an empty dir, and a server on the restored dir holding every write acknowledged before
//! the backup began, the site files, and the same operator token.

use crate::edge::get as edge_get;
use crate::helpers::{all_emails, binary, TestApp, TokenLoad};
use crate::sites::publish_site;
use std::collections::HashSet;
use std::path::Path;

fn resellerd(args: &[&str]) -> std::process::Output {
    std::process::Command::new(binary())
        .args(args)
        .env_remove("RESELLERD_OPERATOR_TOKEN")
        .output()
        .expect("run resellerd")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[tokio::test]
async fn backup_under_write_load_restores_every_acknowledged_write() {
    if crate::helpers::on_postgres() {
        return; // `resellerd backup` copies the embedded database: nothing of it runs on PostgreSQL
    }
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    publish_site(
        &app,
        &ann.token,
        "shop",
        &[("index.html", b"<h1>shop</h1>")],
    )
    .await;

    let load = TokenLoad::start(&app, &acme.key, 8);
    load.until_acked(30).await;

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("backup.tar");
    let load_acked_before = load.acked();
    let before: HashSet<String> = load_acked_before.iter().map(|(e, _)| e.clone()).collect();
    let (data, dest) = (app.data_dir.clone(), out.clone());
    let made = tokio::task::spawn_blocking(move || {
        resellerd(&["backup", "--data-dir", path(&data), "--out", path(&dest)])
    })
    .await
    .unwrap();
    assert!(
        made.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    load.until_acked(before.len() + 10).await;
    let during = load.stop().await.len();
    assert!(
        before.len() > 20 && during > before.len(),
        "writes ran before ({}) and during ({during}) the backup",
        before.len()
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&out).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the backup holds secrets: owner-only");

    let restored = tmp.path().join("restored");
    let r = resellerd(&["restore", "--in", path(&out), "--data-dir", path(&restored)]);
    assert!(
        r.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let restored_mode = std::fs::metadata(&restored).unwrap().permissions().mode();
    assert_eq!(restored_mode & 0o077, 0, "the restored data dir is private");
    let key_mode = std::fs::metadata(restored.join("tls/self-signed.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o077, 0, "the restored TLS key is private");
    let again = resellerd(&["restore", "--in", path(&out), "--data-dir", path(&restored)]);
    assert!(!again.status.success(), "restoring over data must fail");
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    let copy = TestApp::spawn_on(&restored, &app.operator);
    let found = all_emails(&copy, &acme.key).await;
    let missing: Vec<_> = before.difference(&found).collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup but lost: {missing:?}"
    );
    // Every restored user is whole: its record, email index and token all agree.
    let listed = copy
        .get("/api/v1/users?per_page=1", &acme.key)
        .await
        .expect(200);
    assert_eq!(
        listed.header("x-total-count").map(str::to_string),
        Some(found.len().to_string()),
        "the user counter matches the users restored"
    );
    // Whole requests only: each user's token count agrees with its tokens, and the tokens
    // acknowledged before the backup work.
    let sample = copy
        .get("/api/v1/users?per_page=30", &acme.key)
        .await
        .expect(200);
    for user in sample.body.as_array().unwrap() {
        let tokens = copy
            .get(
                &format!(
                    "/api/v1/users/{}/access_tokens",
                    user["id"].as_str().unwrap()
                ),
                &acme.key,
            )
            .await
            .expect(200);
        assert_eq!(
            tokens.body.as_array().unwrap().len() as u64,
            user["token_count"].as_u64().unwrap(),
            "{}",
            user
        );
    }
    for (_, token) in load_acked_before.iter().take(30) {
        copy.get("/api/v1/user", token).await.expect(200);
    }
    let again = acme.access_token(&copy, "ann@acme.test").await;
    assert_eq!(again.user_id, ann.user_id, "the email index came back");
    copy.get("/api/v1/user", &ann.token).await.expect(200);
    copy.get("/api/v1/admin/resellers", &app.operator)
        .await
        .expect(200);
    let page = edge_get(&copy, "shop.localhost", "/").await.expect(200);
    assert_eq!(page.text, "<h1>shop</h1>", "site files came back");
}

#[tokio::test]
async fn backup_of_a_stopped_server_and_bad_inputs() {
    if crate::helpers::on_postgres() {
        return; // `resellerd backup` copies the embedded database: nothing of it runs on PostgreSQL
    }
    let mut app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    acme.access_token(&app, "ann@acme.test").await;
    app.kill9();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("offline.tar");
    let made = resellerd(&[
        "backup",
        "--data-dir",
        path(&app.data_dir),
        "--out",
        path(&out),
    ]);
    assert!(
        made.status.success(),
        "offline backup failed: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let restored = tmp.path().join("restored");
    let r = resellerd(&["restore", "--in", path(&out), "--data-dir", path(&restored)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // Quiet off a terminal (cron): one last line in people's units, no progress drawing.
    let said =
        String::from_utf8_lossy(&made.stdout).to_string() + &String::from_utf8_lossy(&made.stderr);
    assert!(
        !said.contains('\u{1b}') && said.contains("iB in "),
        "{said}"
    );
    assert!(!String::from_utf8_lossy(&r.stderr).contains('\u{1b}'));
    // On a terminal, a restore shows its progress (bytes of the archive, rate, time left).
    let on_tty = std::process::Command::new("script")
        .args(["-qc"])
        .arg(format!(
            "{} restore --in {} --data-dir {}",
            binary(),
            path(&out),
            path(&tmp.path().join("restored-tty"))
        ))
        .arg("/dev/null")
        .output()
        .expect("script(1), from util-linux");
    let shown = String::from_utf8_lossy(&on_tty.stdout);
    assert!(
        shown.contains("restoring") && shown.contains("left"),
        "{shown}"
    );
    let copy = TestApp::spawn_on(&restored, &app.operator);
    assert_eq!(all_emails(&copy, &acme.key).await.len(), 1);
    // As the README writes it: a bare file name in the working directory.
    let bare = std::process::Command::new(binary())
        .args([
            "backup",
            "--data-dir",
            path(&app.data_dir),
            "--out",
            "backup.tar",
        ])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(
        bare.status.success(),
        "{}",
        String::from_utf8_lossy(&bare.stderr)
    );
    assert!(tmp.path().join("backup.tar").is_file());

    let none = resellerd(&[
        "backup",
        "--data-dir",
        path(&tmp.path().join("nothing")),
        "--out",
        path(&tmp.path().join("x.tar")),
    ]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("holds no resellerd data"));
    assert!(!tmp.path().join("nothing").exists(), "no data dir is made");

    let junk = tmp.path().join("junk.tar");
    std::fs::write(&junk, b"not a tar at all").unwrap();
    let bad = resellerd(&[
        "restore",
        "--in",
        path(&junk),
        "--data-dir",
        path(&tmp.path().join("r2")),
    ]);
    assert!(!bad.status.success(), "a non-backup is refused");
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(said.len() < 400 && !said.contains('\u{fffd}'), "{said}");
    assert!(
        !tmp.path().join("r2").exists(),
        "a failed restore left its directory"
    );
}

#[tokio::test]
async fn the_backup_endpoint_is_operator_only() {
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    app.get("/api/v1/admin/backup", &acme.key)
        .await
        .expect_error(403, "forbidden");
    if crate::helpers::on_postgres() {
        // The database's own tools back it up; the answer says so.
        let r = app
            .get("/api/v1/admin/backup", &app.operator)
            .await
            .expect_error(400, "invalid_request");
        assert!(r.body["message"].as_str().unwrap().contains("pg_dump"));
        return;
    }
    let r = app
        .client
        .get(app.url("/api/v1/admin/backup"))
        .bearer_auth(&app.operator)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/x-tar"
    );
    let bytes = r.bytes().await.unwrap();
    let mut archive = tar::Archive::new(&bytes[..]);
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names[0], "resellerd-backup.json");
    assert!(names.contains(&"db/resellers".to_string()), "{names:?}");
    assert!(
        names.contains(&"files/operator-token.sha256".to_string()),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n == "files/operator-token"),
        "no plaintext token: {names:?}"
    );
}

/// A server killed -9 while a backup runs (writes going on) loses no acknowledged write and
/// leaves no backup scratch file behind.
#[tokio::test]
async fn a_server_killed_during_a_backup_loses_nothing() {
    if crate::helpers::on_postgres() {
        return; // `resellerd backup` copies the embedded database: nothing of it runs on PostgreSQL
    }
    let mut app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let load = TokenLoad::start(&app, &acme.key, 8);
    load.until_acked(100).await;
    let backup = {
        let (client, url, op) = (
            app.client.clone(),
            app.url("/api/v1/admin/backup"),
            app.operator.clone(),
        );
        tokio::spawn(async move { client.get(url).bearer_auth(op).send().await })
    };
    let n = load.acked().len();
    load.until_acked(n + 50).await;
    app.kill9();
    let _ = backup.await;
    let acked = load.stop().await;
    let app = app.restart().await;
    let found = all_emails(&app, &acme.key).await;
    let lost: Vec<_> = acked.iter().filter(|(e, _)| !found.contains(e)).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    for (_, token) in acked.iter().rev().take(20) {
        app.get("/api/v1/user", token).await.expect(200);
    }
    let scratch: Vec<_> = std::fs::read_dir(&app.data_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".backup-"))
        .collect();
    assert!(scratch.is_empty(), "{scratch:?}");
    // A backup still works on the restarted server.
    app.get("/api/v1/admin/backup", &app.operator)
        .await
        .expect(200);
}

/// The backup endpoint streams the archive from the database's snapshot as the client reads
/// it. A client that goes away halfway ends the dump: writes go on, the snapshot is let go of,
/// and the next backup is whole.
#[tokio::test]
async fn a_client_that_leaves_halfway_ends_the_backup() {
    if crate::helpers::on_postgres() {
        return; // the database's own tools back it up
    }
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    app.post(
        "/api/v1/sites",
        &ann.token,
        serde_json::json!({"name": "big"}),
    )
    .await
    .expect(201);
    // Several chunks and more than the channel holds, so the dump waits for the reader.
    let big = crate::helpers::noise(6 << 20, 5);
    crate::sites::zip_deploy(
        &app,
        &ann.token,
        "big",
        crate::sites::zip_of(&[("index.html", b"<h1>big</h1>"), ("big.bin", &big)]),
    )
    .await
    .expect(200);
    let backup = || {
        app.client
            .get(app.url("/api/v1/admin/backup"))
            .bearer_auth(&app.operator)
            .send()
    };
    let mut r = backup().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.chunk().await.unwrap().is_some());
    drop(r);
    // Writes go on, and a whole backup follows.
    let bob = acme.access_token(&app, "bob@acme.test").await;
    app.get("/api/v1/user", &bob.token).await.expect(200);
    let bytes = backup().await.unwrap().bytes().await.unwrap();
    assert!(bytes.len() > big.len(), "{} bytes", bytes.len());
    let mut archive = tar::Archive::new(&bytes[..]);
    let blobs = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().unwrap().starts_with("blobs"))
        .map(|e| e.size())
        .max();
    assert_eq!(blobs, Some(big.len() as u64));
}

/// A restore trusts nothing in the archive: a sparse entry that would expand to a gibibyte, a
/// record declaring 256 MiB and a link are each refused, and the failed restore leaves no
/// directory behind (or an empty one as it was).
#[test]
fn a_restore_trusts_nothing_in_the_archive() {
    fn archive(add: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let manifest =
            br#"{"format": 1, "created_at": "2026-12-07T00:00:00Z", "resellerd": "0.1.0"}"#;
        let mut h = tar::Header::new_gnu();
        h.set_size(manifest.len() as u64);
        h.set_mode(0o600);
        h.set_cksum();
        b.append_data(&mut h, "resellerd-backup.json", &manifest[..])
            .unwrap();
        add(&mut b);
        b.into_inner().unwrap()
    }
    let sparse = archive(|b| {
        // One byte of data at the end of a 1 GiB file of zeros.
        let octal = |n: u64| {
            let mut field = [0u8; 12];
            let text = format!("{n:011o}");
            field[..11].copy_from_slice(text.as_bytes());
            field
        };
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_size(1);
        h.set_mode(0o600);
        if let Some(gnu) = h.as_gnu_mut() {
            gnu.set_real_size(1 << 30);
            gnu.sparse[0].offset = octal((1 << 30) - 1);
            gnu.sparse[0].numbytes = octal(1);
        }
        h.set_cksum();
        b.append_data(&mut h, "blobs/ab/cdef", &[7u8][..]).unwrap();
    });
    let huge_value = archive(|b| {
        let mut record = Vec::new();
        record.extend_from_slice(&3u32.to_be_bytes());
        record.extend_from_slice(b"key");
        record.extend_from_slice(&(256u32 << 20).to_be_bytes());
        record.extend_from_slice(&[0u8; 64]);
        let mut h = tar::Header::new_gnu();
        h.set_size(record.len() as u64);
        h.set_mode(0o600);
        h.set_cksum();
        b.append_data(&mut h, "db/users", &record[..]).unwrap();
    });
    let link = archive(|b| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o600);
        h.set_cksum();
        b.append_link(&mut h, "files/operator-token.sha256", "/etc/shadow")
            .unwrap();
    });
    let tmp = tempfile::tempdir().unwrap();
    for (name, bytes, why) in [
        ("sparse", sparse, "not a regular file"),
        ("value", huge_value, "declares"),
        ("link", link, "not a regular file"),
    ] {
        let input = tmp.path().join(format!("{name}.tar"));
        std::fs::write(&input, bytes).unwrap();
        let dir = tmp.path().join(name);
        let out = resellerd(&["restore", "--in", path(&input), "--data-dir", path(&dir)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: {stderr}");
        assert!(stderr.contains(why), "{name}: {stderr}");
        assert!(
            !dir.exists(),
            "{name}: a failed restore left {}",
            dir.display()
        );
    }
    // Into an empty directory that exists: refused, and left empty (not removed).
    let input = tmp.path().join("link.tar");
    let dir = tmp.path().join("empty");
    std::fs::create_dir(&dir).unwrap();
    let out = resellerd(&["restore", "--in", path(&input), "--data-dir", path(&dir)]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

/// `backup` and `restore` killed (-9) at random points: the data dir still opens, a backup file
/// under its final name is always a whole one, and a restore either completed or simply runs
/// again (a killed one leaves no half data dir a server could start on).
#[tokio::test]
async fn backup_and_restore_survive_kill_9_at_any_point() {
    if crate::helpers::on_postgres() {
        return; // `resellerd backup` copies the embedded database: nothing of it runs on PostgreSQL
    }
    use rand::Rng;
    let mut app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    let big = crate::helpers::noise(4 << 20, 5);
    publish_site(
        &app,
        &ann.token,
        "heavy",
        &[("big.bin", &big), ("index.html", b"heavy")],
    )
    .await;
    app.kill9();
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = rand::thread_rng();
    let killed = |args: Vec<String>, after_ms: u64| {
        let mut child = std::process::Command::new(binary())
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(after_ms));
        let _ = child.kill();
        child.wait().unwrap();
    };
    let out = tmp.path().join("b.tar");
    for _ in 0..6 {
        let _ = std::fs::remove_file(&out);
        let args = [
            "backup",
            "--data-dir",
            path(&app.data_dir),
            "--out",
            path(&out),
        ];
        killed(
            args.iter().map(|s| s.to_string()).collect(),
            rng.gen_range(0..400),
        );
        if out.exists() {
            // Only a complete backup ever has its final name: it restores.
            let check = tmp.path().join("check");
            let _ = std::fs::remove_dir_all(&check);
            let r = resellerd(&["restore", "--in", path(&out), "--data-dir", path(&check)]);
            assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        }
    }
    let made = resellerd(&[
        "backup",
        "--data-dir",
        path(&app.data_dir),
        "--out",
        path(&out),
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let target = tmp.path().join("restored");
    for _ in 0..6 {
        let args = ["restore", "--in", path(&out), "--data-dir", path(&target)];
        killed(
            args.iter().map(|s| s.to_string()).collect(),
            rng.gen_range(0..400),
        );
        // Either the whole restore is there, or what is there is marked as unfinished (and a
        // server refuses it), or nothing is.
        let marked = target.join(resellerd::backup::RESTORING).exists();
        let whole = target.join(resellerd::store::REDB_FILE).exists() && !marked;
        let empty = std::fs::read_dir(&target).map_or(true, |mut d| d.next().is_none());
        assert!(
            whole || marked || empty,
            "a killed restore left a half data dir"
        );
        if marked {
            let serve = std::process::Command::new(binary())
                .args(["serve", "--data-dir", path(&target)])
                .output()
                .unwrap();
            assert!(!serve.status.success());
            assert!(String::from_utf8_lossy(&serve.stderr).contains("did not finish"));
        }
        if whole {
            break;
        }
    }
    if !target.join(resellerd::store::REDB_FILE).exists() {
        let r = resellerd(&["restore", "--in", path(&out), "--data-dir", path(&target)]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    }
    let copy = TestApp::spawn_on(&target, &app.operator);
    let r = crate::edge::get(&copy, "heavy.localhost", "/big.bin")
        .await
        .expect(200);
    let length = r.header("content-length").map(str::to_string);
    assert_eq!(length, Some(big.len().to_string()));
    drop(copy);
    // compact killed anywhere: the next open settles what it left, and it runs again.
    for _ in 0..4 {
        let args = ["compact", "--data-dir", path(&app.data_dir)];
        killed(
            args.iter().map(|s| s.to_string()).collect(),
            rng.gen_range(0..300),
        );
    }
    let again = resellerd(&["compact", "--data-dir", path(&app.data_dir)]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // And the original still opens, with everything.
    let original = TestApp::spawn_on(&app.data_dir, &app.operator);
    crate::edge::get(&original, "heavy.localhost", "/index.html")
        .await
        .expect(200);
    assert_eq!(all_emails(&original, &acme.key).await.len(), 1);
}
