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

/// Where access lines go (`--access-log`): with the server's log (the default: a self-hosted
/// server is expected to show its requests, as Caddy and nginx do, and journald or the
/// container runtime already rotate that stream), nowhere, or to a file of their own that is
/// rotated daily (`PATH.YYYY-MM-DD`), for log analyzers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessSink {
    Log,
    Off,
    File(std::path::PathBuf),
}

/// The shape of an access line (`--access-log-format`): JSON, or Apache's virtual-host combined
/// format (`host:port client - - [time] "request" status bytes "referer" "user agent"`), which
/// log analyzers such as GoAccess (`VCOMBINED`) read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessFormat {
    Json,
    Combined,
}

/// Parses `--access-log` and `--access-log-format`.
pub fn access_settings(
    sink: Option<&str>,
    format: Option<&str>,
) -> Result<(AccessSink, AccessFormat), String> {
    let sink =
        match sink.map(str::trim) {
            None | Some("log") => AccessSink::Log,
            Some("off") => AccessSink::Off,
            Some("") => return Err(
                "--access-log: log (with the server's log), off, or a file path (rotated daily)"
                    .into(),
            ),
            Some(path) => AccessSink::File(path.into()),
        };
    let format = match format.map(str::trim) {
        None | Some("json") => AccessFormat::Json,
        Some("combined") => AccessFormat::Combined,
        Some(other) => {
            return Err(format!(
                "--access-log-format: {other:?} is not a format: json (one JSON object a line) or \
                 combined (Apache's virtual-host combined format, for log analyzers)"
            ))
        }
    };
    if format == AccessFormat::Combined && sink == AccessSink::Log {
        return Err(
            "--access-log-format combined needs --access-log PATH: the server's own log has one \
             format (--log-format)"
                .into(),
        );
    }
    Ok((sink, format))
}

/// Where and how access lines are written, once `init_access` ran.
struct Access {
    sink: AccessSink,
    format: AccessFormat,
    /// The rotating file's writer, for `AccessSink::File`.
    file: Option<NonBlocking>,
}

static ACCESS: OnceLock<Access> = OnceLock::new();

/// Sets where access lines go; for a file, opens it (making its directory) and returns the
/// guard that flushes it at exit.
pub fn init_access(
    sink: AccessSink,
    format: AccessFormat,
) -> Result<Option<tracing_appender::non_blocking::WorkerGuard>, String> {
    let (file, guard) = match &sink {
        AccessSink::File(path) => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => std::path::PathBuf::from("."),
            };
            let prefix = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| format!("--access-log {}: not a file name", path.display()))?;
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("--access-log: cannot create {}: {e}", dir.display()))?;
            let appender = tracing_appender::rolling::RollingFileAppender::builder()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix(prefix)
                .build(&dir)
                .map_err(|e| format!("--access-log {}: {e}", path.display()))?;
            let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .lossy(false)
                .finish(appender);
            (Some(writer), Some(guard))
        }
        _ => (None, None),
    };
    let _ = ACCESS.set(Access { sink, format, file });
    Ok(guard)
}

/// Whether access lines are written at all (a request then pays for none of their fields).
pub fn access_enabled() -> bool {
    access_format().is_some()
}

/// The format access lines are written in, if they are written at all: a request gathers only
/// what its line will say (the referer, user agent and protocol only for `Combined`).
pub fn access_format() -> Option<AccessFormat> {
    match ACCESS.get() {
        Some(Access {
            sink: AccessSink::Off,
            ..
        }) => None,
        Some(Access {
            sink: AccessSink::File(_),
            format,
            ..
        }) => Some(*format),
        _ => {
            tracing::enabled!(target: "access", tracing::Level::INFO).then_some(AccessFormat::Json)
        }
    }
}

/// What an access line says of one answered request.
pub struct AccessLine<'a> {
    pub method: &'a str,
    pub host: &'a str,
    /// The listener's port (the combined format's `%p`).
    pub port: u16,
    pub path: &'a str,
    /// The query string, without `?` (empty: none).
    pub query: &'a str,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub version: &'a str,
    pub status: u16,
    /// Body bytes sent (None: not known in advance, a stream).
    pub bytes: Option<u64>,
    pub ms: f64,
    /// The client's address, from the trusted-proxy rules (`http::client_ip`).
    pub client: Option<std::net::IpAddr>,
    /// The site that answered, when the edge did.
    pub site: Option<&'a str>,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// One access line per answered request: to its own file, or with the server's log (target
/// `access`, so `RUST_LOG` filters it like any other). JSON is formatted here, in the shape the
/// JSON formatter gives every other event, which costs a fraction of a generic event's
/// formatting.
pub fn access(a: &AccessLine) {
    // Microseconds are all a person or a dashboard reads in a request's time.
    let ms = (a.ms * 1000.0).round() / 1000.0;
    let (writer, format) = match ACCESS.get() {
        Some(Access {
            sink: AccessSink::Off,
            ..
        }) => return,
        Some(Access {
            file: Some(file),
            format,
            ..
        }) => (file, *format),
        _ => match JSON_WRITER.get() {
            Some(writer) => (writer, AccessFormat::Json),
            None => {
                let client = a.client.map(|i| i.to_string()).unwrap_or_default();
                let (method, host, path, status) = (a.method, a.host, a.path, a.status);
                let site = a.site.unwrap_or_default();
                let bytes = a.bytes.map_or(-1, |b| b as i64);
                tracing::info!(target: "access", method, host, path, status, bytes, ms, client, site);
                return;
            }
        },
    };
    thread_local! {
        static LINE: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(256));
    }
    LINE.with_borrow_mut(|line| {
        line.clear();
        // Log lines carry the wall clock with microseconds, not the domain clock.
        #[allow(clippy::disallowed_methods)]
        let now = chrono::Utc::now();
        match format {
            AccessFormat::Json => json_line(line, now, a, ms),
            AccessFormat::Combined => combined_line(line, now, a),
        }
        let _ = writer.clone().write_all(line);
    });
}

