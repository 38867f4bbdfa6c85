//! Serving a deploy's files: path lookup with directory index and pretty URLs, redirect and
//! header rules, Content-Type, ETag/If-None-Match, Range and Cache-Control.

use super::variants::{self, Coding, Encoded, Variant};
use crate::error::ApiError;
use crate::error::ApiResult;
use crate::rules::{self, HeaderRule, Redirect};
use crate::store::blobs::Blobs;
use crate::store::deploys::Deploy;
use crate::store::Store;
use actix_web::body::{BoxBody, SizedStream};
use actix_web::http::{header, StatusCode};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use std::collections::HashMap;
use std::sync::Arc;

/// Deploy files the edge never serves: they configure it (as does anything under `.netlify/`,
/// where netlify-cli puts edge functions).
const HIDDEN: [&str; 3] = ["netlify.toml", "_redirects", "_headers"];

pub const CACHE_CONTROL: &str = "public, max-age=0, must-revalidate";

/// One servable file with its response headers worked out once.
pub struct FileEntry {
    pub sha: String,
    pub etag: header::HeaderValue,
    pub content_type: header::HeaderValue,
    /// Its precompressed variants, once made (`variants`).
    pub encoded: Option<Box<Encoded>>,
}

impl FileEntry {
    fn new(store: &Store, path: &str, sha: String) -> ApiResult<Option<FileEntry>> {
        let content_type = content_type(path);
        let encoded = match variants::compressible(&content_type) {
            true => store
                .encodings()
                .get(&sha)?
                .and_then(Encoded::from_record)
                .map(Box::new),
            false => None,
        };
        let (Ok(etag), Ok(content_type)) = (
            header::HeaderValue::try_from(format!("\"{sha}\"")),
            header::HeaderValue::try_from(content_type),
        ) else {
            return Ok(None);
        };
        Ok(Some(FileEntry {
            etag,
            content_type,
            encoded,
            sha,
        }))
    }

    /// What to send for `req`: the original's digest, or a variant's with its coding. A range
    /// request always gets the original (ranges of a compressed variant help no client).
    pub fn negotiate(&self, req: &HttpRequest) -> (&str, Option<(Coding, &Variant)>) {
        let (Some(encoded), None) = (&self.encoded, req.headers().get(header::RANGE)) else {
            return (&self.sha, None);
        };
        let accept = req
            .headers()
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let chosen = match variants::choose(accept, encoded.br.is_some(), encoded.gzip.is_some()) {
            Some(Coding::Br) => encoded.br.as_ref().map(|v| (Coding::Br, v)),
            Some(Coding::Gzip) => encoded.gzip.as_ref().map(|v| (Coding::Gzip, v)),
            None => None,
        };
        match chosen {
            Some((coding, v)) => (&v.sha, Some((coding, v))),
            None => (&self.sha, None),
        }
    }
}

/// What the edge needs of a ready deploy, built once per deploy (deploys never change).
pub struct DeployIndex {
    pub files: HashMap<String, FileEntry>,
    pub redirects: rules::RuleSet<Redirect>,
    pub headers: rules::RuleSet<HeaderRule>,
    /// When the deploy was made ready, to the second: every file's `Last-Modified` (a CDN in
    /// front revalidates with `If-Modified-Since` as well as with the ETag).
    pub modified: std::time::SystemTime,
    pub last_modified: header::HeaderValue,
    /// Roughly what this index holds in memory, for the cache's byte budget.
    pub bytes: usize,
    /// True if the deploy's files were still being compressed when this was built: the edge
    /// builds it again once they are done.
    pub encoding: bool,
}

