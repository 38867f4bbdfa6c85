//! A full disk: writes are refused with 507 before the store meets the wall, `/readyz` says why,
//! sites keep being served, writes come back by themselves once space is freed, and nothing
//! acknowledged is lost. Each test mounts a small tmpfs for the data dir (tests run as root); where
//! mounting is not permitted it says so and checks the refusal with a reserve larger than the disk.

use crate::helpers::{noise, Reply, TestApp};
use crate::sites::{publish_site, zip_deploy, zip_of};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u32) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

async fn new_token(app: &TestApp, key: &str, email: &str) -> Reply {
    app.post(
        "/api/v1/access_tokens",
        key,
        json!({"user": {"email": email}}),
    )
    .await
}

/// Polls `f` every 200 ms until it is true, failing after `secs`.
async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let began = Instant::now();
    while !f().await {
        assert!(
            began.elapsed() < Duration::from_secs(secs),
            "not within {secs} s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_full_disk_refuses_writes_keeps_serving_and_recovers_by_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(_mount) = Tmpfs::mount(&tmp.path().join("fs"), 48) else {
        eprintln!(
            "cannot mount a tmpfs here: checking the refusal with a reserve larger than the disk"
        );
        let app = TestApp::spawn_with(&["--disk-reserve", "18446744073709551615"]).await;
        app.post(
            "/api/v1/admin/resellers",
            &app.operator,
            json!({"name": "A", "email": "a@a.test"}),
        )
        .await
        .expect_error(507, "insufficient_storage");
        app.get("/readyz", "").await.expect(503);
        return;
    };
    let data = tmp.path().join("fs/data");
    let mut app = TestApp::spawn_in(&data, &["--disk-reserve", &(12u64 << 20).to_string()]);
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    let form = b"<form name=\"contact\" netlify><input name=\"email\"></form>";
    publish_site(&app, &ann.token, "live", &[("index.html", form)]).await;

    // Fill the disk through the API with sites of 4 MiB that does not compress, then (once an
    // upload no longer fits above the reserve) of 256 KiB and 16 KiB, then users, until even
    // those are refused.
    // Free space is sampled once a second and sled's log can dip and come back, so a refusal
    // shrinks the size only if it is still there after the next sample.
    let mut acked = Vec::new();
    let mut size = 4 << 20;
    let mut refused = None;
    let mut confirmed = false;
    for i in 0..600 {
        let name = format!("fill-{i}");
        let r = app
            .post("/api/v1/sites", &ann.token, json!({"name": name}))
            .await;
        let r = if r.status == 201 {
            let zip = zip_of(&[("big.bin", &noise(size, i + 1))]);
            zip_deploy(&app, &ann.token, &name, zip).await
        } else {
            r
        };
        match r.status.as_u16() {
            507 if !confirmed => {
                confirmed = true;
                tokio::time::sleep(Duration::from_millis(1100)).await;
            }
            507 if size > 16 << 10 => {
                size /= 16;
                confirmed = false;
            }
            507 => {
                refused = Some(r);
                break;
            }
            _ => {
                r.expect(200);
                confirmed = false;
                acked.push(name);
            }
        }
    }
    let Some(refused) = refused else {
        panic!(
            "the disk never filled: {} sites acknowledged, last size {size}, free {:?}",
            acked.len(),
            resellerd::disk::space(&data)
        );
    };
    let refused = refused.expect_error(507, "insufficient_storage");
    assert!(refused.header("retry-after").is_some());
    assert!(acked.len() >= 3, "only {} sites fit", acked.len());
    let mut users = 0;
    while new_token(&app, &acme.key, &format!("fill{users}@acme.test"))
        .await
        .status
        == 201
    {
        users += 1;
        assert!(users < 20_000, "the disk never reached the reserve");
    }

    // Every write is refused now, before it touches the store; readiness says why.
    eventually(5, "writes refused", || async {
        new_token(&app, &acme.key, "late@acme.test").await.status == 507
    })
    .await;
    let ready = app.get("/readyz", "").await.expect(503);
    assert!(
        ready.body["reason"].as_str().unwrap().contains("reserve"),
        "{}",
        ready.text
    );
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("resellerd_data_dir_free_bytes"),
        "{metrics}"
    );
    assert!(
        metrics.contains("resellerd_data_dir_reserve_bytes"),
        "{metrics}"
    );
    // Sites are still served; a form submission is refused with a page that says so.
    let page = crate::edge::get(&app, "live.localhost", "/")
        .await
        .expect(200);
    assert!(page.text.contains("contact"));
    let r = app
        .client
        .post(app.url("/"))
        .header("host", "live.localhost")
        .form(&[("form-name", "contact"), ("email", "x@y.test")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 507);

    // Deleting still works, and frees space: writes resume without a restart.
    for name in acked.drain(..3) {
        app.delete(&format!("/api/v1/sites/{name}"), &ann.token)
            .await
            .expect(204);
    }
    eventually(10, "writes resume", || async {
        new_token(&app, &acme.key, "back@acme.test").await.status == 201
    })
    .await;
    app.get("/readyz", "").await.expect(200);
    assert_eq!(app.exit_code(), None, "recovered without a restart");

    // Nothing acknowledged was lost.
    let app = app.restart().await;
    for name in &acked {
        app.get(&format!("/api/v1/sites/{name}"), &ann.token)
            .await
            .expect(200);
    }
    let emails = crate::helpers::all_emails(&app, &acme.key).await;
    let emails: Vec<&str> = emails.iter().map(String::as_str).collect();
    assert!(emails.contains(&"back@acme.test"), "{emails:?}");
    assert!(!emails.contains(&"late@acme.test"), "{emails:?}");
    assert_eq!(emails.len(), users + 2, "ann, the fillers and back");
}

