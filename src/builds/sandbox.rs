//! The sandbox a build command runs in: bubblewrap, with its own user, PID, IPC, UTS, cgroup,
//! mount and network namespaces. Inside, the host's toolchain (`/usr`) is read-only, the checkout
//! and the site's cache are the only writable directories (with a private `/tmp` inside the
//! checkout's work dir, so it counts against the disk limit), and the only way out is the build's
//! outbound proxy (`net.rs`), reached through a Unix socket: the network namespace has nothing but
//! its own loopback, so the host's loopback, private ranges and the cloud metadata address are
//! unreachable whatever the build does.
//!
//! Limits: each process's memory (`RLIMIT_DATA`), file size (`RLIMIT_FSIZE`), the processes of
//! the build (`RLIMIT_NPROC`, counted per user: when the server runs as root every build slot
//! runs as a user id of its own, so the count is the build's alone), the disk its work dir takes
//! (watched while it runs), and its wall time (every process is killed at the deadline: killing
//! bubblewrap's init ends its PID namespace).

use super::Limits;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Above this host user id lie the users build slots run as when the server is root (see
/// `builds::Config::slot_uid`).
pub const BASE_UID: u32 = 1_900_000;

/// Where things are inside the sandbox.
pub const WORK: &str = "/opt/build";
pub const CACHE: &str = "/opt/cache";
const RSD: &str = "/opt/resellerd";
pub const PROXY_PORT: u16 = 3128;

/// Whether builds can run here: bubblewrap is installed and can make its namespaces, and (when
/// builds run as users of their own) the build dir is theirs to reach. Makes the build dir.
pub fn check(dir: &Path) -> Result<(), String> {
    let root = rustix::process::getuid().is_root();
    for sub in ["", "work", "cache", "bin"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d)
            .map_err(|e| format!("cannot make the build dir {}: {e}", d.display()))?;
        if root {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o711))
                .map_err(|e| format!("cannot set the build dir's permissions: {e}"))?;
        }
    }
    let mut cmd = Command::new("bwrap");
    cmd.args(base_args())
        .args(["--ro-bind", &dir.display().to_string(), "/opt/check"])
        .args(["--", "/bin/true"])
        .stdin(Stdio::null());
    if root {
        cmd.uid(BASE_UID).gid(BASE_UID);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("builds need bubblewrap (`bwrap`, Debian package bubblewrap): {e}"))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(if why.contains("Permission denied") && root {
            format!(
                "builds run as users of their own, who cannot reach the build dir {} ({why}): give its parents o+x, or choose another with --build-dir",
                dir.display()
            )
        } else {
            format!("bubblewrap cannot make a sandbox here ({why}): builds need unprivileged user namespaces")
        });
    }
    Ok(())
}

/// What every sandbox has: fresh namespaces and the host's read-only toolchain.
fn base_args() -> Vec<String> {
    let mut a: Vec<String> = [
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "build",
        "--ro-bind",
        "/usr",
        "/usr",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        "16777216",
        "--tmpfs",
        "/dev/shm",
        "--uid",
        "1000",
        "--gid",
        "1000",
    ]
    .map(String::from)
    .to_vec();
    for dir in ["bin", "lib", "lib64", "sbin", "lib32"] {
        let host = Path::new("/").join(dir);
        match std::fs::read_link(&host) {
            Ok(target) => a.extend([
                "--symlink".into(),
                target.display().to_string(),
                host.display().to_string(),
            ]),
            Err(_) if host.is_dir() => a.extend([
                "--ro-bind".into(),
                host.display().to_string(),
                host.display().to_string(),
            ]),
            Err(_) => {}
        }
    }
    // What programs read from /etc: certificates, alternatives' links, name service config.
    for etc in [
        "/etc/ssl",
        "/etc/ca-certificates",
        "/etc/alternatives",
        "/etc/nsswitch.conf",
        "/etc/localtime",
    ] {
        if Path::new(etc).exists() {
            a.extend(["--ro-bind".into(), etc.into(), etc.into()]);
        }
    }
    a
}

