//! Builds from git (Netlify's continuous deployment): deploy keys, a site's linked repository,
//! build hooks, the durable build queue and each build's log.
//!
//! A build is a record (`builds`) and, while it waits, a key in `build_queue` (its creation time
//! then its id). Its deploy is made when the build is queued (state `enqueued`), so clients see it
//! at once. The runner (`crate::builds` in the server) takes one with `start`, which marks it
//! running; a restart finds running builds with `recover` and queues them again (once) or fails
//! them, so a build is never lost nor run twice at the same time.

use super::{decode, encode, get, ids_under, load_all, Store};
use crate::error::{StoreError, StoreResult};
use crate::model::{new_id, Timestamp};
use serde::{Deserialize, Serialize};

/// Deploy keys per reseller.
pub const MAX_DEPLOY_KEYS: usize = 200;
/// Build hooks per site.
pub const MAX_BUILD_HOOKS: usize = 20;
/// Builds waiting per site, and per reseller; one more is refused (429-like `limit_reached`).
pub const MAX_QUEUED_PER_SITE: usize = 10;
pub const MAX_QUEUED_PER_RESELLER: usize = 100;
/// Builds kept per site (the oldest finished ones and their logs go first).
pub const MAX_BUILDS_KEPT: usize = 50;
/// A build's stored log: at most this many lines and bytes; what comes after is cut.
pub const MAX_LOG_LINES: u32 = 20_000;
pub const MAX_LOG_BYTES: usize = 2 << 20;
/// How often a build interrupted by a restart is started again before it fails.
pub const MAX_ATTEMPTS: u32 = 2;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeployKey {
    pub id: String,
    pub reseller_id: String,
    pub user_id: Option<String>,
    /// OpenSSH public key line.
    pub public_key: String,
    /// OpenSSH private key (never shown).
    pub private_key: String,
    pub created_at: Timestamp,
}

