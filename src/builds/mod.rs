//! The build runner: takes queued builds (`store::builds`) fairly across resellers, at most
//! `--build-concurrency` at a time, and for each clones the site's repository (`git.rs`), runs
//! its build command in a sandbox (`sandbox.rs`, network only through `net.rs`), keeps its
//! dependency caches (`cache.rs`) and deploys the publish directory. Its log goes to the store
//! line by line with every secret masked (`log.rs`).

pub mod cache;
pub mod git;
mod log;
pub mod net;
pub mod sandbox;

use crate::model::Timestamp;
use crate::store::builds::{Build, BuildState, RepoLink};
use crate::store::Store;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Waits until what this thread wrote to the store is on disk (the store's group commit), so a
/// kill -9 loses no log line shown and no build's start or end.
fn durable(store: &Store) {
    thread_local! {
        static RUNTIME: Option<tokio::runtime::Runtime> =
            tokio::runtime::Builder::new_current_thread().build().ok();
    }
    RUNTIME.with(|rt| {
        if let Some(rt) = rt {
            if let Err(e) = rt.block_on(store.flush()) {
                tracing::warn!(error = %e, "cannot flush a build's records");
            }
        }
    });
}

/// The first host user id of this server's build slots when it runs as root: one of 4,096
/// ranges of 64 above `sandbox::BASE_UID`, chosen by the build dir, so two servers on one host
/// (each with its own build dir) do not share users, process counts, or the cleanup that kills
/// a slot's processes.
fn uid_base(dir: &Path) -> u32 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
    let range = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % 4096;
    sandbox::BASE_UID + range * 64
}

impl Config {
    /// A build slot's mark (`sandbox::SLOT_MARK`): this server's (by its build dir) and the slot.
    fn slot_mark(&self, slot: usize) -> String {
        format!("{}-{slot}", uid_base(&self.dir))
    }

    /// The host user a build slot runs as: its own when the server is root, else None (the
    /// server's own).
    fn slot_uid(&self, slot: usize) -> Option<u32> {
        rustix::process::getuid()
            .is_root()
            .then(|| uid_base(&self.dir) + (slot as u32 % 64))
    }
}

/// How often a running build's heartbeat is written, and how old it may be before the build is
/// an orphan (its server stopped) that another look queues again.
const HEARTBEAT: Duration = Duration::from_secs(5);
const ORPHANED_AFTER: i64 = 30;

/// Writes a build's heartbeat every `HEARTBEAT` on a thread of its own until dropped.
struct Heartbeat(Arc<std::sync::atomic::AtomicBool>);

