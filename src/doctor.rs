//! `resellerd doctor`: checks a deployment and prints one line per check (`ok`, `warn` or
//! `FAIL`): data dir permissions, free space, database, listening ports, certificate expiry,
//! the DNS resolver and the clock. Exits non-zero when any check fails.

use crate::config::Settings;
use crate::model::Timestamp;
use crate::store::certs::CertState;
use crate::store::{OpenError, Store};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

pub struct Finding {
    pub level: Level,
    pub check: &'static str,
    pub detail: String,
}

fn finding(level: Level, check: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        level,
        check,
        detail: detail.into(),
    }
}

/// Runs every check; the caller prints them.
pub fn run(settings: &Settings) -> Vec<Finding> {
    let dir = settings.data_dir();
    let mut out = vec![
        data_dir(&dir),
        free_space(settings, &dir),
        cache(settings),
        builds(settings),
    ];
    out.push(match settings.public_without_api_host() {
        Some(warning) => finding(Level::Warn, "api host", warning),
        None => finding(
            Level::Ok,
            "api host",
            "the API and panel answer on the names set",
        ),
    });
    out.extend(blob_store(settings));
    if let Some(url) = settings.database_url() {
        out.push(postgres(url));
        out.push(ports(settings, false, &dir));
        out.push(certificate(settings, &dir));
        out.push(resolver(settings));
        out.push(clock(&dir));
        return out;
    }
    let running = match crate::store::has_database(&dir) {
        false => {
            out.push(finding(
                Level::Warn,
                "database",
                "none yet: `serve` creates it",
            ));
            false
        }
        true => match crate::startup::open_data_dir(&dir) {
            Ok(store) => {
                out.push(finding(
                    Level::Ok,
                    "database",
                    format!(
                        "{} database opens and reads; no server is running on it",
                        store.engine()
                    ),
                ));
                out.extend(redb_space(&store, &dir));
                out.push(match store.unreferenced_blobs() {
                    Ok((0, _)) => finding(Level::Ok, "site files", "every stored file is named by a deploy"),
                    Ok((n, bytes)) => finding(
                        Level::Ok,
                        "site files",
                        format!(
                            "{n} files ({} MiB) no deploy names: the periodic sweep removes them once older than --blob-gc-grace",
                            bytes.div_ceil(1 << 20)
                        ),
                    ),
                    Err(e) => finding(Level::Warn, "site files", e.to_string()),
                });
                out.extend(stored_certificates(&store));
                false
            }
            Err(OpenError::Locked(_)) => {
                out.push(finding(Level::Ok, "database", "in use by a running server"));
                true
            }
            Err(e) => {
                out.push(finding(Level::Fail, "database", e.to_string()));
                false
            }
        },
    };
    out.push(ports(settings, running, &dir));
    out.push(certificate(settings, &dir));
    out.push(resolver(settings));
    out.push(clock(&dir));
    out
}

fn data_dir(dir: &Path) -> Finding {
    const CHECK: &str = "data dir";
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) => {
            return finding(
                Level::Warn,
                CHECK,
                format!("{}: {e} (serve creates it)", dir.display()),
            )
        }
    };
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    if let Err(e) = std::fs::write(&probe, b"probe") {
        return finding(
            Level::Fail,
            CHECK,
            format!("{} is not writable: {e}", dir.display()),
        );
    }
    let _ = std::fs::remove_file(&probe);
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o002 != 0 {
        return finding(
            Level::Fail,
            CHECK,
            format!(
                "{} is writable by every user (mode {mode:o}); run chmod 700 on it",
                dir.display()
            ),
        );
    }
    for secret in [
        "operator-token",
        "operator-token.sha256",
        "tls/self-signed.key",
    ] {
        if let Ok(m) = std::fs::metadata(dir.join(secret)) {
            if m.permissions().mode() & 0o077 != 0 {
                return finding(
                    Level::Fail,
                    CHECK,
                    format!("{secret} is readable by others; run chmod 600 on it"),
                );
            }
        }
    }
    if mode & 0o007 != 0 {
        return finding(
            Level::Warn,
            CHECK,
            format!(
                "{} can be read by every user (mode {mode:o}); run chmod 700 on it",
                dir.display()
            ),
        );
    }
    finding(
        Level::Ok,
        CHECK,
        format!("{} is writable and private (mode {mode:o})", dir.display()),
    )
}

/// The remote blob store, when one is set: reachable, and accepts a write, a read and a delete.
fn blob_store(settings: &Settings) -> Option<Finding> {
    const CHECK: &str = "blob store";
    Some(match settings.remote_blobs() {
        Ok(None) => return None,
        Err(e) => finding(Level::Fail, CHECK, e),
        Ok(Some((remote, _))) => match remote.check() {
            Ok(()) => finding(
                Level::Ok,
                CHECK,
                format!("{} takes a write, a read and a delete", remote.description),
            ),
            Err(e) => finding(Level::Fail, CHECK, format!("{}: {e}", remote.description)),
        },
    })
}