/// Without a reserve the store itself meets the full disk: writes answer 507 (never 500), and
/// once space is back writes resume, in process or through a restart with the store reopened
/// (exit status 75, which the systemd unit's `Restart=on-failure` acts on).
#[tokio::test]
async fn a_store_that_meets_the_wall_answers_507_and_comes_back() {
    if crate::helpers::on_postgres() {
        return; // the embedded database's own writes meeting a full disk: nothing of it runs on PostgreSQL
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(_mount) = Tmpfs::mount(&tmp.path().join("fs"), 32) else {
        eprintln!("cannot mount a tmpfs here: the store's own full-disk path is not exercised");
        return;
    };
    let data = tmp.path().join("fs/data");
    let mut app = TestApp::spawn_in(&data, &["--disk-reserve", "0"]);
    let acme = app.reseller("Acme").await;
    // Leave the filesystem (almost) full, outside resellerd.
    let filler = tmp.path().join("fs/filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0x5au8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let mut acked = Vec::new();
    let mut statuses = std::collections::BTreeSet::new();
    // redb reuses the pages it frees, so it needs new blocks only as the records grow: up to a few
    // MiB of them.
    for i in 0..3000 {
        let email = format!("u{i}@acme.test");
        let r = new_token(&app, &acme.key, &email).await;
        let status = r.status.as_u16();
        assert!(matches!(status, 201 | 503 | 507), "{status}: {}", r.text);
        if status == 201 {
            acked.push(email);
        } else {
            r.expect_error(
                status,
                if status == 507 {
                    "insufficient_storage"
                } else {
                    "storage_unavailable"
                },
            );
        }
        statuses.insert(status);
        if statuses.contains(&507) && i > 20 {
            break;
        }
    }
    assert!(
        statuses.contains(&507),
        "the store never met the full disk: {statuses:?}"
    );
    app.get("/readyz", "").await.expect(503);

    // Space comes back: writes resume in process, or resellerd exits 75 to be restarted.
    std::fs::remove_file(&filler).unwrap();
    let began = Instant::now();
    loop {
        if let Some(code) = app.exit_code() {
            assert_eq!(code, 75, "exited with {code}");
            app = app.restart().await;
            break;
        }
        if new_token(&app, &acme.key, "back@acme.test").await.status == 201 {
            acked.push("back@acme.test".into());
            break;
        }
        assert!(began.elapsed() < Duration::from_secs(20), "did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eventually(10, "writes after recovery", || async {
        new_token(&app, &acme.key, "after@acme.test").await.status == 201
    })
    .await;
    let app = app.restart().await;
    let emails = crate::helpers::all_emails(&app, &acme.key).await;
    for email in &acked {
        assert!(emails.contains(email), "lost {email}");
    }
}

#[tokio::test]
async fn a_backup_that_would_not_fit_is_refused_and_leaves_nothing() {
    if crate::helpers::on_postgres() {
        return; // `resellerd backup` copies the embedded database: nothing of it runs on PostgreSQL
    }
    let app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    let ann = acme.access_token(&app, "ann@acme.test").await;
    publish_site(&app, &ann.token, "big", &[("big.bin", &noise(3 << 20, 9))]).await;
    let tmp = tempfile::tempdir().unwrap();
    let Some(_mount) = Tmpfs::mount(&tmp.path().join("tiny"), 1) else {
        eprintln!("cannot mount a tmpfs here: the backup's space check is not exercised");
        return;
    };
    let out = tmp.path().join("tiny/backup.tar");
    let run = Command::new(crate::helpers::binary())
        .args(["backup", "--data-dir"])
        .arg(&app.data_dir)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("free"), "{err}");
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("tiny"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