/// A site's linked repository (Netlify's `repoInfo`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RepoLink {
    pub provider: String,
    /// `https://[user:token@]host/path` or `ssh://…`/`git@host:path`; credentials are secret.
    pub repo_url: String,
    pub repo_branch: String,
    pub allowed_branches: Vec<String>,
    pub deploy_key_id: Option<String>,
    /// The directory the build runs in, relative to the checkout.
    pub base: Option<String>,
    /// The directory published, relative to `base`.
    pub dir: Option<String>,
    /// The build command.
    pub cmd: Option<String>,
    /// The push webhook's HMAC key (GitHub, Gitea) or token (GitLab).
    pub hook_secret: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl RepoLink {
    /// True if a push to `branch` builds.
    pub fn builds_branch(&self, branch: &str) -> bool {
        branch == self.repo_branch || self.allowed_branches.iter().any(|b| b == branch)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BuildHook {
    pub id: String,
    pub site_id: String,
    pub title: String,
    pub branch: String,
    pub created_at: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BuildState {
    Queued,
    Running,
    Done,
    Error,
    Canceled,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Build {
    pub id: String,
    pub deploy_id: String,
    pub site_id: String,
    pub reseller_id: String,
    pub user_id: String,
    pub branch: String,
    /// The commit built, once checked out.
    pub sha: Option<String>,
    pub title: Option<String>,
    pub clear_cache: bool,
    pub state: BuildState,
    pub error: Option<String>,
    pub attempts: u32,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Written by the runner every few seconds while the build runs: a running build whose
    /// heartbeat stopped is an orphan (its server stopped), whichever node looks.
    pub heartbeat_at: Option<Timestamp>,
}

impl Build {
    pub fn done(&self) -> bool {
        matches!(
            self.state,
            BuildState::Done | BuildState::Error | BuildState::Canceled
        )
    }
}

/// One line of a build's log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogLine {
    pub ts: Timestamp,
    pub section: String,
    pub message: String,
}

pub struct Builds<'a>(&'a Store);

impl Store {
    pub fn builds(&self) -> Builds<'_> {
        Builds(self)
    }
}

fn limit(what: &str, max: usize) -> StoreError {
    StoreError::Conflict(
        crate::error::Conflict::BuildLimitReached,
        format!("at most {max} {what}"),
    )
}

fn user_seconds_key(user_id: &str, month: &str) -> String {
    format!("user_build_seconds/{user_id}/{month}")
}

fn log_key(build_id: &str, seq: u32) -> Vec<u8> {
    let mut k = format!("{build_id}/").into_bytes();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl Builds<'_> {
    // Deploy keys.

    pub fn create_key(&self, key: DeployKey) -> StoreResult<DeployKey> {
        let _counting = self.0.quota_guard()?;
        let prefix = format!("{}/", key.reseller_id);
        if self.0.t.deploy_keys.scan_prefix(prefix.as_bytes()).count() >= MAX_DEPLOY_KEYS {
            return Err(limit("deploy keys per reseller", MAX_DEPLOY_KEYS));
        }
        self.0.t.deploy_keys.insert(
            format!("{}/{}", key.reseller_id, key.id).as_bytes(),
            encode(&key),
        )?;
        Ok(key)
    }

    pub fn keys(&self, reseller_id: &str) -> StoreResult<Vec<DeployKey>> {
        self.0
            .t
            .deploy_keys
            .scan_prefix(format!("{reseller_id}/").as_bytes())
            .values()
            .map(|v| decode(&v?))
            .collect()
    }

    pub fn key(&self, reseller_id: &str, id: &str) -> StoreResult<Option<DeployKey>> {
        get(&self.0.t.deploy_keys, &format!("{reseller_id}/{id}"))
    }

    pub fn delete_key(&self, reseller_id: &str, id: &str) -> StoreResult<()> {
        self.0
            .t
            .deploy_keys
            .remove(format!("{reseller_id}/{id}").as_bytes())?;
        Ok(())
    }

    // Linked repositories.

    pub fn repo(&self, site_id: &str) -> StoreResult<Option<RepoLink>> {
        get(&self.0.t.site_repos, site_id)
    }

    pub fn link(&self, site_id: &str, link: &RepoLink) -> StoreResult<()> {
        self.0
            .t
            .site_repos
            .insert(site_id.as_bytes(), encode(link))?;
        Ok(())
    }

    /// Unlinks a site's repository: its push webhook stops building (build hooks stay, and
    /// answer that the site is not linked until it is again).
    pub fn unlink(&self, site_id: &str) -> StoreResult<()> {
        self.0.t.site_repos.remove(site_id.as_bytes())?;
        Ok(())
    }

    // Build hooks.

    pub fn create_hook(&self, hook: BuildHook) -> StoreResult<BuildHook> {
        let _counting = self.0.quota_guard()?;
        if self.hooks(&hook.site_id)?.len() >= MAX_BUILD_HOOKS {
            return Err(limit("build hooks per site", MAX_BUILD_HOOKS));
        }
        let t = &self.0.t;
        t.build_hooks.insert(
            format!("{}/{}", hook.site_id, hook.id).as_bytes(),
            encode(&hook),
        )?;
        t.build_hook_sites
            .insert(hook.id.as_bytes(), hook.site_id.as_bytes())?;
        Ok(hook)
    }

    pub fn hooks(&self, site_id: &str) -> StoreResult<Vec<BuildHook>> {
        self.0
            .t
            .build_hooks
            .scan_prefix(format!("{site_id}/").as_bytes())
            .values()
            .map(|v| decode(&v?))
            .collect()
    }

    /// A hook by its id alone (the id is the trigger URL's secret).
    pub fn hook_by_id(&self, id: &str) -> StoreResult<Option<BuildHook>> {
        let Some(site) = self.0.t.build_hook_sites.get(id.as_bytes())? else {
            return Ok(None);
        };
        let site = String::from_utf8_lossy(&site).into_owned();
        get(&self.0.t.build_hooks, &format!("{site}/{id}"))
    }

    pub fn put_hook(&self, hook: &BuildHook) -> StoreResult<()> {
        self.0.t.build_hooks.insert(
            format!("{}/{}", hook.site_id, hook.id).as_bytes(),
            encode(hook),
        )?;
        Ok(())
    }

    pub fn delete_hook(&self, site_id: &str, id: &str) -> StoreResult<()> {
        let t = &self.0.t;
        t.build_hooks.remove(format!("{site_id}/{id}").as_bytes())?;
        t.build_hook_sites.remove(id.as_bytes())?;
        Ok(())
    }

    // Builds.

    /// Queues a build of `branch` with its deploy (state `enqueued`; a draft, not published,
    /// when `draft`: a branch deploy). Older builds of the same site and branch still waiting
    /// are canceled: the newest push wins.
    pub fn enqueue(
        &self,
        site: &super::sites::Site,
        branch: &str,
        title: Option<String>,
        clear_cache: bool,
        draft: bool,
        now: Timestamp,
    ) -> StoreResult<Build> {
        let _counting = self.0.quota_guard()?;
        let queued = self.queued()?;
        let mut superseded = Vec::new();
        for b in &queued {
            if b.site_id == site.id && b.branch == branch {
                superseded.push(b.clone());
            }
        }
        let of_site = queued.iter().filter(|b| b.site_id == site.id).count() - superseded.len();
        if of_site >= MAX_QUEUED_PER_SITE {
            return Err(limit("builds waiting per site", MAX_QUEUED_PER_SITE));
        }
        let of_reseller = queued
            .iter()
            .filter(|b| b.reseller_id == site.reseller_id)
            .count()
            - superseded.len();
        if of_reseller >= MAX_QUEUED_PER_RESELLER {
            return Err(limit(
                "builds waiting per reseller",
                MAX_QUEUED_PER_RESELLER,
            ));
        }
        let deploy = self.0.deploys().create_enqueued(
            site,
            super::deploys::NewDeploy {
                draft,
                title: title.clone(),
                branch: Some(branch.to_string()),
            },
            now,
        )?;
        let build = Build {
            id: new_id(),
            deploy_id: deploy.id,
            site_id: site.id.clone(),
            reseller_id: site.reseller_id.clone(),
            user_id: site.user_id.clone(),
            branch: branch.to_string(),
            sha: None,
            title,
            clear_cache,
            state: BuildState::Queued,
            error: None,
            attempts: 0,
            created_at: now,
            started_at: None,
            finished_at: None,
            heartbeat_at: None,
        };
        self.save(&build)?;
        self.0
            .t
            .builds_by_site
            .insert(format!("{}/{}", build.site_id, build.id).as_bytes(), &[])?;
        self.0
            .t
            .build_queue
            .insert(super::due_key(build.created_at, &build.id), &[])?;
        for old in superseded {
            self.finish(
                &old.id,
                BuildState::Canceled,
                Some("canceled: a newer build of the same branch was queued".into()),
                now,
            )?;
        }
        self.trim(&site.id)?;
        Ok(build)
    }

    fn save(&self, build: &Build) -> StoreResult<()> {
        self.0.t.builds.insert(build.id.as_bytes(), encode(build))?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> StoreResult<Option<Build>> {
        get(&self.0.t.builds, id)
    }

    /// The build of a deploy, if a build made it.
    pub fn of_deploy(&self, site_id: &str, deploy_id: &str) -> StoreResult<Option<Build>> {
        Ok(self
            .of_site(site_id)?
            .into_iter()
            .find(|b| b.deploy_id == deploy_id))
    }

    /// A site's builds, newest first.
    pub fn of_site(&self, site_id: &str) -> StoreResult<Vec<Build>> {
        let ids = ids_under(&self.0.t.builds_by_site, site_id)?;
        let mut builds: Vec<Build> = load_all(&self.0.t.builds, &ids)?;
        builds.reverse();
        Ok(builds)
    }

    /// Builds waiting, oldest first.
    pub fn queued(&self) -> StoreResult<Vec<Build>> {
        let mut out = Vec::new();
        for k in self.0.t.build_queue.iter().keys() {
            let k = k?;
            let id = String::from_utf8_lossy(&k[8..]).into_owned();
            if let Some(b) = self.get(&id)? {
                out.push(b);
            }
        }
        Ok(out)
    }

    /// Builds marked running.
    pub fn running(&self) -> StoreResult<Vec<Build>> {
        let mut out = Vec::new();
        for v in self.0.t.builds.iter().values() {
            let b: Build = decode(&v?)?;
            if b.state == BuildState::Running {
                out.push(b);
            }
        }
        Ok(out)
    }

    /// Takes a queued build to run: marked running, out of the queue. None if it is no longer
    /// queued.
    pub fn start(&self, id: &str, now: Timestamp) -> StoreResult<Option<Build>> {
        let _counting = self.0.quota_guard()?;
        let Some(mut b) = self.get(id)? else {
            return Ok(None);
        };
        self.0
            .t
            .build_queue
            .remove(super::due_key(b.created_at, &b.id))?;
        if b.state != BuildState::Queued {
            return Ok(None);
        }
        b.state = BuildState::Running;
        b.attempts += 1;
        b.started_at = Some(now);
        b.heartbeat_at = Some(now);
        self.save(&b)?;
        Ok(Some(b))
    }

    /// A running build's heartbeat (see `Build::heartbeat_at`).
    pub fn beat(&self, id: &str, now: Timestamp) -> StoreResult<()> {
        if let Some(mut b) = self.get(id)? {
            if b.state == BuildState::Running {
                b.heartbeat_at = Some(now);
                self.save(&b)?;
            }
        }
        Ok(())
    }

    /// Records the commit a running build checked out.
    pub fn set_sha(&self, id: &str, sha: &str) -> StoreResult<()> {
        if let Some(mut b) = self.get(id)? {
            b.sha = Some(sha.to_string());
            self.save(&b)?;
        }
        Ok(())
    }

    /// Ends a build (done, failed or canceled); a failed or canceled build's deploy fails with
    /// the reason.
    pub fn finish(
        &self,
        id: &str,
        state: BuildState,
        error: Option<String>,
        now: Timestamp,
    ) -> StoreResult<Option<Build>> {
        let Some(mut b) = self.get(id)? else {
            return Ok(None);
        };
        if b.done() {
            return Ok(Some(b));
        }
        self.0
            .t
            .build_queue
            .remove(super::due_key(b.created_at, &b.id))?;
        b.state = state;
        b.error = error.clone();
        b.finished_at = Some(now);
        self.save(&b)?;
        if state != BuildState::Done {
            let reason = error.unwrap_or_else(|| "the build failed".into());
            self.0.deploys().fail(&b.deploy_id, &reason, now)?;
        }
        Ok(Some(b))
    }

    /// Builds marked running that nobody runs (`orphan` says which: after a restart, all of
    /// them; on a shared database, only those started longer ago than any build may run) are
    /// queued again, or failed once they were started `MAX_ATTEMPTS` times. Returns how many
    /// were queued again.
    pub fn recover(&self, now: Timestamp, orphan: impl Fn(&Build) -> bool) -> StoreResult<usize> {
        let mut again = 0;
        for mut b in self.running()? {
            if !orphan(&b) {
                continue;
            }
            if b.attempts >= MAX_ATTEMPTS {
                self.finish(
                    &b.id,
                    BuildState::Error,
                    Some(format!(
                        "the server stopped during this build {} times",
                        b.attempts
                    )),
                    now,
                )?;
                continue;
            }
            b.state = BuildState::Queued;
            self.save(&b)?;
            self.0
                .t
                .build_queue
                .insert(super::due_key(b.created_at, &b.id), &[])?;
            self.0.deploys().set_building(&b.deploy_id, false, now)?;
            again += 1;
        }
        Ok(again)
    }

    /// Drops a site's oldest finished builds (and their logs) past `MAX_BUILDS_KEPT`.
    fn trim(&self, site_id: &str) -> StoreResult<()> {
        let builds = self.of_site(site_id)?;
        for b in builds.iter().skip(MAX_BUILDS_KEPT).filter(|b| b.done()) {
            self.remove(b)?;
        }
        Ok(())
    }

    fn remove(&self, b: &Build) -> StoreResult<()> {
        let t = &self.0.t;
        t.builds.remove(b.id.as_bytes())?;
        t.builds_by_site
            .remove(format!("{}/{}", b.site_id, b.id).as_bytes())?;
        t.build_queue.remove(super::due_key(b.created_at, &b.id))?;
        let keys: Vec<_> = t
            .build_log
            .scan_prefix(format!("{}/", b.id).as_bytes())
            .keys()
            .collect::<Result<_, _>>()?;
        let mut batch = crate::kv::Batch::default();
        for k in keys {
            batch.remove(k);
        }
        t.build_log.apply_batch(batch)?;
        Ok(())
    }

    /// Forgets a deleted site's link, hooks, builds and logs (a running build fails when it
    /// finds its site gone).
    pub fn delete_all_of_site(&self, site_id: &str) -> StoreResult<()> {
        self.unlink(site_id)?;
        for hook in self.hooks(site_id)? {
            self.delete_hook(site_id, &hook.id)?;
        }
        for b in self.of_site(site_id)? {
            self.remove(&b)?;
        }
        Ok(())
    }

    /// Counts the seconds a build of `site_id` ran, in the month it ended (`/usage`'s
    /// `build_seconds`).
    pub fn count_seconds(&self, build: &Build, seconds: u64, now: Timestamp) -> StoreResult<()> {
        let month = super::usage::month_of(now);
        let site_key = super::usage::build_seconds_key(&build.site_id, &month);
        let user_key = user_seconds_key(&build.user_id, &month);
        let t = &self.0.t;
        t.counters.transaction(|c| {
            super::bump(c, &site_key, seconds as i64)?;
            super::bump(c, &user_key, seconds as i64)?;
            Ok::<_, crate::kv::ConflictableTransactionError<StoreError>>(())
        })?;
        Ok(())
    }

    /// Seconds a user's builds ran in the month of `now` (what `max_build_minutes_month`
    /// limits).
    pub fn user_seconds(&self, user_id: &str, now: Timestamp) -> StoreResult<u64> {
        let key = user_seconds_key(user_id, &super::usage::month_of(now));
        Ok(super::count_of(self.0.t.counters.get(key.as_bytes())?).max(0) as u64)
    }

    // Logs.

    /// Appends lines to a build's log, numbered from `next`; returns the next number. Lines
    /// past the log's limits are dropped (the caller says so once).
    pub fn append_log(&self, build_id: &str, next: u32, lines: &[LogLine]) -> StoreResult<u32> {
        let mut batch = crate::kv::Batch::default();
        let mut seq = next;
        for line in lines {
            if seq >= MAX_LOG_LINES {
                break;
            }
            batch.insert(log_key(build_id, seq), encode(line));
            seq += 1;
        }
        self.0.t.build_log.apply_batch(batch)?;
        Ok(seq)
    }

    /// A build's log lines from number `from` on, with their numbers.
    pub fn log(&self, build_id: &str, from: u32) -> StoreResult<Vec<(u32, LogLine)>> {
        let prefix = format!("{build_id}/");
        let mut out = Vec::new();
        for item in self.0.t.build_log.range(log_key(build_id, from)..) {
            let (k, v) = item?;
            if !k.starts_with(prefix.as_bytes()) || k.len() != prefix.len() + 4 {
                break;
            }
            let seq = u32::from_be_bytes(k[prefix.len()..].try_into().unwrap_or([0; 4]));
            out.push((seq, decode(&v)?));
        }
        Ok(out)
    }
}
