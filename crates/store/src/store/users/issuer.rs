//! The token issuer: `POST /access_tokens` upserts (find or create the user by email, then a
//! new token) queued by concurrent requests and run in batches, one transaction per batch.

use super::tokens::{drop_records, expiry_key, put_token_ids, token_ids, write_token};
use super::*;
use crate::error::{StoreError, StoreResult};
use crate::kv::Transactional;
use crate::kv::{ConflictableTransactionError, ConflictableTransactionResult, TransactionError};
use crate::model::secret::{Secret, TOKEN_PREFIX};
use crate::model::{new_id, Email, Timestamp};
use crate::store::events::{emit, Subject, Subscriptions};
use crate::store::{abort, bump, count_of};
use tokio::sync::oneshot;

/// A token to issue: its id, hash, masked form and terms.
pub(super) struct NewToken {
    id: String,
    hash: [u8; 32],
    masked: String,
    terms: TokenTerms,
}

impl NewToken {
    pub(super) fn new(secret: &Secret, terms: TokenTerms) -> Self {
        NewToken {
            id: new_id(),
            hash: secret.hash(),
            masked: secret.masked(TOKEN_PREFIX),
            terms,
        }
    }
}

/// One find-or-create of a user by email, and optionally a new token for it.
pub(super) struct Upsert {
    pub(super) email_key: String,
    /// The user to create if the email is new: its reseller, and the uid and time asked for.
    pub(super) new_user: User,
    pub(super) token: Option<NewToken>,
    /// The reseller's user limit, checked against its user count when the user is new.
    pub(super) max_users: Option<u64>,
}

impl Upsert {
    pub(super) fn new(
        reseller_id: &str,
        email: &Email,
        uid: Option<&str>,
        now: Timestamp,
        token: Option<NewToken>,
    ) -> Self {
        Upsert {
            email_key: email_key(reseller_id, email),
            new_user: User {
                id: new_id(),
                reseller_id: reseller_id.to_string(),
                email: email.clone(),
                uid: uid.map(str::to_string),
                created_at: now,
            },
            token,
            max_users: None,
        }
    }
}

/// What an `Upsert` did.
pub(super) struct Upserted {
    pub(super) user: User,
    pub(super) created: bool,
    pub(super) token: Option<AccessToken>,
    /// A uid was recorded for an existing user (cached credentials carry it).
    pub(super) uid_recorded: bool,
    /// How many of the user's oldest tokens the cap revoked.
    pub(super) revoked: usize,
}

/// Runs one `Upsert` inside a transaction: a handful of writes for a new user and a token,
/// plus the removal of the oldest tokens past the user's cap.
pub(super) fn upsert_in(
    tx: &UserTx,
    job: &Upsert,
) -> ConflictableTransactionResult<Upserted, StoreError> {
    let reseller_id = job.new_user.reseller_id.as_str();
    let existing = match tx.user_by_email.get(job.email_key.as_bytes())? {
        Some(id) => {
            let id = String::from_utf8_lossy(&id);
            load_entry(tx, reseller_id, &id)?
        }
        None => None,
    };
    let (mut entry, legacy, created, mut dirty) = match existing {
        Some((entry, legacy)) => (entry, legacy, false, false),
        None => {
            tx.user_by_email
                .insert(job.email_key.as_bytes(), job.new_user.id.as_bytes())?;
            if let Some(uid) = &job.new_user.uid {
                tx.users_by_uid
                    .insert(uid_key(reseller_id, uid, &job.new_user.id).as_bytes(), &[])?;
            }
            let users = count_of(tx.counters.get(user_count_key(reseller_id).as_bytes())?);
            crate::store::plans::check("max_users", users.max(0) as u64, job.max_users)
                .or_else(abort)?;
            bump(&tx.counters, &user_count_key(reseller_id), 1)?;
            emit(
                &tx.events,
                &tx.subs,
                reseller_id,
                "user.created",
                job.new_user.created_at,
                || Subject::User(job.new_user.clone()),
            )?;
            let entry = Listed {
                user: job.new_user.clone(),
                tokens: 0,
            };
            (entry, false, true, true)
        }
    };
    let asked = job.new_user.uid.as_deref();
    let uid_recorded = entry.user.uid.is_none() && asked.is_some();
    if let Some(uid) = asked.filter(|_| uid_recorded) {
        entry.user.uid = Some(uid.to_string());
        tx.users_by_uid
            .insert(uid_key(reseller_id, uid, &entry.user.id).as_bytes(), &[])?;
        dirty = true;
    }
    let mut revoked = 0;
    let token = job.token.as_ref().map(|new| AccessToken {
        id: new.id.clone(),
        user_id: entry.user.id.clone(),
        reseller_id: reseller_id.to_string(),
        hash: new.hash,
        created_at: job.new_user.created_at,
        expires_at: new.terms.expires_at,
        last_used_at: None,
        masked: new.masked.clone(),
    });
    if let (Some(token), Some(new)) = (&token, &job.token) {
        tx.tokens.insert(token.id.as_bytes(), write_token(token))?;
        tx.token_by_hash
            .insert(&token.hash[..], token.id.as_bytes())?;
        if let Some(at) = token.expires_at {
            tx.token_expiry.insert(expiry_key(at, &token.id), &[])?;
        }
        let mut ids = token_ids(&tx.user_tokens, &token.user_id)?;
        ids.push(token.id.clone());
        let max = new.terms.max_per_user.max(1) as usize;
        if ids.len() > max {
            let oldest: Vec<String> = ids.drain(..ids.len() - max).collect();
            for id in &oldest {
                drop_records(tx, id)?;
            }
            revoked = oldest.len();
        }
        put_token_ids(&tx.user_tokens, &token.user_id, &ids)?;
        entry.tokens = ids.len() as u64;
        dirty = true;
    }
    if dirty {
        store_entry(tx, &entry, legacy)?;
    }
    Ok(Upserted {
        user: entry.user,
        created,
        token,
        uid_recorded,
        revoked,
    })
}