impl Heartbeat {
    fn start(store: Store, build_id: String) -> Heartbeat {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let _ = std::thread::Builder::new()
            .name("build-heartbeat".into())
            .spawn(move || loop {
                for _ in 0..HEARTBEAT.as_millis() / 100 {
                    if stopping.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                if let Err(e) = store.builds().beat(&build_id, Timestamp::now()) {
                    tracing::warn!(build = %build_id, error = %e, "cannot write a build's heartbeat");
                }
            });
        Heartbeat(stop)
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// True for a build marked running whose heartbeat stopped.
fn silent(b: &Build, now: Timestamp) -> bool {
    b.heartbeat_at
        .or(b.started_at)
        .is_none_or(|t| t < now.plus_secs(-ORPHANED_AFTER))
}

/// What every build runs under (`--build-*`).
#[derive(Clone, Debug)]
pub struct Limits {
    pub timeout: Duration,
    /// Bytes each process may allocate.
    pub memory: u64,
    pub processes: u64,
    /// Bytes the work dir (checkout, output, temp files) may take.
    pub disk: u64,
    pub cache_per_site: u64,
    pub cache_total: u64,
}

/// What the runner needs from the settings.
#[derive(Clone)]
pub struct Config {
    /// Where builds run (`work/<build id>`) and caches live (`cache/<site id>`).
    pub dir: PathBuf,
    pub concurrency: usize,
    pub limits: Limits,
    /// Repositories may be on loopback or private addresses (`--allow-private-targets`); the
    /// build's own network never may.
    pub allow_private: bool,
    pub max_files: usize,
    pub max_bytes: u64,
}

/// Who ran last, for fairness across resellers.
#[derive(Default)]
struct Picker {
    running: HashMap<String, usize>,
    last_started: HashMap<String, Instant>,
}

/// Among each reseller's oldest waiting build (`queued` is oldest first): the reseller with the
/// fewest builds running, then the one that started a build longest ago (never first), then
/// the oldest build.
fn choose<'a>(queued: &'a [Build], picker: &Picker) -> Option<&'a Build> {
    let mut heads: Vec<&Build> = Vec::new();
    for b in queued {
        if !heads.iter().any(|h| h.reseller_id == b.reseller_id) {
            heads.push(b);
        }
    }
    heads.into_iter().min_by_key(|b| {
        (
            picker.running.get(&b.reseller_id).copied().unwrap_or(0),
            picker.last_started.get(&b.reseller_id).copied(),
            b.created_at,
        )
    })
}

pub struct Runner {
    store: Store,
    config: Config,
    /// Why builds cannot run here, if they cannot.
    unavailable: Option<String>,
    picker: Mutex<Picker>,
    wake: (Mutex<u64>, Condvar),
    /// Whether `shim` copied the binary since the start.
    shim_copied: Mutex<bool>,
    /// The builds this process runs now, and when it last looked for orphans.
    active: Mutex<(std::collections::HashSet<String>, Instant)>,
}

impl Runner {
    /// Whether builds can be queued: Err says why not (no sandbox, builds turned off).
    pub fn available(&self) -> Result<(), String> {
        match &self.unavailable {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    /// Deletes a deleted site's build caches.
    pub fn forget_site(&self, site_id: &str) {
        cache::clear(&cache::site_dir(&self.config.dir, site_id));
    }

    /// Deletes the caches of sites that no longer exist (a user or reseller deleted with them).
    fn sweep_caches(&self) {
        let Ok(entries) = std::fs::read_dir(self.config.dir.join("cache")) else {
            return;
        };
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if matches!(self.store.sites().get(&id), Ok(None)) {
                cache::clear(&e.path());
            }
        }
    }

    /// Tells an idle worker a build was queued.
    pub fn wake(&self) {
        let (lock, cond) = &self.wake;
        if let Ok(mut n) = lock.lock() {
            *n += 1;
        }
        cond.notify_all();
    }

    fn sleep(&self) {
        let (lock, cond) = &self.wake;
        if let Ok(n) = lock.lock() {
            let _ = cond.wait_timeout(n, Duration::from_secs(2));
        }
    }

    /// The next build to run: among each reseller's oldest waiting build, the reseller with the
    /// fewest builds running, then the one that started a build longest ago.
    fn next(&self) -> Option<Build> {
        let mut picker = self.picker.lock().ok()?;
        let queued = match self.store.builds().queued() {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the build queue");
                return None;
            }
        };
        let chosen = choose(&queued, &picker)?;
        // Marked running and counted active under one lock: `adopt_orphans` never sees it
        // between the two.
        let mut active = self.active.lock().ok()?;
        let build = match self.store.builds().start(&chosen.id, Timestamp::now()) {
            Ok(Some(b)) => b,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a build");
                return None;
            }
        };
        active.0.insert(build.id.clone());
        drop(active);
        durable(&self.store);
        *picker.running.entry(build.reseller_id.clone()).or_default() += 1;
        picker
            .last_started
            .insert(build.reseller_id.clone(), Instant::now());
        Some(build)
    }

    /// A build marked running that no worker of this process runs and whose heartbeat stopped
    /// is an orphan (the server that ran it stopped): queued again. Looked for every 10 s when
    /// idle, beside the look at start.
    fn adopt_orphans(&self) {
        let Ok(mut active) = self.active.lock() else {
            return;
        };
        if active.1.elapsed() < Duration::from_secs(10) {
            return;
        }
        active.1 = Instant::now();
        match self.store.builds().recover(Timestamp::now(), |b| {
            !active.0.contains(&b.id) && silent(b, Timestamp::now())
        }) {
            Ok(0) => {}
            Ok(n) => {
                durable(&self.store);
                tracing::warn!(
                    builds = n,
                    "builds marked running that nothing ran are queued again"
                );
            }
            Err(e) => tracing::warn!(error = %e, "cannot look for orphaned builds"),
        }
    }

