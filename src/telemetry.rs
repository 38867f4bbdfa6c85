//! Logging: pretty lines on a terminal, JSON lines otherwise; `RUST_LOG` filters.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use tracing_appender::non_blocking::NonBlocking;
use tracing_subscriber::EnvFilter;

/// The log writer, when lines are JSON: access lines are written to it directly (see `access`).
static JSON_WRITER: OnceLock<NonBlocking> = OnceLock::new();

/// Whether the log format `format` (`json`, `text` (or `pretty`), or `auto`/None) writes JSON
/// lines here.
pub fn is_json(format: Option<&str>) -> bool {
    match format.unwrap_or("auto") {
        "json" => true,
        "text" | "pretty" => false,
        _ => !std::io::stderr().is_terminal(),
    }
}

/// Checks a `--log-format` value.
pub fn check_format(format: Option<&str>) -> Result<(), String> {
    match format {
        None | Some("auto" | "text" | "pretty" | "json") => Ok(()),
        Some(other) => Err(format!(
            "--log-format: {other:?} is not a format: text (lines for people), json (one JSON object a line) or auto (text on a terminal, JSON otherwise)"
        )),
    }
}

/// Installs the subscriber. Lines are written to stderr by a background thread (never dropped:
/// a full queue makes the logger wait), so request threads do not pay for a write per line;
/// keep the returned guard alive until exit, when it flushes what is queued.
pub fn init(format: Option<&str>) -> tracing_appender::non_blocking::WorkerGuard {
    // actix-http logs a client's malformed or oversized request head at ERROR; the client already
    // got its 4xx, so those lines are noise unless RUST_LOG asks for actix_http explicitly.
    let quiet = "actix_http::h1::dispatcher=off";
    // The framework's own chatter (runtime found, workers started and stopped) is DEBUG, unless
    // RUST_LOG names those targets itself.
    let chatter = ["sled=warn", "actix_server=warn", "actix_rt=warn", quiet];
    let asked = std::env::var("RUST_LOG").unwrap_or_default();
    let mut directives = match asked.trim() {
        "" => "info".to_string(),
        v => v.to_string(),
    };
    for d in chatter {
        let krate = d.split(['=', ':']).next().unwrap_or(d);
        if !asked.contains(krate) {
            directives.push(',');
            directives.push_str(d);
        }
    }
    let filter = EnvFilter::new(directives);
    let json = is_json(format);
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        // Buffered: the writer thread writes whatever lines are queued with one syscall and
        // flushes whenever the queue is empty, so no line waits.
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer.clone());
    let _ = if json {
        let _ = JSON_WRITER.set(writer);
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    guard
}

/// One access log line per answered request (target `access`, so `RUST_LOG` filters it like
/// any other). In JSON mode the line is formatted here, in the shape the JSON formatter gives
/// every other event, which costs a fraction of a generic event's formatting.
pub fn access(
    method: &str,
    host: &str,
    path: &str,
    status: u16,
    ms: f64,
    client: Option<std::net::IpAddr>,
) {
    // Microseconds are all a person or a dashboard reads in a request's time.
    let ms = (ms * 1000.0).round() / 1000.0;
    let Some(writer) = JSON_WRITER.get() else {
        let client = client.map(|i| i.to_string()).unwrap_or_default();
        tracing::info!(target: "access", method, host, path, status, ms, client);
        return;
    };
    thread_local! {
        static LINE: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(256));
    }
    LINE.with_borrow_mut(|line| {
        line.clear();
        // Log lines carry the wall clock with microseconds, not the domain clock.
        #[allow(clippy::disallowed_methods)]
        let now = chrono::Utc::now();
        let mut stamp = [0; 27];
        line.extend_from_slice(b"{\"timestamp\":\"");
        match crate::model::write_rfc3339(now, &mut stamp) {
            Some(text) => line.extend_from_slice(text.as_bytes()),
            None => line.extend_from_slice(
                now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                    .as_bytes(),
            ),
        }
        line.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{\"method\":");
        let _ = serde_json::to_writer(&mut *line, method);
        line.extend_from_slice(b",\"host\":");
        let _ = serde_json::to_writer(&mut *line, host);
        line.extend_from_slice(b",\"path\":");
        let _ = serde_json::to_writer(&mut *line, path);
        let _ = write!(line, ",\"status\":{status},\"ms\":{ms},\"client\":\"");
        if let Some(ip) = client {
            let _ = write!(line, "{ip}");
        }
        line.extend_from_slice(b"\"},\"target\":\"access\"}\n");
        let _ = writer.clone().write_all(line);
    });
}