/// Issues tokens in batches: one thread runs every `POST /access_tokens` queued while the
/// previous batch ran in a single transaction. sled writes each transaction to its log as a
/// separate synced write, so one transaction per request would cap creates at the disk's sync
/// rate; a batch shares one.
#[derive(Clone)]
pub(crate) struct Issuer {
    tx: std::sync::mpsc::Sender<Queued>,
}

pub(super) struct Queued {
    job: Upsert,
    reply: oneshot::Sender<StoreResult<Upserted>>,
}

/// The most upserts one transaction runs.
const MAX_BATCH: usize = 256;

impl Issuer {
    pub(crate) fn start(t: &crate::store::Trees, subs: &Subscriptions) -> Issuer {
        let (tx, rx) = std::sync::mpsc::channel::<Queued>();
        let trees = t.clone();
        let subs = subs.clone();
        std::thread::Builder::new()
            .name("store-issue".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter().take(MAX_BATCH - 1));
                    // A panic fails this batch's requests (their replies are dropped), not the
                    // thread every later token depends on.
                    let run = std::panic::AssertUnwindSafe(|| run_batch(&trees, &subs, batch));
                    if std::panic::catch_unwind(run).is_err() {
                        tracing::error!("issuing a batch of tokens panicked");
                    }
                }
            })
            .unwrap_or_else(|e| panic!("cannot start the token thread: {e}"));
        Issuer { tx }
    }

    pub(super) async fn run(&self, job: Upsert) -> StoreResult<Upserted> {
        let stopped = || StoreError::internal("token thread stopped");
        let (reply, rx) = oneshot::channel();
        self.tx.send(Queued { job, reply }).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// Runs a batch in one transaction. An upsert that fails (a record that cannot be read) gets
/// its error and the rest run again without it.
pub(super) fn run_batch(trees: &crate::store::Trees, subs: &Subscriptions, mut batch: Vec<Queued>) {
    while !batch.is_empty() {
        let done = std::cell::RefCell::new(Vec::with_capacity(batch.len()));
        let open = UserTrees::open(trees);
        let result = open.all()[..].transaction(|v| {
            let tx = UserTx::new(v, subs);
            let mut done = done.borrow_mut();
            done.clear();
            for (i, queued) in batch.iter().enumerate() {
                match upsert_in(&tx, &queued.job) {
                    Ok(out) => done.push(out),
                    Err(ConflictableTransactionError::Abort(e)) => return abort((i, e)),
                    Err(ConflictableTransactionError::Conflict) => {
                        return Err(ConflictableTransactionError::Conflict)
                    }
                    Err(ConflictableTransactionError::Storage(e)) => {
                        return Err(ConflictableTransactionError::Storage(e))
                    }
                }
            }
            Ok(())
        });
        let done = done.into_inner();
        // Settled before anyone hears back, so a caller's next request sees the caches right.
        // A cached credential holds a user (with its uid) and a token: new users and new tokens
        // leave every cached one true, a recorded uid or a token revoked past the cap does not.
        if result.is_ok() && done.iter().all(|out| !out.uid_recorded && out.revoked == 0) {
            open.keep_caches("only new users and tokens were added");
        } else {
            drop(open);
        }
        match result {
            Ok(()) => {
                for (queued, out) in batch.drain(..).zip(done) {
                    let _ = queued.reply.send(Ok(out));
                }
            }
            Err(TransactionError::Abort((i, e))) => {
                let _ = batch.remove(i).reply.send(Err(e));
            }
            Err(TransactionError::Storage(e)) => {
                for queued in batch.drain(..) {
                    let _ = queued.reply.send(Err(e.clone().into()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    pub(super) fn queue(job: Upsert) -> (Queued, oneshot::Receiver<StoreResult<Upserted>>) {
        let (reply, rx) = oneshot::channel();
        (Queued { job, reply }, rx)
    }

    /// One upsert that cannot read its user fails alone; the rest of its batch is committed.
    #[test]
    pub(super) fn a_failing_upsert_leaves_the_rest_of_its_batch_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = Timestamp::now();
        let email = |s: &str| Email::parse(s).unwrap();
        let (broken, _) = store
            .users()
            .find_or_create("r1", &email("broken@x.test"), None, now)
            .unwrap();
        store
            .t
            .users_by_reseller
            .write()
            .insert(entry_key("r1", &broken.id).as_bytes(), &[99u8, 1, 2][..])
            .unwrap();

        let (batch, replies): (Vec<_>, Vec<_>) =
            ["a@x.test", "broken@x.test", "b@x.test", "a@x.test"]
                .iter()
                .zip(1u8..)
                .map(|(e, n)| {
                    let token = NewToken {
                        id: new_id(),
                        hash: [n; 32],
                        masked: "rt_…".into(),
                        terms: TokenTerms {
                            expires_at: None,
                            max_per_user: 100,
                        },
                    };
                    queue(Upsert::new("r1", &email(e), None, now, Some(token)))
                })
                .unzip();
        run_batch(&store.t, &store.subscriptions, batch);
        let outs: Vec<_> = replies
            .into_iter()
            .map(|r| r.blocking_recv().unwrap())
            .collect();

        assert!(outs[1].is_err(), "the unreadable user's upsert fails");
        let a = outs[0].as_ref().unwrap();
        let a_again = outs[3].as_ref().unwrap();
        assert!(
            a.created && !a_again.created,
            "one batch, one user per email"
        );
        assert_eq!(a.user.id, a_again.user.id);
        assert!(outs[2].as_ref().unwrap().created);
        let listed = store.users().get_listed("r1", &a.user.id).unwrap();
        assert_eq!(listed.tokens, 2);
        let token = a_again.token.as_ref().unwrap();
        assert_eq!(
            store
                .users()
                .token_by_hash(&token.hash)
                .unwrap()
                .unwrap()
                .id,
            token.id
        );
        assert_eq!(store.users().count("r1"), 3);
    }

    /// New users and tokens leave the credential caches alone (they hold only credentials they
    /// found); a token the cap revokes, a recorded uid or any other write to those trees moves
    /// the generation before the caller hears back.
    #[test]
    fn only_additions_keep_the_credential_caches() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = Timestamp::now();
        let email = Email::parse("c@x.test").unwrap();
        let issue = |n: u8, uid: Option<&str>, max_per_user: u32| {
            let token = NewToken {
                id: new_id(),
                hash: [n; 32],
                masked: "rt_…".into(),
                terms: TokenTerms {
                    expires_at: None,
                    max_per_user,
                },
            };
            let (queued, reply) = queue(Upsert::new("r1", &email, uid, now, Some(token)));
            run_batch(&store.t, &store.subscriptions, vec![queued]);
            reply.blocking_recv().unwrap().unwrap()
        };
        let before = store.credentials_generation();
        issue(1, None, 2);
        issue(2, None, 2);
        assert_eq!(store.credentials_generation(), before, "additions only");
        assert_eq!(issue(3, None, 2).revoked, 1);
        let after_cap = store.credentials_generation();
        assert!(after_cap > before, "a revoked token must stop resolving");
        assert!(issue(4, Some("crm-1"), 5).uid_recorded);
        assert!(
            store.credentials_generation() > after_cap,
            "cached users carry the uid"
        );
        let moved = store.credentials_generation();
        let user = store
            .users()
            .find_or_create("r1", &email, None, now)
            .unwrap()
            .0;
        assert!(
            store.credentials_generation() > moved,
            "any other write moves it"
        );
        let hosts = store.hosts_generation();
        store.users().delete("r1", &user.id).unwrap();
        assert_eq!(
            store.hosts_generation(),
            hosts,
            "a user without sites serves no host"
        );
    }
}
