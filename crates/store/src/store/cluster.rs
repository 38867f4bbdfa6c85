//! What keeps several processes on one database right (see ARCHITECTURE.md, "Several nodes"):
//! the locks that guard a count between reading and writing, the cluster's shared secrets, the
//! leader, and the announcements that keep every node's caches true.

use super::*;

impl Store {
    /// The lock of one deploy's file map (see `map_locks`).
    pub(crate) fn map_lock(&self, deploy_id: &str) -> StoreResult<Held<MutexGuard<'_, ()>>> {
        let (local, key) = self.map_stripe(deploy_id);
        self.held(local, &[(key, false)])
    }

    /// The lock of one deploy's file map, and blob GC kept off (see `blobs_in_use`), together
    /// (one lock connection for both on PostgreSQL).
    pub(crate) fn map_lock_and_blobs(
        &self,
        deploy_id: &str,
    ) -> StoreResult<Held<(MutexGuard<'_, ()>, std::sync::RwLockReadGuard<'_, ()>)>> {
        let (map, key) = self.map_stripe(deploy_id);
        let gc = self.gc_lock.read().unwrap_or_else(|e| e.into_inner());
        self.held((map, gc), &[(key, false), (lock_key::GC, true)])
    }

    /// The local lock of `deploy_id`'s stripe and the key of its cluster lock.
    fn map_stripe(&self, deploy_id: &str) -> (MutexGuard<'_, ()>, i64) {
        // FNV-1a, not the std hasher: every node must pick the same stripe.
        let stripe = deploy_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        }) % 64;
        let local = self.map_locks[stripe as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        (local, lock_key::MAP_STRIPES + stripe as i64)
    }

    /// Serialises the creates a plan limits by a count (see `quota_lock`).
    pub(crate) fn quota_guard(&self) -> StoreResult<Held<MutexGuard<'_, ()>>> {
        let local = self.quota_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.held(local, &[(lock_key::QUOTA, false)])
    }

    /// Serialises domain registrations (see `domain_creates`).
    pub(crate) fn domain_creates_guard(&self) -> StoreResult<Held<MutexGuard<'_, ()>>> {
        let local = self
            .domain_creates
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.held(local, &[(lock_key::DOMAIN_CREATES, false)])
    }

    /// `local`, and on PostgreSQL the cluster-wide locks `keys` (key, shared) as well: the
    /// in-process lock keeps this node's threads in line, the advisory locks the other nodes.
    /// A caller holds one `Held` at a time (take locks needed together in one call).
    pub(super) fn held<G>(&self, local: G, keys: &[(i64, bool)]) -> StoreResult<Held<G>> {
        let cluster = self.db.cluster_lock(keys)?;
        Ok(Held {
            _cluster: cluster,
            _local: local,
        })
    }

    /// Waits until every write made so far is durable. Call before answering a mutating request.
    pub async fn flush(&self) -> StoreResult<()> {
        self.flusher.flush().await
    }

    /// Synchronous flush, for shutdown.
    pub fn flush_blocking(&self) -> StoreResult<()> {
        self.audit_log.write_pending()?;
        self.db.flush().map(|_| ()).map_err(StoreError::from)
    }

    /// The current generation of host-relevant data (see `hosts_generation`).
    pub fn hosts_generation(&self) -> u64 {
        self.hosts_generation.get()
    }

    /// The current generation of credential-relevant data (see `credentials_generation`).
    pub fn credentials_generation(&self) -> u64 {
        self.credentials_generation.get()
    }

    /// Blocks blob GC while the guard lives (see `gc_lock`), on every node.
    pub fn blobs_in_use(&self) -> StoreResult<Held<std::sync::RwLockReadGuard<'_, ()>>> {
        let local = self.gc_lock.read().unwrap_or_else(|e| e.into_inner());
        self.held(local, &[(lock_key::GC, true)])
    }

    /// The value every node uses for the secret `name` (the edge's signing secret, the operator
    /// token's hash): embedded, `local` (the data dir's own file); on PostgreSQL, the one in the
    /// database, which the first node to start stored from its own `local`.
    pub fn cluster_secret(&self, name: &str, local: &[u8]) -> StoreResult<Vec<u8>> {
        if !self.is_shared() {
            return Ok(local.to_vec());
        }
        Ok(
            match self
                .t
                .meta
                .compare_and_swap(secret_key(name), None::<&[u8]>, Some(local))?
            {
                Ok(()) => local.to_vec(),
                Err(e) => e.current.map(|v| v.to_vec()).unwrap_or_default(),
            },
        )
    }

    /// The secret `name` as the database holds it now (`None` embedded or if none was stored).
    pub fn stored_cluster_secret(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        if !self.is_shared() {
            return Ok(None);
        }
        Ok(self.t.meta.get(secret_key(name))?.map(|v| v.to_vec()))
    }

    /// Replaces the secret `name` every node uses (nothing embedded).
    pub fn set_cluster_secret(&self, name: &str, value: &[u8]) -> StoreResult<()> {
        if self.is_shared() {
            self.t.meta.insert(secret_key(name), value)?;
        }
        Ok(())
    }

    /// Replaces the secret `name` every node on the PostgreSQL database `url` uses, while
    /// they run (`resellerd operator-token --database-url`).
    pub fn set_cluster_secret_at(url: &str, name: &str, value: &[u8]) -> StoreResult<()> {
        let meta = crate::kv::pg::Db::open(url, 2)?.open_tree(b"meta")?;
        meta.insert(&secret_key(name), value.into())?;
        Ok(())
    }

    /// True if this process runs the background work (outboxes, verification, renewals,
    /// sweeps, blob GC): always when embedded; on PostgreSQL, the node holding the leader lease.
    pub fn is_leader(&self) -> bool {
        self.db.is_leader()
    }

    /// Waits for the next tick of `tick` at which this node leads: the beat of a sweep that
    /// runs once in a cluster.
    pub(crate) async fn next_leading_tick(&self, tick: &mut tokio::time::Interval) {
        loop {
            tick.tick().await;
            if self.is_leader() {
                return;
            }
        }
    }

    /// A tick every `interval` that waits, rather than bursts, after a slow round.
    pub(crate) fn sweep_interval(interval: std::time::Duration) -> tokio::time::Interval {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    }

    /// Tells the other nodes on this database that `topic` changed; each runs what it
    /// registered for it with `on_announcement`. Nothing when embedded.
    pub fn announce(&self, topic: &str) {
        self.db.announce(&[topic]);
    }

    /// Runs `f` whenever another node announces `topic`, and whenever this node may have
    /// missed announcements (it lost its listening connection); `f` says whether it caught up.
    pub fn on_announcement(&self, topic: &str, f: impl Fn() -> bool + Send + Sync + 'static) {
        self.hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((topic.to_string(), std::sync::Arc::new(f)));
    }

    /// On PostgreSQL, hears the other nodes' announcements for as long as the store is open:
    /// bumps the generations they name first (cheap, and what keeps credentials and hosts
    /// right), then reads the webhook subscriptions or the limits again and runs the hooks
    /// registered for the rest, once per batch. Says whether everything caught up (if not, the
    /// node stops trusting its caches and starts over).
    pub(super) fn listen_to_other_nodes(&self) {
        let (hosts, credentials) = (
            self.hosts_generation.clone(),
            self.credentials_generation.clone(),
        );
        let (subscriptions, endpoints) = (self.subscriptions.clone(), self.t.webhooks.clone());
        let (any_limits, settings) = (self.any_limits.clone(), self.t.plan_settings.clone());
        let hooks = self.hooks.clone();
        if self.is_shared() {
            // The backstop for an announcement that never left (its node killed between the
            // commit and the notice): no cached credential or host outlives `CACHE_EXPIRY`.
            let generations = [hosts.clone(), credentials.clone()];
            let spawned = std::thread::Builder::new()
                .name("cache-expiry".into())
                .spawn(move || loop {
                    std::thread::sleep(CACHE_EXPIRY);
                    generations.iter().for_each(Generation::bump);
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the cache expiry");
            }
        }
        self.db.listen(move |topics| {
            let is = |name: &str| topics.is_none_or(|t| t.contains(&name));
            for generation in [&hosts, &credentials] {
                if is(generation.name) {
                    generation.bump();
                }
            }
            let mut caught_up = true;
            let reloaded = match topics {
                None => subscriptions.reload(&endpoints),
                Some(topics) => topics
                    .iter()
                    .filter_map(|t| t.strip_prefix(webhooks::SUBSCRIPTIONS_TOPIC))
                    .try_for_each(|reseller_id| subscriptions.reload_one(&endpoints, reseller_id)),
            };
            if let Err(e) = reloaded {
                tracing::warn!(error = %e, "cannot read the webhook subscriptions again");
                caught_up = false;
            }
            if is(plans::LIMITS_TOPIC) {
                // On a failed read, assume limits: a read per issue instead of a missed limit.
                let any = plans::Plans::any_limits_stored(&settings).unwrap_or(true);
                any_limits.store(any, std::sync::atomic::Ordering::Release);
            }
            let registered: Vec<_> = hooks.lock().unwrap_or_else(|e| e.into_inner()).clone();
            for (name, f) in registered {
                if is(&name) {
                    caught_up &= f();
                }
            }
            caught_up
        });
    }
}