/// One command to run in a sandbox.
#[derive(Clone, Copy)]
pub struct Job<'a> {
    /// The host directory mounted writable at `WORK` (the checkout, `tmp` and `home` in it).
    pub work: &'a Path,
    /// The directory the command starts in, relative to `WORK`.
    pub cwd: &'a str,
    /// The site's cache, mounted writable at `CACHE`.
    pub cache: &'a Path,
    /// The directory of the outbound proxy's socket.
    pub net: &'a Path,
    /// The server's binary (`build-shim` runs in the sandbox).
    pub shim: &'a Path,
    pub command: &'a str,
    pub env: &'a [(String, String)],
    /// The host user id to run as (when the server is root), else None.
    pub uid: Option<u32>,
    /// The slot's mark (`SLOT_MARK`), in bubblewrap's own environment.
    pub mark: &'a str,
    pub limits: &'a Limits,
    /// The time left to the build's deadline.
    pub time_left: Duration,
}

/// How a command ended.
#[derive(Debug)]
pub enum Outcome {
    Exited(i32),
    Killed(String),
}

/// A line the command printed, on stdout or stderr.
pub type Line = String;

/// Runs `job`, handing each line of its output to `line` (and None at least every 200 ms),
/// until it exits, runs out of time or disk (every process of it is then killed).
pub fn run(job: &Job, mut line: impl FnMut(Option<Line>)) -> Result<Outcome, String> {
    // Limits and priority are set by util-linux's `prlimit` and coreutils' `nice` on their way
    // to bubblewrap, so they hold for every process of the build.
    let l = &job.limits;
    let mut cmd = Command::new("nice");
    cmd.args(["-n", "10", "prlimit"]);
    cmd.arg(format!("--data={}", l.memory));
    cmd.arg(format!("--fsize={}", l.disk));
    cmd.arg(format!("--nproc={}", l.processes));
    cmd.args(["--core=0", "--nofile=8192", "--", "bwrap"]);
    cmd.args(base_args());
    let path = |p: &Path| p.display().to_string();
    cmd.args(["--bind", &path(job.work), WORK]);
    cmd.args(["--bind", &path(job.cache), CACHE]);
    cmd.args(["--bind", &path(job.net), &format!("{RSD}/net")]);
    cmd.args(["--ro-bind", &path(job.shim), &format!("{RSD}/resellerd")]);
    cmd.args(["--symlink", &format!("{WORK}/tmp"), "/tmp"]);
    cmd.args(["--chdir", &format!("{WORK}/{}", job.cwd)]);
    cmd.arg("--clearenv");
    let proxy = format!("http://127.0.0.1:{PROXY_PORT}");
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("HOME".into(), format!("{WORK}/home")),
        ("TMPDIR".into(), format!("{WORK}/tmp")),
        ("LANG".into(), "C.UTF-8".into()),
        ("CI".into(), "true".into()),
        ("NETLIFY".into(), "true".into()),
        ("npm_config_cache".into(), format!("{CACHE}/npm")),
        ("npm_config_update_notifier".into(), "false".into()),
        ("npm_config_fund".into(), "false".into()),
        ("npm_config_audit".into(), "false".into()),
    ];
    for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        env.push((name.into(), proxy.clone()));
    }
    env.push(("npm_config_proxy".into(), proxy.clone()));
    env.push(("npm_config_https_proxy".into(), proxy.clone()));
    env.extend(job.env.iter().cloned());
    for (k, v) in &env {
        cmd.args(["--setenv", k, v]);
    }
    cmd.args([
        "--",
        &format!("{RSD}/resellerd"),
        "build-shim",
        "--",
        "/bin/sh",
        "-c",
        job.command,
    ]);
    cmd.env(SLOT_MARK, job.mark)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(uid) = job.uid {
        cmd.uid(uid).gid(uid);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the sandbox (bubblewrap): {e}"))?;
    let (tx, rx) = mpsc::channel::<Line>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(spawn_reader(out, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(spawn_reader(err, tx.clone()));
    }
    drop(tx);
    let deadline = Instant::now() + job.time_left;
    let mut next_disk_check = Instant::now();
    let outcome = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) => {
                line(Some(l));
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                line(None)
            }
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Outcome::Exited(status.code().unwrap_or(128 + 9));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break Outcome::Killed(format!(
                "the build ran past its time limit ({} s)",
                job.limits.timeout.as_secs()
            ));
        }
        if Instant::now() >= next_disk_check {
            next_disk_check = Instant::now() + Duration::from_secs(2);
            let used = dir_size(job.work, job.limits.disk + 1);
            if used > job.limits.disk {
                let _ = child.kill();
                break Outcome::Killed(format!(
                    "the build used more than {} MiB of disk",
                    job.limits.disk >> 20
                ));
            }
        }
    };
    let _ = child.wait();
    // What was printed before the end.
    for l in rx.try_iter() {
        line(Some(l));
    }
    for r in readers {
        let _ = r.join();
    }
    Ok(outcome)
}