    fn done(&self, build: &Build) {
        if let Ok(mut active) = self.active.lock() {
            active.0.remove(&build.id);
        }
        if let Ok(mut p) = self.picker.lock() {
            if let Some(n) = p.running.get_mut(&build.reseller_id) {
                *n = n.saturating_sub(1);
            }
        }
    }

    fn worker(self: Arc<Self>, slot: usize) {
        loop {
            match self.next() {
                Some(build) => {
                    let id = build.id.clone();
                    let started = Instant::now();
                    let beat = Heartbeat::start(self.store.clone(), id.clone());
                    let outcome = self.run(slot, &build);
                    drop(beat);
                    let now = Timestamp::now();
                    let seconds = started.elapsed().as_secs().max(1);
                    if let Err(e) = self.store.builds().count_seconds(&build, seconds, now) {
                        tracing::warn!(build = %id, error = %e, "cannot count a build's seconds");
                    }
                    let (state, error) = match outcome {
                        Ok(()) => (BuildState::Done, None),
                        Err(why) => (BuildState::Error, Some(why)),
                    };
                    if let Err(e) = self.store.builds().finish(&id, state, error, now) {
                        tracing::error!(build = %id, error = %e, "cannot record a build's end");
                    }
                    durable(&self.store);
                    self.done(&build);
                    self.sweep_caches();
                }
                None => {
                    self.adopt_orphans();
                    self.sleep();
                }
            }
        }
    }

    /// Runs one build; Err is why it failed, as its deploy's `error_message` says.
    fn run(&self, slot: usize, build: &Build) -> Result<(), String> {
        let log = log::Log::new(self.store.clone(), &build.id);
        let result = self.run_logged(slot, build, &log);
        match &result {
            Ok(()) => log
                .section("cleanup")
                .line("Build finished: the site is live"),
            Err(why) => log.section("cleanup").line(&format!("Build failed: {why}")),
        };
        log.flush();
        result
    }