/// How the redb file's bytes are used: a file much larger than its pages in use has space that
/// `compact` may give back.
fn redb_space(store: &Store, dir: &std::path::Path) -> Option<Finding> {
    let (stored, allocated) = match store.redb_stats()? {
        Ok(stats) => stats,
        Err(e) => return Some(finding(Level::Warn, "database space", e.to_string())),
    };
    let file = crate::files::on_disk(&dir.join(crate::store::REDB_FILE));
    Some(finding(
        Level::Ok,
        "database space",
        format!(
            "file {} MiB on disk, pages in use {} MiB, keys and values {} MiB (`compact`, with \
             the server stopped, rewrites the file with the records alone)",
            file >> 20,
            allocated >> 20,
            stored >> 20
        ),
    ))
}

/// The page cache setting against the machine's memory.
/// Whether builds from git can run here (a sandbox can be made) and what their caches take.
fn builds(settings: &Settings) -> Finding {
    const CHECK: &str = "builds";
    if settings.build_concurrency() == 0 {
        return finding(Level::Ok, CHECK, "turned off (--build-concurrency 0)");
    }
    let dir = settings.build_dir();
    match crate::builds::sandbox::check(&dir) {
        Ok(()) => finding(
            Level::Ok,
            CHECK,
            format!(
                "bubblewrap makes sandboxes; build caches in {} take {} MiB (--build-cache-total-mb {})",
                dir.display(),
                crate::builds::cache::total_size(&dir) >> 20,
                settings.build_limits().cache_total >> 20
            ),
        ),
        Err(why) => finding(
            Level::Warn,
            CHECK,
            format!("builds from git cannot run, and are refused: {why}"),
        ),
    }
}

fn cache(settings: &Settings) -> Finding {
    const CHECK: &str = "memory";
    let cache = settings.cache_bytes() >> 20;
    let detail = format!(
        "database page cache {cache} MiB (--cache-mb); the server needs about that plus 50 MiB"
    );
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    });
    match total.map(|kib| kib >> 10) {
        Some(mib) if cache * 2 > mib => finding(
            Level::Warn,
            CHECK,
            format!("{detail}: more than half of this machine's {mib} MiB"),
        ),
        Some(mib) => finding(Level::Ok, CHECK, format!("{detail}, of {mib} MiB")),
        None => finding(Level::Ok, CHECK, detail),
    }
}

/// Free space on the data dir's filesystem against the reserve; a warning below 10 %.
fn free_space(settings: &Settings, dir: &Path) -> Finding {
    const CHECK: &str = "free space";
    let existing = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("."));
    let (free, total) = match crate::disk::space(existing) {
        Ok(s) => s,
        Err(e) => return finding(Level::Warn, CHECK, format!("cannot read: {e}")),
    };
    let reserve = settings
        .disk_reserve
        .unwrap_or_else(|| crate::disk::default_reserve(total));
    let mib = |b: u64| b >> 20;
    let detail = format!(
        "{} MiB free of {} MiB ({:.1} %); writes are refused below {} MiB",
        mib(free),
        mib(total),
        free as f64 * 100.0 / total.max(1) as f64,
        mib(reserve)
    );
    if free < reserve {
        finding(Level::Fail, CHECK, format!("{detail}: free space now"))
    } else if free < total / 10 {
        finding(Level::Warn, CHECK, format!("{detail}: under 10 % left"))
    } else {
        finding(Level::Ok, CHECK, detail)
    }
}

