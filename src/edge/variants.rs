//! Precompressed brotli and gzip variants of deploys' files: made by a background thread after a
//! deploy becomes ready (the store's `encodings` queue), and chosen per request by
//! `Accept-Encoding`. A deploy is `ready` before its variants exist; until they do the edge
//! serves identity for the files not done yet.

use crate::store::blobs::{sha1_hex, Pinned};
use crate::store::encodings::Variants;
use crate::store::Store;
use actix_web::http::header;
use std::io::Write;

/// Files smaller than this are sent as they are (a variant would save a packet at most).
const MIN_SIZE: u64 = 512;
/// Files larger than this are sent as they are (compressing them would hold the thread for long).
const MAX_SIZE: u64 = 16 << 20;
/// Brotli at its best (quality 11) up to this size; faster (quality 6) above it.
const BEST_BROTLI_MAX: usize = 1 << 20;
/// A variant is kept only if it is at most this share of the original.
const WORTH: f64 = 0.95;
/// How often an idle compressor looks at the queue.
const POLL: std::time::Duration = std::time::Duration::from_millis(300);

/// True for content types worth compressing: text, scripts, JSON, XML, SVG, WebAssembly and the
/// font formats that are not compressed already (not WOFF/WOFF2).
pub fn compressible(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.starts_with("text/")
        || matches!(
            essence,
            "application/javascript"
                | "application/json"
                | "application/manifest+json"
                | "application/ld+json"
                | "application/xml"
                | "application/rss+xml"
                | "application/atom+xml"
                | "application/wasm"
                | "image/svg+xml"
                | "image/x-icon"
                | "image/vnd.microsoft.icon"
                | "font/ttf"
                | "font/otf"
                | "application/vnd.ms-fontobject"
        )
}

/// One stored variant of a file, with its own ETag.
pub struct Variant {
    pub sha: String,
    pub etag: header::HeaderValue,
}

/// The variants the edge may send for a file.
#[derive(Default)]
pub struct Encoded {
    pub br: Option<Variant>,
    pub gzip: Option<Variant>,
}

impl Encoded {
    /// `None` when the record names no variant.
    pub fn from_record(v: Variants) -> Option<Encoded> {
        let variant = |sha: String| {
            header::HeaderValue::try_from(format!("\"{sha}\""))
                .ok()
                .map(|etag| Variant { sha, etag })
        };
        let e = Encoded {
            br: v.br.and_then(variant),
            gzip: v.gzip.and_then(variant),
        };
        (e.br.is_some() || e.gzip.is_some()).then_some(e)
    }
}

/// A content coding the edge sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Br,
    Gzip,
}

impl Coding {
    pub fn name(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }
}

/// The coding to send for `accept` (an `Accept-Encoding` value) given which variants exist: the
/// highest q-value wins, brotli before gzip on a tie, and identity only where the client ranks
/// it above both; `None` is identity (also when the client refuses everything: a 406 helps no
/// visitor).
pub fn choose(accept: &str, has_br: bool, has_gzip: bool) -> Option<Coding> {
    let (mut br, mut gzip, mut identity, mut star) = (None, None, None, None);
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        for p in parts {
            if let Some(v) = p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")) {
                q = v.trim().parse::<f32>().unwrap_or(0.0).clamp(0.0, 1.0);
            }
        }
        match name.as_str() {
            "br" => br = Some(q),
            "gzip" | "x-gzip" => gzip = Some(q),
            "identity" => identity = Some(q),
            "*" => star = Some(q),
            _ => {}
        }
    }
    // Codings it does not name take `*`'s q.
    let br = if has_br {
        br.or(star).unwrap_or(0.0)
    } else {
        0.0
    };
    let gzip = if has_gzip {
        gzip.or(star).unwrap_or(0.0)
    } else {
        0.0
    };
    // Identity wins only where the client names it above both (a browser never does).
    let identity = identity.unwrap_or(0.0);
    let best = br.max(gzip);
    if best <= 0.0 || best < identity {
        return None;
    }
    Some(if br >= gzip { Coding::Br } else { Coding::Gzip })
}