    fn run_logged(&self, slot: usize, build: &Build, log: &log::Log) -> Result<(), String> {
        let store = &self.store;
        let started = Instant::now();
        let limits = &self.config.limits;
        log.section("initializing").line(&format!(
            "Build {} of branch {} (attempt {})",
            build.id, build.branch, build.attempts
        ));
        let site = store
            .sites()
            .get(&build.site_id)
            .map_err(|e| e.to_string())?
            .ok_or("the site was deleted")?;
        let suspended = store
            .resellers()
            .get(&site.reseller_id)
            .map(|r| r.suspended)
            .unwrap_or(true)
            || store
                .suspensions()
                .get(&site.reseller_id, &site.user_id)
                .map_or(true, |s| s.is_some());
        if suspended {
            return Err("the site's owner is suspended: builds do not run".into());
        }
        let max_minutes = store
            .plans()
            .limits_of(&site.reseller_id, &site.user_id)
            .map_err(|e| e.to_string())?
            .0
            .max_build_minutes_month;
        if let Some(max) = max_minutes {
            let used = store
                .builds()
                .user_seconds(&site.user_id, Timestamp::now())
                .map_err(|e| e.to_string())?;
            if used >= max * 60 {
                return Err(format!(
                    "quota_exceeded: this month's builds ran {} of the plan's {max} minutes",
                    used.div_ceil(60)
                ));
            }
        }
        let link: RepoLink = store
            .builds()
            .repo(&site.id)
            .map_err(|e| e.to_string())?
            .ok_or("the site's repository was unlinked")?;
        let secrets = git::url_secrets(&link.repo_url);
        log.mask(secrets);
        store
            .deploys()
            .set_building(&build.deploy_id, true, Timestamp::now())
            .map_err(|e| e.to_string())?;
        let uid = self.config.slot_uid(slot);
        let work = self.config.dir.join("work").join(&build.id);
        let _ = std::fs::remove_dir_all(&work);
        let _cleanup = RemoveOnDrop(work.clone());
        for dir in ["repo", "tmp", "home", "net"] {
            std::fs::create_dir_all(work.join(dir))
                .map_err(|e| format!("cannot make the build's directories: {e}"))?;
        }
        let key = match &link.deploy_key_id {
            Some(id) => Some(
                store
                    .builds()
                    .key(&site.reseller_id, id)
                    .map_err(|e| e.to_string())?
                    .ok_or("the repository's deploy key was deleted")?,
            ),
            None => None,
        };
        let sha = git::clone(
            &link.repo_url,
            &build.branch,
            &work,
            key.as_ref(),
            self.config.allow_private,
            limits,
            |l| {
                log.line(&l);
            },
        )?;
        store
            .builds()
            .set_sha(&build.id, &sha)
            .map_err(|e| e.to_string())?;
        log.line(&format!("Checked out {sha}"));

        let base = git::relative(link.base.as_deref().unwrap_or(""))?;
        let publish = git::relative(link.dir.as_deref().unwrap_or(""))?;
        let checkout = work.join("repo");
        let base_dir = checkout.join(&base);
        if !base_dir.is_dir() {
            return Err(format!(
                "the base directory {base:?} is not in the repository"
            ));
        }
        let cache_dir = cache::site_dir(&self.config.dir, &site.id);
        if build.clear_cache {
            log.line("Clearing the site's build cache, as asked");
            cache::clear(&cache_dir);
        }
        std::fs::create_dir_all(&cache_dir).map_err(|e| format!("cannot make the cache: {e}"))?;
        if cache::restore(&cache_dir, &base_dir) {
            log.line("Restored node_modules from the cache (same lockfile)");
        }
        if let Some(uid) = uid {
            sandbox::give_to(&work, uid)
                .map_err(|e| format!("cannot prepare the checkout: {e}"))?;
            sandbox::give_to(&cache_dir, uid)
                .map_err(|e| format!("cannot prepare the cache: {e}"))?;
        }

        if let Some(cmd) = link.cmd.as_deref().filter(|c| !c.trim().is_empty()) {
            log.section("building").line(&format!("$ {cmd}"));
            let context = if build.branch == link.repo_branch {
                "production"
            } else {
                "branch-deploy"
            };
            let env = build_env(store, &site, build, &sha, context, log)?;
            let proxy_log = log.clone();
            let _proxy = net::start(&work.join("net"), uid, move |target| {
                proxy_log.line(&format!("Network: refused a connection to {target}"));
            })
            .map_err(|e| format!("cannot start the build's network: {e}"))?;
            let rel = format!("repo/{base}");
            let job = sandbox::Job {
                work: &work,
                cwd: rel.trim_end_matches('/'),
                cache: &cache_dir,
                net: &work.join("net"),
                shim: &self.shim()?,
                command: cmd,
                env: &env,
                uid,
                mark: &self.config.slot_mark(slot),
                limits,
                time_left: limits.timeout.saturating_sub(started.elapsed()),
            };
            log.flush();
            let outcome = sandbox::run(&job, |l| match l {
                Some(l) => {
                    log.line(&l);
                }
                None => log.tick(),
            });
            // Nothing of the command outlives it (before its files are read or removed).
            sandbox::kill_slot(&self.config.slot_mark(slot), uid);
            match outcome? {
                sandbox::Outcome::Exited(0) => {}
                sandbox::Outcome::Exited(code) => {
                    return Err(format!("the build command exited with status {code}"))
                }
                sandbox::Outcome::Killed(why) => return Err(why),
            }
        } else {
            log.section("building")
                .line("No build command: publishing the files as they are");
        }

        log.section("deploying");
        let out = base_dir.join(&publish);
        let out = confine(&checkout, &out)?;
        let (files, _pinned) = self.store_output(&site, &out)?;
        log.line(&format!("Deploying {} files from {publish:?}", files.len()));
        store
            .deploys()
            .set_files(&build.deploy_id, files, Timestamp::now())
            .map_err(|e| e.to_string())?;
        if let Some(saved) = cache::save(&cache_dir, &base_dir, limits) {
            log.line(&saved);
        }
        cache::trim_all(&self.config.dir, limits.cache_total);
        Ok(())
    }

