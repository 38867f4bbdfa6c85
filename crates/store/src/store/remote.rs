//! Blobs on an S3-compatible object store (`--blob-store s3://bucket?endpoint=…&region=…`, the
//! credentials from the usual `AWS_*` environment variables). A sweep deletes what this node's
//! database does not name, so a bucket is one node's until nodes share a database. The blob dir
//! stays as this node's cache: a blob is written there first, uploaded before the call that stores
//! it answers (so no deploy is ready before its content is in the bucket), and fetched back into it
//! on first use by a node that lacks it.
//!
//! The object store's client is async; the store's callers are not (they run on blocking threads
//! or inline on a worker, as file reads do). Each call runs on a small runtime of its own and the
//! caller waits for its answer on a channel, which works from any thread.

use crate::error::{StoreError, StoreResult};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Files larger than this are uploaded in parts of this size.
const PART: usize = 8 << 20;

pub struct Remote {
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
    /// What the URL names, without credentials (for logs and `doctor`).
    pub description: String,
}

fn remote_error(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::StorageUnavailable(format!("blob store: {what}: {e}"))
}

fn key(sha: &str) -> ObjectPath {
    let (head, tail) = sha.split_at(2.min(sha.len()));
    ObjectPath::from(format!("blobs/{head}/{tail}"))
}

impl Remote {
    /// Parses `s3://bucket?endpoint=http://host:port&region=…` and builds the client.
    pub fn from_url(url: &str) -> Result<Remote, String> {
        let bad = |why: String| format!("--blob-store {url:?}: {why}");
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("only s3:// is supported".into()))?;
        let (bucket, query) = rest.split_once('?').unwrap_or((rest, ""));
        let bucket = bucket.trim_end_matches('/');
        if bucket.is_empty() || bucket.contains('/') {
            return Err(bad("name one bucket: s3://bucket?endpoint=…".into()));
        }
        // The S3 client's TLS (reqwest, built without a provider of its own) uses the process's
        // rustls provider: ring, as everywhere else in resellerd. Set once; a second call finds
        // it set.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let mut description = format!("s3://{bucket}");
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "endpoint" => {
                    builder = builder
                        .with_endpoint(v)
                        .with_allow_http(v.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                    description.push_str(&format!(" at {v}"));
                }
                "region" => builder = builder.with_region(v),
                _ => return Err(bad(format!("unknown parameter {k:?} (endpoint, region)"))),
            }
        }
        let store = builder.build().map_err(|e| bad(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("blob-store")
            .enable_all()
            .build()
            .map_err(|e| bad(format!("cannot start its runtime: {e}")))?;
        Ok(Remote {
            store: Arc::new(store),
            runtime,
            description,
        })
    }

    /// Runs `f` on the remote's runtime and waits for it, from any thread.
    fn run<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> StoreResult<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv_timeout(Duration::from_secs(600))
            .map_err(|e| remote_error("no answer", e))
    }

    /// The size of a blob in the bucket, None if it is not there.
    pub fn size(&self, sha: &str) -> StoreResult<Option<u64>> {
        let store = self.store.clone();
        let key = key(sha);
        match self.run(async move { store.head(&key).await })? {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(remote_error("head", e)),
        }
    }

    /// Uploads the blob in `file` (`len` bytes) unless the bucket has it.
    pub fn upload(&self, sha: &str, file: &std::path::Path, len: u64) -> StoreResult<()> {
        if self.size(sha)? == Some(len) {
            return Ok(());
        }
        let store = self.store.clone();
        let key = key(sha);
        let path = file.to_path_buf();
        let result = self.run(async move {
            use tokio::io::AsyncReadExt;
            let mut f = tokio::fs::File::open(&path).await?;
            if len as usize <= PART {
                let mut data = Vec::with_capacity(len as usize);
                f.read_to_end(&mut data).await?;
                store
                    .put(&key, PutPayload::from(data))
                    .await
                    .map_err(std::io::Error::other)?;
                return Ok(());
            }
            let upload = store
                .put_multipart(&key)
                .await
                .map_err(std::io::Error::other)?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                writer
                    .wait_for_capacity(4)
                    .await
                    .map_err(std::io::Error::other)?;
                writer.write(&buf[..n]);
            }
            writer.finish().await.map_err(std::io::Error::other)?;
            Ok::<(), std::io::Error>(())
        })?;
        result.map_err(|e| remote_error("upload", e))
    }

    /// Writes the blob's bytes to `dest` (a temp file the caller renames into place); false if
    /// the bucket does not have it.
    pub fn download(&self, sha: &str, dest: &std::path::Path) -> StoreResult<bool> {
        let store = self.store.clone();
        let key = key(sha);
        let dest = dest.to_path_buf();
        let result = self.run(async move {
            use futures_util::StreamExt;
            use tokio::io::AsyncWriteExt;
            let got = match store.get(&key).await {
                Ok(got) => got,
                Err(object_store::Error::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(std::io::Error::other(e)),
            };
            let mut out = tokio::fs::File::create(&dest).await?;
            let mut body = got.into_stream();
            while let Some(chunk) = body.next().await {
                out.write_all(&chunk.map_err(std::io::Error::other)?)
                    .await?;
            }
            out.sync_all().await?;
            Ok(true)
        })?;
        result.map_err(|e| remote_error("download", e))
    }

    /// Deletes every blob of the bucket not in `live` and older than `grace` (a blob another
    /// node uploaded for a deploy it is still recording is younger). Returns how many.
    pub fn sweep(&self, live: &HashSet<String>, grace: Duration) -> StoreResult<usize> {
        let store = self.store.clone();
        let live = live.clone();
        let cutoff = crate::model::Timestamp::now().0 - grace.as_millis() as i64;
        let result = self.run(async move {
            use futures_util::StreamExt;
            let mut listing = store.list(Some(&ObjectPath::from("blobs")));
            let mut doomed = Vec::new();
            while let Some(meta) = listing.next().await {
                let meta = meta?;
                let parts: Vec<_> = meta.location.parts().collect();
                let sha = match parts.as_slice() {
                    [_, head, tail] => format!("{}{}", head.as_ref(), tail.as_ref()),
                    _ => continue,
                };
                if !live.contains(&sha) && meta.last_modified.timestamp_millis() <= cutoff {
                    doomed.push(meta.location);
                }
            }
            let n = doomed.len();
            for location in doomed {
                match store.delete(&location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(n)
        })?;
        result.map_err(|e| remote_error("sweep", e))
    }

    /// Writes, reads and deletes a probe object (`doctor`).
    pub fn check(&self) -> StoreResult<()> {
        let store = self.store.clone();
        let result = self.run(async move {
            let probe = ObjectPath::from(format!("doctor/probe-{}", crate::model::new_id()));
            store.put(&probe, PutPayload::from_static(b"ok")).await?;
            store.get(&probe).await?.bytes().await?;
            store.delete(&probe).await
        })?;
        result.map_err(|e| remote_error("probe", e))
    }
}