/// Makes and stores the variants of one blob, pinned until the guard is dropped; `None` if the
/// blob is gone (nothing is recorded then, so a later deploy of the same file tries again).
fn compress_blob(store: &Store, sha: &str) -> Result<Option<(Variants, Pinned)>, String> {
    let path = match store.blobs.local(sha) {
        Ok(p) => p,
        Err(resellerd_store::error::StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let data = match std::fs::metadata(&path) {
        Ok(m) if !(MIN_SIZE..=MAX_SIZE).contains(&m.len()) => {
            return Ok(Some((Variants::default(), store.blobs.pin([]))))
        }
        Ok(_) => match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let quality = if data.len() <= BEST_BROTLI_MAX { 11 } else { 6 };
    let mut br = brotli::CompressorWriter::new(Vec::new(), 64 * 1024, quality, 22);
    br.write_all(&data).map_err(|e| e.to_string())?;
    let br = br.into_inner();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&data).map_err(|e| e.to_string())?;
    let gz = gz.finish().map_err(|e| e.to_string())?;
    let keep = |v: &Vec<u8>| (v.len() as f64) <= data.len() as f64 * WORTH;
    let (br, gz) = (Some(br).filter(keep), Some(gz).filter(keep));
    // Pinned before they are stored, until they are recorded: a sweep meanwhile (a deploy
    // deleted) must not take them.
    let pinned = store
        .blobs
        .pin(br.iter().chain(gz.iter()).map(|v| sha1_hex(v)));
    let store_one = |v: Option<Vec<u8>>| -> Result<Option<String>, String> {
        v.map(|v| store.blobs.put(&v).map_err(|e| e.to_string()))
            .transpose()
    };
    let variants = Variants {
        br: store_one(br)?,
        gzip: store_one(gz)?,
    };
    Ok(Some((variants, pinned)))
}

/// Compresses the compressible files of one queued deploy that have no record yet, then takes it
/// off the queue. A deploy that is gone has no files and leaves the queue at once.
fn compress_deploy(store: &Store, deploy_id: &str) -> Result<usize, String> {
    let files = store
        .deploys()
        .files(deploy_id)
        .map_err(|e| e.to_string())?;
    let mut done = std::collections::HashSet::new();
    let mut made = 0;
    for (path, sha) in files {
        if !compressible(&super::serve::content_type(&path)) || !done.insert(sha.clone()) {
            continue;
        }
        if store
            .encodings()
            .get(&sha)
            .map_err(|e| e.to_string())?
            .is_some()
        {
            continue;
        }
        // A file that cannot be read or stored now is served as it is; the others still get
        // their variants (one bad file must not hold the queue).
        let (variants, _pinned) = match compress_blob(store, &sha) {
            Ok(Some(made)) => made,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(deploy = %deploy_id, path = %path, error = %e, "cannot compress a file; it is served uncompressed");
                continue;
            }
        };
        store
            .encodings()
            .set(&sha, &variants)
            .map_err(|e| e.to_string())?;
        made += usize::from(!variants.is_empty());
    }
    store
        .encodings()
        .dequeue(deploy_id)
        .map_err(|e| e.to_string())?;
    Ok(made)
}

/// Runs the compressor on a thread of its own at the lowest CPU priority (nice 19), so deploys'
/// variants are made with the time requests leave over.
pub fn start(store: Store) -> Result<(), String> {
    std::thread::Builder::new()
        .name("compressor".into())
        .spawn(move || {
            let _ = rustix::process::nice(19);
            loop {
                match store.encodings().next_queued() {
                    Ok(Some(id)) => match compress_deploy(&store, &id) {
                        Ok(made) => tracing::debug!(deploy = %id, made, "compressed a deploy's files"),
                        Err(e) => {
                            tracing::warn!(deploy = %id, error = %e, "cannot compress a deploy's files; trying again in a minute");
                            std::thread::sleep(std::time::Duration::from_secs(60));
                        }
                    },
                    Ok(None) => std::thread::sleep(POLL),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the compression queue");
                        std::thread::sleep(std::time::Duration::from_secs(60));
                    }
                }
            }
        })
        .map(drop)
        .map_err(|e| format!("cannot start the compressor thread: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_is_read_with_its_q_values() {
        assert_eq!(
            choose("gzip, deflate, br, zstd", true, true),
            Some(Coding::Br)
        );
        assert_eq!(choose("gzip, deflate", true, true), Some(Coding::Gzip));
        assert_eq!(choose("br;q=0.5, gzip", true, true), Some(Coding::Gzip));
        assert_eq!(choose("br;q=0, gzip;q=0", true, true), None);
        assert_eq!(choose("", true, true), None);
        assert_eq!(choose("br", false, true), None);
        assert_eq!(choose("*", true, true), Some(Coding::Br));
        assert_eq!(choose("identity, br;q=0.5", true, true), None);
        assert_eq!(choose("BR", true, false), Some(Coding::Br));
        assert_eq!(
            choose("gzip;q=1.0, identity;q=0", false, true),
            Some(Coding::Gzip)
        );
    }

    #[test]
    fn only_what_compresses_is_compressed() {
        for t in [
            "text/html; charset=utf-8",
            "application/javascript; charset=utf-8",
            "image/svg+xml",
            "application/wasm",
            "font/ttf",
        ] {
            assert!(compressible(t), "{t}");
        }
        for t in ["image/png", "font/woff2", "application/zip", "video/mp4"] {
            assert!(!compressible(t), "{t}");
        }
    }
}