fn ports(settings: &Settings, running: bool, dir: &Path) -> Finding {
    const CHECK: &str = "ports";
    if running {
        let about: serde_json::Value = std::fs::read_to_string(dir.join("server.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        let field = |k: &str| {
            about[k]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| "?".into())
        };
        return finding(
            Level::Ok,
            CHECK,
            format!(
                "a server (pid {}) is listening on http://{} and https://{}",
                about["pid"].as_u64().map_or("?".into(), |p| p.to_string()),
                field("http"),
                field("https")
            ),
        );
    }
    let mut problems = Vec::new();
    let mut free = Vec::new();
    for addr in [settings.http_addr(), settings.https_addr()] {
        match addr {
            Ok(a) => match std::net::TcpListener::bind(a) {
                Ok(_) => free.push(a.to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => problems.push(
                    format!("{a}: permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)"),
                ),
                Err(e) => problems.push(format!("{a}: {e}")),
            },
            Err(e) => problems.push(e),
        }
    }
    if problems.is_empty() {
        finding(
            Level::Ok,
            CHECK,
            format!("{} can be bound", free.join(" and ")),
        )
    } else {
        finding(Level::Fail, CHECK, problems.join("; "))
    }
}

/// Days left before `not_after` as a finding about `what`.
fn expiry(check: &'static str, what: &str, not_after: Option<Timestamp>) -> Finding {
    let Some(not_after) = not_after else {
        return finding(
            Level::Fail,
            check,
            format!("{what}: cannot read its expiry"),
        );
    };
    let days = (not_after.0 - Timestamp::now().0) / 86_400_000;
    if not_after.0 <= Timestamp::now().0 {
        finding(
            Level::Fail,
            check,
            format!("{what} expired on {}", not_after.to_rfc3339()),
        )
    } else if days < 14 {
        finding(Level::Warn, check, format!("{what} expires in {days} days"))
    } else {
        finding(
            Level::Ok,
            check,
            format!("{what} valid for {days} more days"),
        )
    }
}

fn certificate(settings: &Settings, dir: &Path) -> Finding {
    const CHECK: &str = "certificate";
    let path = settings
        .tls_cert
        .clone()
        .unwrap_or_else(|| dir.join("tls").join("self-signed.crt"));
    match std::fs::read_to_string(&path) {
        Ok(pem) if settings.tls_cert.is_none() => {
            let mut f = expiry(
                CHECK,
                &path.display().to_string(),
                crate::acme::describe(&pem).1,
            );
            if f.level == Level::Ok {
                f.detail.push_str(
                    "; self-signed: browsers warn about it. Give --tls-cert/--tls-key, or certificates \
                     for custom domains come from --acme-directory",
                );
            }
            f
        }
        Ok(pem) => expiry(
            CHECK,
            &path.display().to_string(),
            crate::acme::describe(&pem).1,
        ),
        Err(_) if settings.tls_cert.is_none() => finding(
            Level::Ok,
            CHECK,
            "none yet: `serve` makes a self-signed one",
        ),
        Err(e) => finding(
            Level::Fail,
            CHECK,
            format!("cannot read {}: {e}", path.display()),
        ),
    }
}

fn stored_certificates(store: &Store) -> Vec<Finding> {
    match store.certs().all() {
        Ok(all) => all
            .into_iter()
            .filter(|c| matches!(c.state, CertState::Issued | CertState::Uploaded))
            .map(|c| expiry("certificate", &c.domain, c.not_after))
            .collect(),
        Err(e) => vec![finding(
            Level::Fail,
            "certificate",
            format!("cannot read stored certificates: {e}"),
        )],
    }
}

fn resolver(settings: &Settings) -> Finding {
    const CHECK: &str = "dns resolver";
    let verifier = match settings.verifier() {
        Ok(v) => v,
        Err(e) => return finding(Level::Fail, CHECK, e),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return finding(Level::Fail, CHECK, e.to_string()),
    };
    let which = settings
        .dns_server
        .map_or("the system resolver".to_string(), |a| a.to_string());
    match rt.block_on(verifier.probe()) {
        Ok(()) => finding(Level::Ok, CHECK, format!("{which} answers")),
        Err(e) => finding(Level::Fail, CHECK, format!("{which} does not answer: {e}")),
    }
}

fn clock(dir: &Path) -> Finding {
    const CHECK: &str = "clock";
    // This check is about the system clock itself.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    // Built after 2026-01-01: a clock before that is certainly wrong.
    let floor = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600);
    if now < floor {
        return finding(
            Level::Fail,
            CHECK,
            "the system clock is before 2026: set the time (certificates and tokens depend on it)",
        );
    }
    // A data dir changed "in the future" means the clock went backwards.
    let newest = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max();
    match newest {
        Some(t) if t > now + std::time::Duration::from_secs(300) => finding(
            Level::Fail,
            CHECK,
            "files in the data dir are dated in the future: the clock went backwards",
        ),
        _ => finding(
            Level::Ok,
            CHECK,
            format!("{} UTC", Timestamp::now().to_rfc3339()),
        ),
    }
}

/// PostgreSQL (`--database-url`): reachable, its schema one this build can serve, and the
/// nodes serving it (how many listen for each other's changes, and whether one leads).
fn postgres(url: &str) -> Finding {
    let found = match resellerd_store::kv::pg::inspect(url) {
        Ok(found) => found,
        Err(e) => {
            return finding(
                Level::Fail,
                "database",
                format!("cannot reach PostgreSQL: {e}"),
            )
        }
    };
    let (have, know) = (found.version, found.known);
    if have == 0 {
        return finding(
            Level::Warn,
            "database",
            "PostgreSQL answers; no schema yet: `serve` creates it",
        );
    }
    if have > know {
        return finding(
            Level::Fail,
            "database",
            format!("PostgreSQL is at schema version {have}, newer than this resellerd's {know}: upgrade resellerd"),
        );
    }
    let nodes = match (found.nodes, found.led) {
        (0, _) => "no node serves it now".to_string(),
        (n, true) => format!(
            "{n} node{} serving it, one leading",
            if n == 1 { "" } else { "s" }
        ),
        (n, false) => format!(
            "{n} node{} serving it, none leading yet (one takes the lead within seconds)",
            if n == 1 { "" } else { "s" }
        ),
    };
    finding(
        Level::Ok,
        "database",
        format!(
            "PostgreSQL answers, schema version {have} (this resellerd: {know}{}); {nodes}",
            if have < know {
                "; `serve` migrates it"
            } else {
                ""
            }
        ),
    )
}