fn json_line(line: &mut Vec<u8>, now: chrono::DateTime<chrono::Utc>, a: &AccessLine, ms: f64) {
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
    let _ = serde_json::to_writer(&mut *line, a.method);
    line.extend_from_slice(b",\"host\":");
    let _ = serde_json::to_writer(&mut *line, a.host);
    line.extend_from_slice(b",\"path\":");
    let _ = serde_json::to_writer(&mut *line, a.path);
    let _ = write!(line, ",\"status\":{}", a.status);
    if let Some(bytes) = a.bytes {
        let _ = write!(line, ",\"bytes\":{bytes}");
    }
    let _ = write!(line, ",\"ms\":{ms},\"client\":\"");
    if let Some(ip) = a.client {
        let _ = write!(line, "{ip}");
    }
    line.push(b'"');
    if let Some(site) = a.site {
        line.extend_from_slice(b",\"site\":");
        let _ = serde_json::to_writer(&mut *line, site);
    }
    line.extend_from_slice(b"},\"target\":\"access\"}\n");
}

/// `host:port client - - [07/Dec/2026:18:20:00 +0000] "GET /path?q HTTP/1.1" 200 1234
/// "referer" "user agent"`. What a client sent is escaped (`"` and `\` with a backslash, other
/// bytes outside printable ASCII as `\xHH`), so a client cannot split or forge a line.
fn combined_line(line: &mut Vec<u8>, now: chrono::DateTime<chrono::Utc>, a: &AccessLine) {
    escape(line, a.host);
    let _ = write!(line, ":{} ", a.port);
    match a.client {
        Some(ip) => {
            let _ = write!(line, "{ip}");
        }
        None => line.push(b'-'),
    }
    let _ = write!(line, " - - [{}] \"", now.format("%d/%b/%Y:%H:%M:%S %z"));
    escape(line, a.method);
    line.push(b' ');
    escape(line, a.path);
    if !a.query.is_empty() {
        line.push(b'?');
        escape(line, a.query);
    }
    line.push(b' ');
    escape(line, a.version);
    let _ = write!(line, "\" {} ", a.status);
    match a.bytes {
        Some(bytes) => {
            let _ = write!(line, "{bytes}");
        }
        None => line.push(b'-'),
    }
    for text in [a.referer, a.user_agent] {
        line.extend_from_slice(b" \"");
        match text {
            None | Some("") => line.push(b'-'),
            Some(text) => escape(line, text),
        }
        line.push(b'"');
    }
    line.push(b'\n');
}

fn escape(line: &mut Vec<u8>, text: &str) {
    for &b in text.as_bytes() {
        match b {
            b'"' | b'\\' => {
                line.push(b'\\');
                line.push(b);
            }
            0x20..=0x7e => line.push(b),
            _ => {
                let _ = write!(line, "\\x{b:02X}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_combined_line_escapes_what_the_client_sent() {
        let a = AccessLine {
            method: "GET",
            host: "shop.example",
            port: 443,
            path: "/a\"b",
            query: "q=1",
            version: "HTTP/1.1",
            status: 200,
            bytes: Some(12),
            ms: 1.5,
            client: Some("192.0.2.1".parse().unwrap()),
            site: Some("s1"),
            referer: None,
            user_agent: Some("evil\n127.0.0.1 - - [forged]"),
        };
        let mut line = Vec::new();
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-07T18:20:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        combined_line(&mut line, now, &a);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "shop.example:443 192.0.2.1 - - [07/Dec/2026:18:20:00 +0000] \"GET /a\\\"b?q=1 HTTP/1.1\" \
             200 12 \"-\" \"evil\\x0A127.0.0.1 - - [forged]\"\n"
        );
    }

    #[test]
    fn access_settings_say_what_they_take() {
        assert_eq!(
            access_settings(None, None).unwrap(),
            (AccessSink::Log, AccessFormat::Json)
        );
        assert_eq!(
            access_settings(Some("off"), None).unwrap().0,
            AccessSink::Off
        );
        assert!(access_settings(None, Some("combined")).is_err());
        assert!(access_settings(Some("/tmp/a.log"), Some("clf")).is_err());
        assert_eq!(
            access_settings(Some("/tmp/a.log"), Some("combined")).unwrap(),
            (
                AccessSink::File("/tmp/a.log".into()),
                AccessFormat::Combined
            )
        );
    }
}
