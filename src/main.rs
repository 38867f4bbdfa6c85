//! The resellerd command line: `serve`, `operator-token`, `backup`, `restore`, `doctor`,
//! `compact`, `migrate` (and the hidden `checkpoint` that `serve` becomes as it stops).

use clap::{Parser, Subcommand};
use resellerd::auth::operator;
use resellerd::config::Settings;
use resellerd::store::Engine;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc instead of the system allocator: request handling allocates many small, short-lived
/// strings, and glibc's malloc and free were about a tenth of the CPU time under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Self-hosted reseller hosting: a reseller API, a Netlify-compatible deploy API and an edge
/// that serves every deployed site, in one binary with an embedded database.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (API, admin panel and edge) on the HTTP and HTTPS listeners
    Serve(Box<Settings>),
    /// Print a new operator token, replacing the old one (works while the server runs)
    OperatorToken {
        /// The server's data directory
        #[arg(long, env = "RESELLERD_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// The servers' PostgreSQL database: the new token then works on every node
        #[arg(long, env = "RESELLERD_DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Save a consistent backup of a data dir to one tar file; works while the server runs
    /// (it then asks the server, with the operator token, for a snapshot)
    Backup {
        /// The server's data directory
        #[arg(long, env = "RESELLERD_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// Where to write the backup (replaced atomically once complete)
        #[arg(long)]
        out: PathBuf,
        /// Operator token for a running server (default: read <data-dir>/operator-token)
        #[arg(long, env = "RESELLERD_OPERATOR_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Run a build's command inside its sandbox (the server starts this; not for people)
    #[command(hide = true)]
    BuildShim {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Check a deployment: data dir permissions, database, ports, certificate expiry, DNS
    /// resolver, clock. Takes the same options as `serve`; exits 1 if a check fails
    Doctor(Box<Settings>),
    /// Bring the database's recovery snapshot up to date (`serve` runs this on itself as it
    /// stops, so the next start need not replay the log)
    #[command(hide = true)]
    Checkpoint {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        cache_bytes: u64,
        /// The stopped server's log format, so the checkpoint's line matches its log
        #[arg(long)]
        log_format: Option<String>,
    },
    /// Rewrite the database of a stopped server without the space its deleted records left
    /// (after a burst of short-lived tokens, say); prints its size before and after
    Compact {
        /// The server's data directory
        #[arg(long, env = "RESELLERD_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Copy a stopped data dir's records into PostgreSQL (and its site files into an S3 blob
    /// store), checking every tree's count and digest; safe to run again. Then serve with the
    /// same data dir and --database-url
    Migrate {
        /// The stopped server's data directory (for a running one: a backup restored into a new dir)
        #[arg(long, env = "RESELLERD_DATA_DIR", default_value = "./data")]
        from: PathBuf,
        /// The PostgreSQL database: postgres://user:password@host:port/database
        #[arg(long)]
        to: String,
        /// Also put the site files into this S3-compatible blob store (as --blob-store)
        #[arg(long)]
        blob_store: Option<String>,
        /// Overwrite a database that holds another instance's records
        #[arg(long)]
        replace: bool,
    },
    /// Restore a backup into a new or empty data directory
    Restore {
        /// The backup file made by `resellerd backup`
        #[arg(long = "in")]
        input: PathBuf,
        /// The data directory to create (must be missing or empty)
        #[arg(long, env = "RESELLERD_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(settings) => serve(*settings),
        Command::OperatorToken {
            data_dir,
            database_url,
        } if database_url.as_deref().is_none_or(str::is_empty)
            && !resellerd::store::has_database(&data_dir)
            && !operator::hash_path(&data_dir).exists() =>
        {
            fail(&format!(
                "{} holds no resellerd data (no database): check --data-dir, which must be the \
                 server's (its first start prints it); no token was made",
                data_dir.display()
            ))
        }
        Command::OperatorToken {
            data_dir,
            database_url,
        } => match operator::rotate(&data_dir) {
            Ok(secret) => {
                if let Some(url) = database_url.filter(|u| !u.is_empty()) {
                    let stored = resellerd::store::Store::set_cluster_secret_at(
                        &url,
                        operator::CLUSTER_SECRET,
                        &secret.hash(),
                    );
                    if let Err(e) = stored {
                        return fail(&format!(
                            "cannot store the operator token in the database: {e}"
                        ));
                    }
                }
                println!("{}", secret.expose());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&data_dir_problem(
                &data_dir,
                "write the operator token in",
                &e,
            )),
        },
        Command::Backup {
            data_dir,
            out,
            token,
        } => {
            let started = std::time::Instant::now();
            let partial = resellerd::backup::partial_path(&out);
            let progress = resellerd::progress::watch("backing up", None, move || {
                std::fs::metadata(&partial).map_or(0, |m| m.len())
            });
            let saved = resellerd::backup::save(&data_dir, &out, token);
            progress.finish();
            match saved {
                Ok(bytes) => {
                    println!(
                        "backup of {} written to {} ({bytes} bytes, {} in {:.1} s)",
                        data_dir.display(),
                        out.display(),
                        resellerd::progress::human(bytes),
                        started.elapsed().as_secs_f64()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&format!("backup failed: {}", resellerd::error::chain(&e))),
            }
        }
        Command::Doctor(settings) => doctor(*settings),
        Command::BuildShim { command } => {
            let args: Vec<String> = command.into_iter().skip_while(|a| a == "--").collect();
            ExitCode::from(resellerd::builds::net::shim(&args).clamp(0, 255) as u8)
        }
        Command::Compact { data_dir } if !resellerd::store::has_database(&data_dir) => {
            fail(&format!(
                "{}: no database here (it holds no resellerd data): check --data-dir",
                data_dir.display()
            ))
        }
        Command::Compact { data_dir } => {
            let cache = resellerd::store::DEFAULT_CACHE_MB << 20;
            // The copy is written beside the database (redb's file, sled's directory).
            let copies = [".store.redb.compacting", "db.compacting"].map(|n| data_dir.join(n));
            let progress = resellerd::progress::watch("compacting", None, move || {
                copies
                    .iter()
                    .map(|c| match std::fs::metadata(c) {
                        Ok(m) if m.is_dir() => resellerd::files::dir_size(c),
                        Ok(m) => m.len(),
                        Err(_) => 0,
                    })
                    .sum()
            });
            let compacted = resellerd::store::Store::compact(&data_dir, cache);
            progress.finish();
            match compacted {
                Ok((before, after)) => {
                    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
                    let change = match after <= before {
                        true => format!("{:.1} MiB given back", mib(before - after)),
                        false => format!(
                            "{:.1} MiB more: the records were already packed, so the copy's fresh pages took a little more",
                            mib(after - before)
                        ),
                    };
                    println!(
                        "database of {} compacted: {before} -> {after} bytes on disk ({:.1} MiB -> {:.1} MiB; {change})",
                        data_dir.display(),
                        mib(before),
                        mib(after)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&format!("compaction failed: {e}")),
            }
        }
        Command::Checkpoint {
            data_dir,
            cache_bytes,
            log_format,
        } => {
            let _log = resellerd::telemetry::init(log_format.as_deref());
            let started = std::time::Instant::now();
            match resellerd::store::Store::checkpoint(&data_dir, cache_bytes) {
                Ok(()) => {
                    let secs = started.elapsed().as_secs_f64();
                    tracing::info!(secs, "stopped; database checkpoint written");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!(error = %e, "stopped; the database checkpoint failed (the next start replays the log)");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Migrate {
            from,
            to,
            blob_store,
            replace,
        } => migrate(&from, &to, blob_store.as_deref(), replace),
        Command::Restore { input, data_dir } => {
            let started = std::time::Instant::now();
            let restored = std::fs::File::open(&input)
                .map_err(|e| format!("cannot open {}: {e}", input.display()))
                .and_then(|f| {
                    let len = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
                    let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
                    let seen = read.clone();
                    let progress = resellerd::progress::watch("restoring", len, move || {
                        seen.load(std::sync::atomic::Ordering::Relaxed)
                    });
                    let counted = Counted { inner: f, read };
                    let restored = resellerd::backup::restore(counted, &data_dir, len);
                    progress.finish();
                    restored.map_err(|e| e.to_string())
                });
            match restored {
                Ok(r) => {
                    println!(
                        "restored {} records in {} trees and {} files into {} in {:.1} s",
                        r.records,
                        r.trees,
                        r.files,
                        data_dir.display(),
                        started.elapsed().as_secs_f64()
                    );
                    ExitCode::SUCCESS
                }
                // A failed restore leaves the directory as it found it.
                Err(e) => fail(&format!("restore failed: {e}")),
            }
        }
    }
}

/// A reader that counts what was read (for `restore`'s progress).
struct Counted<R> {
    inner: R,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// What went wrong with the data dir, and what to do: a file where a directory belongs, a
/// directory this user may not write, or the error itself.
fn data_dir_problem(dir: &std::path::Path, doing: &str, e: &std::io::Error) -> String {
    let dir = dir.display();
    if std::fs::metadata(dir.to_string()).is_ok_and(|m| !m.is_dir()) {
        return format!(
            "{dir} is a file, not a directory: give --data-dir a directory (it is made if missing)"
        );
    }
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => format!(
            "cannot {doing} {dir}: permission denied; make it writable by the user resellerd runs as \
             (for example `sudo chown -R $(id -un) {dir}`) or give another --data-dir"
        ),
        _ => format!("cannot {doing} {dir}: {e}"),
    }
}

fn migrate(from: &std::path::Path, to: &str, blob_store: Option<&str>, replace: bool) -> ExitCode {
    let remote = match blob_store.map(resellerd::store::remote::Remote::from_url) {
        Some(Err(e)) => return fail(&format!("--blob-store: {e}")),
        Some(Ok(r)) => Some(r),
        None => None,
    };
    match resellerd::store::migrate::to_postgres(from, to, replace, remote.as_ref()) {
        Ok(report) => {
            let records: u64 = report.trees.iter().map(|(_, n)| n).sum();
            println!(
                "migrated {records} records in {} trees from {} to PostgreSQL; every tree's count and digest match",
                report.trees.len(),
                from.display()
            );
            if remote.is_some() {
                println!(
                    "{} site files put into the blob store",
                    report.blobs_uploaded
                );
            }
            println!(
                "now serve with: resellerd serve --data-dir {} --database-url <the same URL>{}",
                from.display(),
                if remote.is_some() {
                    " --blob-store <the same store>"
                } else {
                    ""
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!(
            "migration failed: {}",
            resellerd::error::chain(&e)
        )),
    }
}

fn doctor(settings: Settings) -> ExitCode {
    use resellerd::doctor::Level;
    let settings = match settings.resolve() {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let findings = resellerd::doctor::run(&settings);
    for f in &findings {
        let tag = match f.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        println!("{tag}  {:<13} {}", f.check, f.detail);
    }
    if findings.iter().any(|f| f.level == Level::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("resellerd: {msg}");
    ExitCode::FAILURE
}

fn serve(settings: Settings) -> ExitCode {
    let settings = match settings.resolve() {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let log_format = settings.log_format.clone();
    if let Err(e) = resellerd::telemetry::check_format(log_format.as_deref()) {
        return fail(&e);
    }
    let access = resellerd::telemetry::access_settings(
        settings.access_log.as_deref(),
        settings.access_log_format.as_deref(),
    );
    let (access_sink, access_format) = match access {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    let log = resellerd::telemetry::init(log_format.as_deref());
    let _access_log = match resellerd::telemetry::init_access(access_sink, access_format) {
        Ok(guard) => guard,
        Err(e) => return fail(&e),
    };
    let data_dir = settings.data_dir();
    let cache_bytes = settings.cache_bytes();
    // PostgreSQL has its own checkpoints and redb needs none; only sled needs one at a stop.
    let embedded = settings.database_url().is_none();
    if data_dir.join(resellerd::backup::RESTORING).exists() {
        return fail(&format!(
            "a restore into {} did not finish: run the restore again (it clears what the \
             unfinished one left) before serving this directory",
            data_dir.display()
        ));
    }
    if let Err(e) = resellerd::create_private_dir(&data_dir) {
        return fail(&data_dir_problem(&data_dir, "create the data dir", &e));
    }
    let new_token = match operator::ensure(&data_dir) {
        Ok(t) => t,
        Err(e) => {
            return fail(&data_dir_problem(
                &data_dir,
                "write the operator token in",
                &e,
            ))
        }
    };
    let token_path = operator::token_path(&data_dir);
    let public_warning = settings.public_without_api_host();
    let shown_dir = data_dir.clone();
    let on_ready = move |http: std::net::SocketAddr, https: std::net::SocketAddr| {
        let mut out = std::io::stdout().lock();
        // One machine-readable line first: scripts and tests read the bound ports from it.
        let _ = writeln!(
            out,
            "resellerd listening http=http://{http} https=https://{https}"
        );
        let _ = writeln!(
            out,
            "  API:    http://{http}/api/v1   https://{https}/api/v1"
        );
        let _ = writeln!(out, "  Admin:  http://{http}/admin/");
        match &new_token {
            // On PostgreSQL a node that joined a cluster took its token instead of its own.
            _ if !embedded && !token_path.exists() => {
                let _ = writeln!(
                    out,
                    "  Operator token: the cluster's (in the first node's data dir; \
                     `resellerd operator-token --database-url` makes a new one)"
                );
            }
            Some(t) if std::io::stdout().is_terminal() => {
                let _ = writeln!(
                    out,
                    "  Operator token (also in {}): {}",
                    token_path.display(),
                    t.expose()
                );
            }
            _ if token_path.exists() => {
                let _ = writeln!(
                    out,
                    "  Operator token: in {} (read it with `cat {}`)",
                    token_path.display(),
                    token_path.display()
                );
            }
            _ => {
                // A restored data dir keeps only the token's hash: the old token still works.
                let _ = writeln!(
                    out,
                    "  Operator token: the one this data had before (only its hash is kept); \
                     `resellerd operator-token --data-dir {}` makes a new one",
                    shown_dir.display()
                );
            }
        }
        if let Some(warning) = &public_warning {
            let _ = writeln!(out, "  Warning: {warning}");
            tracing::warn!("{warning}");
        }
        let _ = out.flush();
        tracing::info!(%http, %https, operator_token_file = %token_path.display(), "listening");
    };
    let result = actix_web::rt::System::new().block_on(resellerd::serve(settings, on_ready));
    if result.is_ok() {
        tracing::info!("stopped: every acknowledged write is on disk");
    }
    match result {
        Ok(()) if embedded && Engine::of(&data_dir, Engine::Redb) == Engine::Sled => {
            drop(log);
            checkpoint(&data_dir, cache_bytes, log_format.as_deref())
        }
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Replaces this stopped server (everything flushed) with `resellerd checkpoint` on the same
/// data dir: the new program image opens the database once the old one's file lock is gone
/// with it, so the snapshot sled writes on open is current and the next start reads it instead
/// of replaying the log. Same process, so a service manager waits for it as for the stop.
fn checkpoint(data_dir: &std::path::Path, cache_bytes: u64, log_format: Option<&str>) -> ExitCode {
    use std::os::unix::process::CommandExt;
    // This very binary even if an upgrade has replaced the file meanwhile.
    let exe = match std::path::Path::new("/proc/self/exe").exists() {
        true => PathBuf::from("/proc/self/exe"),
        false => match std::env::current_exe() {
            Ok(exe) => exe,
            Err(_) => return ExitCode::SUCCESS,
        },
    };
    let mut command = std::process::Command::new(exe);
    command
        .arg("checkpoint")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--cache-bytes")
        .arg(cache_bytes.to_string());
    if let Some(format) = log_format {
        command.arg("--log-format").arg(format);
    }
    let err = command.exec();
    // The logger is gone (dropped to write out its lines before the exec): one line by hand,
    // in the log's format.
    let message =
        format!("stopped without a database checkpoint ({err}); the next start replays the log");
    if resellerd::telemetry::is_json(log_format) {
        let line = serde_json::json!({
            "timestamp": resellerd::model::Timestamp::now().to_rfc3339(),
            "level": "WARN",
            "fields": {"message": message},
            "target": "resellerd",
        });
        eprintln!("{line}");
    } else {
        eprintln!("resellerd: {message}");
    }
    ExitCode::SUCCESS
}
