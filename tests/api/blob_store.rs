//! Site files on an S3-compatible object store (`--blob-store`), against a real S3-protocol
//! server on loopback (moto, installed by ./scripts/test): a deploy's files are in the bucket when
//! the deploy answers (their contents are then checked by serving them from the bucket), a node whose blob dir lacks them (here: the same node with its cache
//! deleted) serves them from the bucket, garbage collection deletes what no deploy names once the
//! grace period has passed, and `doctor` checks the bucket.

use crate::helpers::{binary, noise, TestApp};
use crate::sites::{sha1, zip_deploy, zip_of};
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// moto's S3 server on a loopback port, with one bucket; stopped when dropped.
pub struct S3 {
    child: Child,
    pub url: String,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3 {
    pub async fn start(bucket: &str) -> S3 {
        let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/mailtest/bin/moto_server");
        assert!(
            server.exists(),
            "{} is missing: ./scripts/test installs moto there",
            server.display()
        );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let s3 = S3 {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        // moto imports a good part of boto on start: give a slow machine 30 s.
        for _ in 0..300 {
            if let Ok(r) = client.put(format!("{}/{bucket}", s3.url)).send().await {
                assert!(r.status().is_success(), "create bucket: {}", r.status());
                return s3;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("moto_server did not start");
    }

    /// The size of the blob's object, None if it is not there (listed: moto refuses an
    /// unsigned GET of an object, not a listing).
    async fn object(&self, bucket: &str, sha: &str) -> Option<u64> {
        let key = format!("blobs/{}/{}", &sha[..2], &sha[2..]);
        let list = reqwest::get(format!("{}/{bucket}?list-type=2&prefix={key}", self.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let at = list.find(&format!("<Key>{key}</Key>"))?;
        let size = &list[at..];
        let size = &size[size.find("<Size>")? + 6..];
        size[..size.find('<')?].parse().ok()
    }
}

#[tokio::test]
async fn site_files_live_in_the_bucket_and_any_node_serves_them() {
    let s3 = S3::start("sites").await;
    let blob_store = format!("s3://sites?endpoint={}&region=us-east-1", s3.url);
    let mut app = TestApp::spawn_with(&["--blob-store", &blob_store, "--blob-gc-grace", "0"]).await;
    let a = app.reseller("Bucket A").await;
    let ann = a.access_token(&app, "ann@a.test").await;
    app.post("/api/v1/sites", &ann.token, json!({"name": "bucketed"}))
        .await
        .expect(201);
    // 9 MiB goes up in parts; the page in one request.
    let (page, big) = (b"<h1>from the bucket</h1>".to_vec(), noise(9 << 20, 11));
    let css = "p { margin: 0 auto; color: #333; }\n"
        .repeat(100)
        .into_bytes();
    zip_deploy(
        &app,
        &ann.token,
        "bucketed",
        zip_of(&[
            ("index.html", &page),
            ("big.bin", &big),
            ("styles.css", &css),
        ]),
    )
    .await
    .expect(200);
    assert_eq!(
        s3.object("sites", &sha1(&page)).await,
        Some(page.len() as u64)
    );
    assert_eq!(
        s3.object("sites", &sha1(&big)).await,
        Some(big.len() as u64)
    );

    // The digest flow: an upload is in the bucket when it is acknowledged.
    let extra = b"uploaded alone".to_vec();
    let deploy = app
        .post(
            "/api/v1/sites/bucketed/deploys",
            &ann.token,
            json!({"files": {"/index.html": sha1(&page), "/big.bin": sha1(&big), "/extra.txt": sha1(&extra), "/styles.css": sha1(&css)}}),
        )
        .await
        .expect(200)
        .body;
    let id = deploy["id"].as_str().unwrap().to_string();
    assert_eq!(
        crate::sites::upload(&app, &ann.token, &id, "extra.txt", &extra).await,
        200
    );
    assert_eq!(
        s3.object("sites", &sha1(&extra)).await,
        Some(extra.len() as u64)
    );

    // The precompressed variants go to the bucket too.
    let br = brotli_of(&app, "/styles.css")
        .await
        .expect("a brotli variant");
    assert!(
        s3.object("sites", &br).await.is_some(),
        "{br} in the bucket"
    );

    // A node without the files in its blob dir fetches them from the bucket.
    app.kill9();
    std::fs::remove_dir_all(app.data_dir.join("blobs")).unwrap();
    let app = app.restart().await;
    let got = crate::edge::get(&app, "bucketed.localhost", "/")
        .await
        .expect(200);
    assert!(got.text.contains("from the bucket"));
    let r = app
        .client
        .get(app.url("/big.bin"))
        .header("host", "bucketed.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().as_ref() == big.as_slice());
    let r = app
        .client
        .get(app.url("/extra.txt"))
        .header("host", "bucketed.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "uploaded alone");
    assert_eq!(brotli_of(&app, "/styles.css").await.as_ref(), Some(&br));

    // Deleting the site leaves nothing naming the files: past the grace period (0 here) they
    // are deleted from the bucket.
    app.delete("/api/v1/sites/bucketed", &ann.token)
        .await
        .expect(204);
    for sha in [sha1(&page), sha1(&big), sha1(&extra), sha1(&css), br] {
        assert_eq!(s3.object("sites", &sha).await, None, "{sha} was swept");
    }
}

/// The digest of the brotli variant `bucketed.localhost` sends for `path`, once it has one.
async fn brotli_of(app: &TestApp, path: &str) -> Option<String> {
    crate::edge::brotli_variant(app, "bucketed.localhost", path)
        .await
        .map(|body| sha1(&body))
}

#[tokio::test]
async fn doctor_checks_the_bucket() {
    let s3 = S3::start("checked").await;
    let dir = tempfile::tempdir().unwrap();
    let run = |store: String| {
        let out = Command::new(binary())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .arg("doctor")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--blob-store", &store])
            .output()
            .expect("run doctor");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ok = run(format!("s3://checked?endpoint={}&region=us-east-1", s3.url));
    let line = ok
        .lines()
        .find(|l| l.contains("blob store"))
        .unwrap_or_default();
    assert!(line.starts_with("ok"), "{ok}");
    let missing = run(format!(
        "s3://no-such-bucket?endpoint={}&region=us-east-1",
        s3.url
    ));
    let line = missing
        .lines()
        .find(|l| l.contains("blob store"))
        .unwrap_or_default();
    assert!(line.to_lowercase().starts_with("fail"), "{missing}");
    let bad = run("gs://elsewhere".into());
    assert!(bad.contains("only s3:// is supported"), "{bad}");
}