impl DeployIndex {
    pub fn build(store: &Store, deploy: &Deploy) -> ApiResult<DeployIndex> {
        let files = store.deploys().files(&deploy.id)?;
        // A rules file that cannot be read now (a remote blob store that does not answer) fails
        // the request instead of caching an index without its rules; one that is gone is none.
        let read = |name: &str| -> ApiResult<Option<String>> {
            let Some(sha) = files.get(name) else {
                return Ok(None);
            };
            match store.blobs.read(sha) {
                Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
                Err(resellerd_store::error::StoreError::NotFound(_)) => Ok(None),
                Err(e) => Err(e.into()),
            }
        };
        // Netlify's order: `_redirects` rules first, then netlify.toml's.
        let mut redirects = read("_redirects")?
            .map(|t| rules::parse_redirects_file(&t))
            .unwrap_or_default();
        let mut headers = read("_headers")?
            .map(|t| rules::parse_headers_file(&t))
            .unwrap_or_default();
        if let Some(t) = read("netlify.toml")? {
            let (r, h) = rules::parse_netlify_toml(&t);
            redirects.extend(r);
            headers.extend(h);
        }
        // Asked before the variants are read: one recorded after this is picked up next time.
        let encoding = store.encodings().is_queued(&deploy.id)?;
        let mut entries = HashMap::with_capacity(files.len());
        for (p, sha) in files {
            if HIDDEN.contains(&p.as_str()) || p.starts_with(".netlify/") {
                continue;
            }
            if let Some(e) = FileEntry::new(store, &p, sha)? {
                entries.insert(p, e);
            }
        }
        let files = entries;
        let bytes = files
            .iter()
            .map(|(p, e)| p.len() + 200 + e.encoded.as_ref().map_or(0, |_| 200))
            .sum::<usize>()
            + redirects
                .iter()
                .map(|r| r.from.len() + r.to.len() + 80)
                .sum::<usize>()
            + headers
                .iter()
                .map(|h| {
                    h.pattern.len()
                        + h.values
                            .iter()
                            .map(|(k, v)| k.len() + v.len() + 48)
                            .sum::<usize>()
                        + 80
                })
                .sum::<usize>();
        let modified = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs((deploy.updated_at.0 / 1000).max(0) as u64);
        Ok(DeployIndex {
            files,
            redirects: rules::RuleSet::new(redirects, |r| r.from.as_str()),
            headers: rules::RuleSet::new(headers, |h| h.pattern.as_str()),
            modified,
            last_modified: http_date(modified),
            bytes,
            encoding,
        })
    }

    /// The file a URL path names: exact, `dir/` -> `dir/index.html`, `/a` -> `a.html` or `a/index.html`.
    pub fn lookup(&self, path: &str) -> Option<&FileEntry> {
        let p = path.trim_start_matches('/');
        if p.is_empty() || p.ends_with('/') {
            return self.files.get(&format!("{p}index.html"));
        }
        self.files
            .get(p)
            .or_else(|| self.files.get(&format!("{p}.html")))
            .or_else(|| self.files.get(&format!("{p}/index.html")))
    }
}

/// A file's bytes: in memory, or an open blob streamed in chunks.
pub enum Content {
    Memory(Bytes),
    Disk(Arc<std::fs::File>, u64),
}

const CHUNK: u64 = 256 * 1024;

impl Content {
    /// Opens a blob; files up to `in_memory_max` bytes are read whole.
    pub fn open(blobs: &Blobs, sha: &str, in_memory_max: usize) -> ApiResult<Content> {
        let missing = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => ApiError::NotFound("file"),
            _ => ApiError::internal_in("blob store", e),
        };
        if !crate::store::blobs::is_sha1(sha) {
            return Err(ApiError::NotFound("file"));
        }
        let file = std::fs::File::open(blobs.local(sha)?).map_err(missing)?;
        let len = file.metadata().map_err(missing)?.len();
        if len <= in_memory_max as u64 {
            let mut data = Vec::with_capacity(len as usize);
            std::io::Read::read_to_end(&mut &file, &mut data).map_err(missing)?;
            return Ok(Content::Memory(Bytes::from(data)));
        }
        Ok(Content::Disk(Arc::new(file), len))
    }

    pub fn size(&self) -> u64 {
        match self {
            Content::Memory(b) => b.len() as u64,
            Content::Disk(_, len) => *len,
        }
    }

    /// The bytes `start..=end` as a response body.
    fn body(self, start: u64, end: u64) -> BoxBody {
        match self {
            Content::Memory(b) => memory_body(b.slice(start as usize..=end as usize)),
            Content::Disk(file, _) => {
                let stream = futures_util::stream::unfold(start, move |pos| {
                    let file = file.clone();
                    async move {
                        if pos > end {
                            return None;
                        }
                        let n = (end + 1 - pos).min(CHUNK) as usize;
                        let read = actix_web::web::block(move || {
                            use std::os::unix::fs::FileExt;
                            let mut buf = vec![0u8; n];
                            file.read_exact_at(&mut buf, pos).map(|_| Bytes::from(buf))
                        })
                        .await;
                        let chunk = match read {
                            Ok(r) => r,
                            Err(e) => Err(std::io::Error::other(e.to_string())),
                        };
                        Some((chunk, pos + n as u64))
                    }
                });
                BoxBody::new(SizedStream::new(end + 1 - start, stream))
            }
        }
    }
}