    /// The server's binary as the sandbox mounts it: a copy in the build dir when builds run as
    /// users of their own (the binary's own path may not be searchable by them).
    fn shim(&self) -> Result<PathBuf, String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find the server's binary: {e}"))?;
        if !rustix::process::getuid().is_root() {
            return Ok(exe);
        }
        let copy = self.config.dir.join("bin/resellerd");
        let mut made = self
            .shim_copied
            .lock()
            .map_err(|_| "a build worker failed".to_string())?;
        if !*made {
            let tmp = copy.with_extension("tmp");
            std::fs::copy(&exe, &tmp)
                .and_then(|_| std::fs::rename(&tmp, &copy))
                .map_err(|e| format!("cannot copy the server's binary for the sandbox: {e}"))?;
            *made = true;
        }
        Ok(copy)
    }

    /// Stores the publish directory's files as blobs of the site's user and returns the map.
    fn store_output(
        &self,
        site: &crate::store::sites::Site,
        out: &Path,
    ) -> Result<
        (
            std::collections::BTreeMap<String, String>,
            crate::store::blobs::Pinned,
        ),
        String,
    > {
        let store = &self.store;
        let max_mb = store
            .plans()
            .limits_of(&site.reseller_id, &site.user_id)
            .map_err(|e| e.to_string())?
            .0
            .max_storage_mb;
        let mut files = std::collections::BTreeMap::new();
        let mut contents: std::collections::BTreeMap<String, crate::store::blobs::Parked> =
            std::collections::BTreeMap::new();
        let mut total = 0u64;
        let mut stack = vec![out.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries =
                std::fs::read_dir(&dir).map_err(|e| format!("cannot read the output: {e}"))?;
            for e in entries.flatten() {
                let Ok(kind) = e.file_type() else { continue };
                let path = e.path();
                if kind.is_dir() {
                    stack.push(path);
                    continue;
                }
                // Links are not followed out of the output: they are skipped.
                if !kind.is_file() {
                    continue;
                }
                let rel = path
                    .strip_prefix(out)
                    .map_err(|e| e.to_string())?
                    .to_string_lossy()
                    .into_owned();
                let Ok(rel) = crate::store::deploys::normalize_path(&rel) else {
                    continue;
                };
                if files.len() >= self.config.max_files {
                    return Err(format!(
                        "the output has more than {} files",
                        self.config.max_files
                    ));
                }
                let mut blob = store.blobs.incoming().map_err(|e| e.to_string())?;
                let mut f = std::fs::File::open(&path).map_err(|e| e.to_string())?;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = std::io::Read::read(&mut f, &mut buf).map_err(|e| e.to_string())?;
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                    if total > self.config.max_bytes {
                        return Err(format!(
                            "the output is larger than {} MiB",
                            self.config.max_bytes >> 20
                        ));
                    }
                    blob.write(&buf[..n]).map_err(|e| e.to_string())?;
                }
                let sha = blob.digest();
                if !contents.contains_key(&sha) {
                    contents.insert(sha.clone(), blob.park().map_err(|e| e.to_string())?);
                }
                files.insert(rel, sha);
            }
        }
        if files.is_empty() {
            return Err("the publish directory is empty".into());
        }
        let unpacked = crate::store::deploys::Unpacked {
            files,
            contents: contents.into_values().collect(),
        };
        store
            .store_unpacked(&site.user_id, max_mb, unpacked)
            .map_err(|e| e.to_string())
    }
}

/// The environment of a build: Netlify's variables, then the site's own (secret values masked
/// in the log).
fn build_env(
    store: &Store,
    site: &crate::store::sites::Site,
    build: &Build,
    sha: &str,
    context: &str,
    log: &log::Log,
) -> Result<Vec<(String, String)>, String> {
    let mut env = vec![
        ("BRANCH".to_string(), build.branch.clone()),
        ("HEAD".into(), build.branch.clone()),
        ("COMMIT_REF".into(), sha.to_string()),
        ("CONTEXT".into(), context.to_string()),
        ("BUILD_ID".into(), build.id.clone()),
        ("DEPLOY_ID".into(), build.deploy_id.clone()),
        ("SITE_ID".into(), site.id.clone()),
        ("SITE_NAME".into(), site.name.as_str().to_string()),
    ];
    let vars = store
        .env()
        .for_build(&site.reseller_id, &site.user_id, &site.id, context)
        .map_err(|e| e.to_string())?;
    let mut secrets = Vec::new();
    for (key, value, secret) in vars {
        if secret {
            secrets.push(value.clone());
        }
        env.push((key, value));
    }
    log.mask(secrets);
    Ok(env)
}