fn spawn_reader(
    stream: impl std::io::Read + Send + 'static,
    tx: mpsc::Sender<Line>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            // A line is cut at 4 KiB; the rest comes as the next lines.
            match (&mut reader).take(4096).read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf);
                    if tx
                        .send(text.trim_end_matches(['\n', '\r']).to_string())
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    })
}

/// The bytes under `dir` (files and directories, symlinks not followed), counting up to `stop`.
pub fn dir_size(dir: &Path, stop: u64) -> u64 {
    let mut total = 0u64;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            // Allocated blocks, so sparse files count as what they take.
            total += std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
            if meta.is_dir() {
                stack.push(e.path());
            }
            if total > stop {
                return total;
            }
        }
    }
    total
}

/// The environment variable bubblewrap itself (not the build) is started with, naming the build
/// slot: `kill_slot` finds a slot's sandbox by it when builds run as the server's own user.
pub const SLOT_MARK: &str = "RESELLERD_BUILD_SLOT";

/// Kills what is left of a build slot's sandbox: every process of the slot's own user (when the
/// server is root), or every process whose environment carries the slot's mark (bubblewrap's
/// init, whose death ends the sandbox's PID namespace). That is what remains of a build killed at
/// its deadline, or of one a stopped server left behind (bubblewrap's die-with-parent has a
/// window while the sandbox starts). Returns how many it killed.
pub fn kill_slot(mark: &str, uid: Option<u32>) -> usize {
    let needle = format!("{SLOT_MARK}={mark}\0");
    let mut killed = 0;
    // Processes may fork while they are killed: a few rounds, until none is left.
    for _ in 0..20 {
        let mut found = 0;
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return killed;
        };
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let owned = uid.is_some_and(|uid| {
                std::fs::read_to_string(e.path().join("status")).is_ok_and(|status| {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .and_then(|v| v.split_whitespace().next())
                        .and_then(|v| v.parse::<u32>().ok())
                        == Some(uid)
                })
            });
            let marked = !owned
                && std::fs::read(e.path().join("environ"))
                    .is_ok_and(|env| env.windows(needle.len()).any(|w| w == needle.as_bytes()));
            if !owned && !marked {
                continue;
            }
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                if rustix::process::kill_process(pid, rustix::process::Signal::KILL).is_ok() {
                    found += 1;
                }
            }
        }
        if found == 0 {
            break;
        }
        killed += found;
        std::thread::sleep(Duration::from_millis(20));
    }
    killed
}

/// Gives a build's directories to the user it runs as (when the server is root).
pub fn give_to(dir: &Path, uid: u32) -> std::io::Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        std::os::unix::fs::lchown(&d, Some(uid), Some(uid))?;
        if d.is_symlink() || !d.is_dir() {
            continue;
        }
        for e in std::fs::read_dir(&d)? {
            stack.push(e?.path());
        }
    }
    Ok(())
}