/// Bytes in memory as a body: over 64 KiB, in 64 KiB slices of the same buffer (no copy), which
/// the connection's write path then copies a cache-sized piece at a time (one 1 MiB chunk grows
/// its buffers to a megabyte and every copy misses the cache: about a fifth fewer requests/s on
/// a 1 MiB file over TLS, where copying was 42 % of the server's CPU).
fn memory_body(b: Bytes) -> BoxBody {
    const SLICE: usize = 64 * 1024;
    if b.len() <= SLICE {
        return BoxBody::new(b);
    }
    let len = b.len() as u64;
    let slices = futures_util::stream::iter(
        (0..b.len())
            .step_by(SLICE)
            .map(move |at| Ok::<_, std::io::Error>(b.slice(at..(at + SLICE).min(b.len())))),
    );
    BoxBody::new(SizedStream::new(len, slices))
}

/// Where a request ends up.
pub enum Route<'a> {
    File {
        file: &'a FileEntry,
        status: StatusCode,
    },
    Redirect {
        location: String,
        status: StatusCode,
    },
    /// A 200 rule to an absolute URL: proxied if its origin is one of the reseller's proxy
    /// profiles, else a 302 to it.
    External {
        url: String,
    },
    NotFound,
}

/// Applies the redirect rules (a rule that is not forced yields to an existing file).
pub fn route<'a>(ix: &'a DeployIndex, path: &str) -> Route<'a> {
    let found = ix.lookup(path);
    for rule in ix.redirects.candidates(path) {
        let Some(caps) = rules::match_pattern(&rule.from, path) else {
            continue;
        };
        if found.is_some() && !rule.force {
            continue;
        }
        let status = StatusCode::from_u16(rule.status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
        let external = rule.to.starts_with("http://") || rule.to.starts_with("https://");
        if status == StatusCode::OK && external {
            // May be proxied with the reseller's secret headers: the visitor's part of the
            // path stays inside the rule's.
            match rules::expand_url(&rule.to, &caps) {
                Some(url) => return Route::External { url },
                None => continue,
            }
        }
        let to = rules::expand(&rule.to, &caps);
        if (status == StatusCode::OK || status == StatusCode::NOT_FOUND) && !external {
            let target = to.split('?').next().unwrap_or("");
            if let Some(file) = ix.lookup(target) {
                return Route::File { file, status };
            }
            continue;
        }
        let status = if status.is_redirection() {
            status
        } else {
            StatusCode::FOUND
        };
        return Route::Redirect {
            location: to,
            status,
        };
    }
    match found {
        Some(file) => Route::File {
            file,
            status: StatusCode::OK,
        },
        None => Route::NotFound,
    }
}

pub fn content_type(path: &str) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let textual = mime.type_() == "text"
        || matches!(
            mime.essence_str(),
            "application/javascript" | "application/json" | "image/svg+xml" | "application/xml"
        );
    if textual {
        format!("{}; charset=utf-8", mime.essence_str())
    } else {
        mime.essence_str().to_string()
    }
}