/// `path` if it stays inside `root` once links are resolved.
fn confine(root: &Path, path: &Path) -> Result<PathBuf, String> {
    let root = root.canonicalize().map_err(|e| e.to_string())?;
    let real = path
        .canonicalize()
        .map_err(|_| "the publish directory does not exist after the build".to_string())?;
    if !real.starts_with(&root) || !real.is_dir() {
        return Err("the publish directory must be a directory inside the repository".into());
    }
    Ok(real)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts the runner: builds interrupted by a stop are queued again (or failed), then
/// `--build-concurrency` workers take builds.
pub fn start(store: Store, config: Config) -> Arc<Runner> {
    let unavailable = if config.concurrency == 0 {
        Some("builds are turned off on this server (--build-concurrency 0)".to_string())
    } else {
        sandbox::check(&config.dir).err()
    };
    if let Some(why) = &unavailable {
        tracing::info!(reason = %why, "builds from git cannot run");
    }
    // On an embedded database this process is the only one: every build marked running is an
    // orphan. On a shared one, only those whose heartbeat stopped (another node may run the
    // others).
    let shared = store.is_shared();
    let now = Timestamp::now();
    let recovered = store.builds().recover(now, |b| !shared || silent(b, now));
    // (Not flushed here, on the runtime's thread: a stop before the next flush finds the same
    // builds running and recovers them again.)
    match recovered {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            builds = n,
            "builds interrupted by the last stop are queued again"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot recover interrupted builds"),
    }
    // What a stopped server's builds left running is killed before anything starts again.
    for slot in 0..config.concurrency.max(1) {
        let n = sandbox::kill_slot(&config.slot_mark(slot), config.slot_uid(slot));
        if n > 0 {
            tracing::info!(
                processes = n,
                slot,
                "killed what a stopped server's build left running"
            );
        }
    }
    let _ = std::fs::remove_dir_all(config.dir.join("work"));
    let runner = Arc::new(Runner {
        store,
        unavailable,
        picker: Mutex::default(),
        wake: (Mutex::new(0), Condvar::new()),
        shim_copied: Mutex::new(false),
        active: Mutex::new((Default::default(), Instant::now())),
        config,
    });
    if runner.unavailable.is_none() {
        for slot in 0..runner.config.concurrency {
            let r = runner.clone();
            if let Err(e) = std::thread::Builder::new()
                .name(format!("build-{slot}"))
                .spawn(move || r.worker(slot))
            {
                tracing::error!(error = %e, "cannot start a build worker");
            }
        }
    }
    runner
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(reseller: &str, n: i64) -> Build {
        Build {
            id: format!("{reseller}{n}"),
            deploy_id: String::new(),
            site_id: format!("site-{reseller}"),
            reseller_id: reseller.into(),
            user_id: String::new(),
            branch: "main".into(),
            sha: None,
            title: None,
            clear_cache: false,
            state: BuildState::Queued,
            error: None,
            attempts: 0,
            created_at: Timestamp(n),
            started_at: None,
            finished_at: None,
            heartbeat_at: None,
        }
    }

    #[test]
    fn one_resellers_many_builds_do_not_starve_anothers_one() {
        // A pushed 50 times, then B once.
        let mut queued: Vec<Build> = (0..50).map(|n| build("a", n)).collect();
        queued.push(build("b", 100));
        let mut picker = Picker::default();
        let mut order = Vec::new();
        for _ in 0..4 {
            let next = choose(&queued, &picker).unwrap().clone();
            picker
                .last_started
                .insert(next.reseller_id.clone(), Instant::now());
            std::thread::sleep(Duration::from_millis(2));
            queued.retain(|b| b.id != next.id);
            order.push(next.id);
        }
        // Oldest first, then B's one before A's second: turns alternate.
        assert_eq!(order, ["a0", "b100", "a1", "a2"]);
        // A reseller with a build running waits behind one with none.
        let queued = vec![build("a", 1), build("b", 2)];
        let mut picker = Picker::default();
        picker.running.insert("a".into(), 1);
        assert_eq!(choose(&queued, &picker).unwrap().id, "b2");
    }
}
