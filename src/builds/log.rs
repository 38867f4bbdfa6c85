//! A build's log as it runs: lines with their section, every secret (and its base64 forms)
//! replaced by `****` before anything is stored, written to the store in batches (at least every
//! half second) and bounded (`store::builds::MAX_LOG_LINES`, `MAX_LOG_BYTES`).

use crate::model::Timestamp;
use crate::store::builds::{LogLine, MAX_LOG_BYTES, MAX_LOG_LINES};
use crate::store::Store;
use base64::Engine;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Secrets shorter than this are not masked (they would hide ordinary words).
const MIN_SECRET: usize = 4;
const FLUSH_EVERY: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Log(Arc<Mutex<Inner>>);

struct Inner {
    store: Store,
    build_id: String,
    section: String,
    next: u32,
    bytes: usize,
    cut: bool,
    pending: Vec<LogLine>,
    secrets: Vec<String>,
    last_flush: Instant,
}

/// The forms of a secret that must not appear: itself and its base64 encodings.
pub fn forms_of(secret: &str) -> Vec<String> {
    if secret.len() < MIN_SECRET {
        return Vec::new();
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut forms = vec![secret.to_string(), b64.encode(secret)];
    // Inside a longer base64 text the secret starts at one of three offsets: the characters
    // made of its bits alone are the same whatever surrounds it.
    for pad in 0..3usize {
        let mut shifted = vec![0u8; pad];
        shifted.extend_from_slice(secret.as_bytes());
        let enc = b64.encode(&shifted);
        let start = (pad * 8).div_ceil(6);
        let end = (shifted.len() * 8) / 6;
        if end > start {
            forms.push(enc[start..end].to_string());
        }
    }
    forms.retain(|f| f.len() >= MIN_SECRET);
    forms
}

/// `text` with every secret form replaced.
pub fn masked(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "****");
        }
    }
    out
}

impl Log {
    pub fn new(store: Store, build_id: &str) -> Log {
        // A build started again appends after what its first attempt wrote.
        let next = store
            .builds()
            .log(build_id, 0)
            .map(|l| l.last().map_or(0, |(n, _)| n + 1))
            .unwrap_or(0);
        Log(Arc::new(Mutex::new(Inner {
            store,
            build_id: build_id.to_string(),
            section: "initializing".into(),
            next,
            bytes: 0,
            cut: false,
            pending: Vec::new(),
            secrets: Vec::new(),
            last_flush: Instant::now(),
        })))
    }

    /// Masks these secrets in every line from now on.
    pub fn mask(&self, secrets: Vec<String>) {
        if let Ok(mut inner) = self.0.lock() {
            for s in secrets {
                inner.secrets.extend(forms_of(&s));
            }
            // Longest first, so a secret containing another is masked whole.
            inner.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
            inner.secrets.dedup();
        }
    }

    pub fn section(&self, name: &str) -> &Log {
        if let Ok(mut inner) = self.0.lock() {
            inner.section = name.to_string();
        }
        self
    }

    pub fn line(&self, message: &str) -> &Log {
        let Ok(mut inner) = self.0.lock() else {
            return self;
        };
        if inner.cut {
            return self;
        }
        let message = masked(message, &inner.secrets);
        inner.bytes += message.len();
        let message = if inner.bytes > MAX_LOG_BYTES
            || inner.next + inner.pending.len() as u32 + 1 >= MAX_LOG_LINES
        {
            inner.cut = true;
            "The log reached its size limit: later lines are not kept".to_string()
        } else {
            message
        };
        let section = inner.section.clone();
        inner.pending.push(LogLine {
            ts: Timestamp::now(),
            section,
            message,
        });
        if inner.last_flush.elapsed() >= FLUSH_EVERY || inner.pending.len() >= 200 {
            inner.flush();
        }
        self
    }

    /// Stores what waits once it has waited long enough (a build printing nothing for a while
    /// still shows what it printed last).
    pub fn tick(&self) {
        if let Ok(mut inner) = self.0.lock() {
            if inner.last_flush.elapsed() >= FLUSH_EVERY {
                inner.flush();
            }
        }
    }

    pub fn flush(&self) {
        if let Ok(mut inner) = self.0.lock() {
            inner.flush();
        }
    }
}

impl Inner {
    fn flush(&mut self) {
        self.last_flush = Instant::now();
        if self.pending.is_empty() {
            return;
        }
        let lines = std::mem::take(&mut self.pending);
        match self
            .store
            .builds()
            .append_log(&self.build_id, self.next, &lines)
        {
            Ok(next) => {
                self.next = next;
                super::durable(&self.store);
            }
            Err(e) => {
                tracing::warn!(build = %self.build_id, error = %e, "cannot store a build's log")
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_and_its_base64_forms_are_masked() {
        let secret = "s3cr3t-value-123";
        let forms = forms_of(secret);
        let b64 = base64::engine::general_purpose::STANDARD;
        for text in [
            format!("token={secret}!"),
            format!("auth: {}", b64.encode(secret)),
            format!("Basic {}", b64.encode(format!("user:{secret}"))),
            b64.encode(format!("ab{secret}cd")),
            b64.encode(format!("a{secret}")),
        ] {
            let out = masked(&text, &forms);
            assert!(!out.contains(secret), "{out}");
            assert!(out.contains("****"), "{text} -> {out}");
        }
        assert_eq!(masked("nothing here", &forms), "nothing here");
    }
}