/// A single `bytes=` range resolved against `len`: Ok(None) means serve everything,
/// Err(()) means unsatisfiable.
fn parse_range(value: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (start, end) = match (a.trim(), b.trim()) {
        ("", "") => return Ok(None),
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len.saturating_sub(1))
        }
        (s, e) => {
            let s: u64 = s.parse().map_err(|_| ())?;
            let e: u64 = if e.is_empty() {
                len.saturating_sub(1)
            } else {
                e.parse::<u64>().map_err(|_| ())?.min(len.saturating_sub(1))
            };
            (s, e)
        }
    };
    if len == 0 || start >= len || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// `time` as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn http_date(time: std::time::SystemTime) -> header::HeaderValue {
    header::HeaderValue::try_from(header::HttpDate::from(time).to_string()).unwrap_or(
        header::HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
    )
}

/// True if the client's copy is current: its `If-None-Match` names the ETag, or (only when it
/// sent none, as RFC 9110 says) its `If-Modified-Since` is no earlier than the deploy.
fn not_modified(req: &HttpRequest, etag: &str, modified: std::time::SystemTime) -> bool {
    let text = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(inm) = text(header::IF_NONE_MATCH) {
        return inm
            .split(',')
            .any(|t| t.trim() == "*" || t.trim().trim_start_matches("W/") == etag);
    }
    text(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.parse::<header::HttpDate>().ok())
        .is_some_and(|since| std::time::SystemTime::from(since) >= modified)
}

/// Answers with a file's bytes (or those of the variant `coding` names, see
/// `FileEntry::negotiate`), honouring If-None-Match, If-Modified-Since and Range.
pub fn file_response(
    req: &HttpRequest,
    ix: &DeployIndex,
    url_path: &str,
    file: &FileEntry,
    status: StatusCode,
    (data, coding): (Content, Option<(Coding, &Variant)>),
) -> HttpResponse {
    let etag_value = coding.map_or(&file.etag, |(_, v)| &v.etag);
    let etag = etag_value.to_str().unwrap_or_default();
    let mut b = HttpResponse::build(status);
    if let Some((coding, _)) = coding {
        b.insert_header((header::CONTENT_ENCODING, coding.name()));
    }
    if file.encoded.is_some() {
        b.insert_header((header::VARY, "Accept-Encoding"));
    }
    b.insert_header((header::ETAG, etag_value.clone()))
        .insert_header((header::LAST_MODIFIED, ix.last_modified.clone()))
        .insert_header((header::CACHE_CONTROL, CACHE_CONTROL))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::CONTENT_TYPE, file.content_type.clone()));
    for rule in ix.headers.candidates(url_path) {
        if rules::match_pattern(&rule.pattern, url_path).is_some() {
            for (k, v) in &rule.values {
                if let (Ok(k), Ok(v)) = (
                    header::HeaderName::try_from(k.as_str()),
                    header::HeaderValue::try_from(v.as_str()),
                ) {
                    b.insert_header((k, v));
                }
            }
        }
    }
    let len = data.size();
    if status != StatusCode::OK {
        return b.body(whole(data));
    }
    if not_modified(req, etag, ix.modified) {
        b.status(StatusCode::NOT_MODIFIED);
        return b.finish();
    }
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    match range.map(|r| parse_range(r, len)) {
        Some(Ok(Some((start, end)))) => {
            b.status(StatusCode::PARTIAL_CONTENT)
                .insert_header((header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}")));
            b.body(data.body(start, end))
        }
        Some(Err(())) => {
            b.status(StatusCode::RANGE_NOT_SATISFIABLE)
                .insert_header((header::CONTENT_RANGE, format!("bytes */{len}")));
            b.finish()
        }
        _ => b.body(whole(data)),
    }
}

fn whole(data: Content) -> BoxBody {
    match data {
        Content::Memory(b) => memory_body(b),
        Content::Disk(_, 0) => BoxBody::new(Bytes::new()),
        disk => {
            let end = disk.size() - 1;
            disk.body(0, end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=95-200", 100), Ok(Some((95, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
    }
}
