//! Notification mail. The operator sets an SMTP relay (`--smtp-url`); each reseller may send from
//! its own address once DNS shows the DKIM record of its signing key and an SPF record
//! (`verify_sender`, checked in the background with the same resolver and backoff as client
//! domains); until then mail goes from the instance's sender (`--mail-from`). Mails are made by
//! the webhook dispatcher from the same durable events (`make_mails`), rendered from the
//! reseller's template or the built-in one, DKIM-signed, queued in the store's outbox and sent
//! with retries (`send_forever`): a relay that cannot be reached never fails the call that
//! caused the mail.

pub mod dkim;
pub mod mime;
pub mod templates;

use crate::model::Timestamp;
use crate::store::mail::{Mail, Sender, SenderStatus};
use crate::store::signing::{Alg, SigningKey};
use crate::store::webhooks::{Event, Subject};
use crate::store::Store;
use lettre::AsyncTransport;
use resellerd_store::error::StoreError;
use std::sync::Arc;
use std::time::Duration;

/// How long a mail is retried.
const RETRY_FOR_MS: i64 = 3 * 24 * 3600 * 1000;
const FIRST_BACKOFF_MS: i64 = 30_000;
const MAX_BACKOFF_MS: i64 = 3600 * 1000;
/// Sent mails are kept this long.
const KEEP_MS: i64 = 30 * 24 * 3600 * 1000;
/// The key the instance signs its own sender's mail with, among the signing keys.
pub const INSTANCE: &str = "_instance";

pub type Transport = lettre::AsyncSmtpTransport<lettre::Tokio1Executor>;

/// The relay and the instance's sender.
pub struct Mailer {
    transport: Option<Transport>,
    store: crate::store::Store,
    /// What a mail's links are made of (a site's address).
    links: Arc<crate::views::Links>,
    /// Checks a reseller's sender's DKIM and SPF records.
    verifier: Arc<crate::dns::Verifier>,
    /// How often a pending sender is checked at first (then with backoff).
    verify_interval: Duration,
    /// The instance's sender address (`--mail-from`).
    pub default_from: String,
    /// Attempts to hand a mail to the relay, by result (`sent`, `failed`), registered with
    /// `metrics` where the app is assembled.
    pub attempts: crate::metrics::Outcomes,
}

impl Mailer {
    /// A mailer for `smtp_url` (none: mail is not sent, and no mail events are written).
    /// `smtp://` uses STARTTLS when the relay offers it (`?tls=required` insists), `smtps://`
    /// implicit TLS; `user:pass@` authenticates.
    pub fn new(
        smtp_url: Option<&str>,
        default_from: String,
        views: &crate::views::Views,
        verifier: Arc<crate::dns::Verifier>,
        verify_interval: Duration,
    ) -> Result<Mailer, String> {
        let transport = match smtp_url {
            None => None,
            Some(url) => {
                let url = if url.starts_with("smtp://") && !url.contains("tls=") {
                    let sep = if url.contains('?') { '&' } else { '?' };
                    format!("{url}{sep}tls=opportunistic")
                } else {
                    url.to_string()
                };
                let builder = Transport::from_url(&url)
                    .map_err(|e| format!("--smtp-url {}: {e}", redact(&url)))?;
                Some(builder.timeout(Some(Duration::from_secs(30))).build())
            }
        };
        Ok(Mailer {
            transport,
            store: views.store.clone(),
            links: views.links.clone(),
            verifier,
            verify_interval,
            default_from,
            attempts: Default::default(),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.transport.is_some()
    }
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// The DKIM selector for a key: stable, short, a valid DNS label.
pub fn selector(key: &SigningKey) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.kid.as_bytes());
    format!("rsd{}", hex::encode(&digest[..5]))
}

/// What can go wrong making, signing or queueing a mail, with its cause.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Signing(#[from] crate::signing::SigningError),
    #[error(
        "the signing key this sender's DKIM record holds was deleted; set the notification email \
         again to get a new record"
    )]
    SenderKeyDeleted,
    #[error("the key generation did not run: {0}")]
    Blocking(actix_web::error::BlockingError),
}

pub type MailResult<T> = Result<T, MailError>;

impl From<MailError> for crate::error::ApiError {
    fn from(e: MailError) -> Self {
        use crate::error::{ApiError, Conflict};
        match e {
            MailError::Store(e) => e.into(),
            e @ MailError::SenderKeyDeleted => {
                ApiError::Conflict(Conflict::SenderKeyDeleted, e.to_string())
            }
            e => ApiError::internal(e),
        }
    }
}

/// The instance's signing key for its own sender, made once.
pub fn instance_key(store: &Store) -> MailResult<SigningKey> {
    if let Some(key) = store.signing_keys().active(INSTANCE, Alg::RS256)? {
        return Ok(key);
    }
    let key = crate::signing::generate(INSTANCE, Alg::RS256, Timestamp::now())?;
    Ok(store.signing_keys().add(key)?)
}

/// Sets (or clears, with None) the reseller's sender address. A new address (or DKIM
/// algorithm) starts pending, bound to the reseller's active signing key of that algorithm,
/// which is made if it has none.
pub async fn set_sender(
    store: &Store,
    reseller_id: &str,
    from: Option<(String, Option<String>, Alg)>,
) -> MailResult<Option<Sender>> {
    let Some((from, name, alg)) = from else {
        store.mail().delete_sender(reseller_id)?;
        return Ok(None);
    };
    if let Some(current) = store.mail().sender(reseller_id)? {
        let same_alg = sender_key(store, &current).is_ok_and(|k| k.alg == alg);
        if current.from == from && same_alg {
            let mut same = current;
            same.name = name;
            store.mail().put_sender(&same)?;
            return Ok(Some(same));
        }
    }
    let key = match store.signing_keys().active(reseller_id, alg)? {
        Some(key) => key,
        None => {
            let reseller = reseller_id.to_string();
            let key = actix_web::web::block(move || {
                crate::signing::generate(&reseller, alg, Timestamp::now())
            })
            .await
            .map_err(MailError::Blocking)??;
            store.signing_keys().add(key)?
        }
    };
    let now = Timestamp::now();
    let sender = Sender {
        reseller_id: reseller_id.to_string(),
        from,
        name,
        selector: selector(&key),
        key_id: key.id.clone(),
        status: SenderStatus::Pending,
        dkim_found: false,
        spf_found: false,
        error: None,
        created_at: now,
        verified_at: None,
        last_checked_at: None,
        next_check_at: now,
        misses: 0,
    };
    store.mail().put_sender(&sender)?;
    Ok(Some(sender))
}

/// The DKIM record the reseller must publish for its sender: (name, value).
pub fn sender_record(store: &Store, sender: &Sender) -> MailResult<(String, String)> {
    let key = sender_key(store, sender)?;
    let value = dkim::record(&key)?;
    Ok((
        format!("{}._domainkey.{}", sender.selector, sender.domain()),
        value,
    ))
}

fn sender_key(store: &Store, sender: &Sender) -> MailResult<SigningKey> {
    store
        .signing_keys()
        .list(&sender.reseller_id)?
        .into_iter()
        .find(|k| k.id == sender.key_id)
        .ok_or(MailError::SenderKeyDeleted)
}

/// Checks the sender's DKIM and SPF records now and stores the result (with backoff after a
/// miss, like client domains).
pub async fn verify_sender(mailer: &Mailer, sender: Sender) -> MailResult<Sender> {
    let store = &mailer.store;
    let now = Timestamp::now();
    let (dkim_name, expected) = match sender_record(store, &sender) {
        Ok(record) => record,
        Err(e) => {
            let why = e.to_string();
            let updated = store
                .mail()
                .update_sender(&sender.reseller_id, &sender.from, |s| {
                    s.status = SenderStatus::Failed;
                    s.error = Some(why.clone());
                    s.last_checked_at = Some(now);
                })?;
            return Ok(updated.unwrap_or(sender));
        }
    };
    let verifier = &mailer.verifier;
    let dkim = verifier.txt(&dkim_name).await;
    let spf = verifier.txt(sender.domain()).await;
    let dkim_found = dkim
        .as_ref()
        .is_ok_and(|records| records.iter().any(|r| same_record(r, &expected)));
    let spf_found = spf
        .as_ref()
        .is_ok_and(|records| records.iter().any(|r| r.trim_start().starts_with("v=spf1")));
    let error = match (&dkim, &spf, dkim_found, spf_found) {
        (Err(e), _, _, _) | (_, Err(e), _, _) => Some(e.clone()),
        (_, _, false, _) => Some(format!("no TXT record at {dkim_name} holds this DKIM key")),
        (_, _, true, false) => Some(format!("no SPF record (v=spf1 …) at {}", sender.domain())),
        _ => None,
    };
    let verified = dkim_found && spf_found;
    let interval = mailer.verify_interval;
    let updated = store
        .mail()
        .update_sender(&sender.reseller_id, &sender.from, |s| {
            s.dkim_found = dkim_found;
            s.spf_found = spf_found;
            s.last_checked_at = Some(now);
            s.error = error.clone();
            if verified {
                if s.status != SenderStatus::Verified {
                    s.verified_at = Some(now);
                }
                s.status = SenderStatus::Verified;
                s.misses = 0;
            } else {
                s.status = SenderStatus::Pending;
                s.misses = s.misses.saturating_add(1);
                s.next_check_at =
                    now.plus_secs(crate::dns::backoff(interval, s.misses).as_secs() as i64);
            }
        })?;
    store.flush().await?;
    Ok(updated.unwrap_or(sender))
}

/// Two DKIM records are the same if their tags are, white space aside.
fn same_record(found: &str, expected: &str) -> bool {
    let tags = |r: &str| -> Vec<(String, String)> {
        let mut tags: Vec<(String, String)> = r
            .split(';')
            .filter_map(|t| t.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.split_whitespace().collect()))
            .collect();
        tags.sort();
        tags
    };
    let (found, expected) = (tags(found), tags(expected));
    expected.iter().all(|t| t.0 == "v" || found.contains(t)) && found.iter().any(|t| t.0 == "p")
}

/// Checks every pending sender whose next check is due, forever.
pub async fn check_senders_forever(mailer: Arc<Mailer>) {
    let tick = mailer.verify_interval.min(Duration::from_secs(5));
    loop {
        tokio::time::sleep(tick).await;
        if !mailer.store.is_leader() {
            continue;
        }
        let now = Timestamp::now();
        let due = match mailer.store.mail().senders() {
            Ok(all) => all
                .into_iter()
                .filter(|s| s.status != SenderStatus::Verified && s.next_check_at <= now),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the mail senders");
                continue;
            }
        };
        for sender in due.collect::<Vec<_>>() {
            if let Err(e) = verify_sender(&mailer, sender).await {
                tracing::warn!(error = %crate::error::chain(&e), "cannot check a mail sender");
            }
        }
    }
}

/// The mails an event makes (none if mail is off, the event makes none, or it has nobody to
/// go to). A store that cannot be read now is an error, so the fan-out runs again later and
/// the mail is not lost; a mail that cannot be made at all (say, a template that no longer
/// renders) is logged and left out, so it cannot hold up every later event.
pub fn make_mails(mailer: &Mailer, event: &Event) -> MailResult<Vec<Mail>> {
    if !mailer.is_enabled() {
        return Ok(Vec::new());
    }
    match make_mail(mailer, event) {
        Ok(mail) => Ok(mail.into_iter().collect()),
        Err(
            e @ MailError::Store(
                StoreError::StorageUnavailable(_) | StoreError::InsufficientStorage,
            ),
        ) => Err(e),
        Err(e) => {
            tracing::warn!(kind = %event.kind, error = %crate::error::chain(&e), "cannot make a notification mail");
            Ok(Vec::new())
        }
    }
}

fn make_mail(mailer: &Mailer, event: &Event) -> MailResult<Option<Mail>> {
    let Some(kind) = templates::Kind::of_event(&event.kind) else {
        return Ok(None);
    };
    let store = &mailer.store;
    let reseller = store.resellers().get(&event.reseller_id)?;
    let mut vars = templates::Vars::new(&reseller.name);
    let owner_email = |user_id: &str| -> Option<String> {
        store
            .users()
            .get(&reseller.id, user_id)
            .ok()
            .map(|u| u.email.as_str().to_string())
    };
    let site_vars = |vars: &mut templates::Vars, site_id: &str| -> Option<String> {
        let site = store.sites().get(site_id).ok().flatten()?;
        vars.set("site_name", site.name.as_str());
        let host =
            crate::hosts::site_host(&reseller, &mailer.links.default_domain, site.name.as_str());
        vars.set("site_url", &format!("https://{host}"));
        owner_email(&site.user_id)
    };
    let to = match &event.subject {
        Subject::Submission(s) => {
            vars.set("form_name", &s.form_name);
            let fields: Vec<String> = s.data.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            vars.set("submission", &fields.join("\n"));
            site_vars(&mut vars, &s.site_id)
        }
        Subject::Deploy(d) => {
            vars.set("deploy_id", &d.id);
            vars.set("error", d.error_message.as_deref().unwrap_or_default());
            vars.set("log_tail", &build_log_tail(store, &d.site_id, &d.id));
            site_vars(&mut vars, &d.site_id)
        }
        Subject::Domain(d) => {
            vars.set("domain", d.name.as_str());
            Some(d.email.as_str().to_string())
        }
        Subject::Certificate {
            domain,
            site_id,
            expires_at,
            error,
        } => {
            vars.set("domain", domain);
            vars.set("error", error.as_deref().unwrap_or_default());
            vars.set(
                "expires_at",
                &expires_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            );
            site_vars(&mut vars, site_id)
        }
        Subject::Quota {
            user,
            limit,
            used,
            max,
            ..
        } => {
            vars.set("limit", &limit.replace('_', " "));
            vars.set("used", &format!("{} MB", used / 1_000_000));
            vars.set("max", &format!("{} MB", max / 1_000_000));
            Some(user.email.as_str().to_string())
        }
        Subject::Suspension { user, reason } => {
            vars.set("reason", reason);
            Some(user.email.as_str().to_string())
        }
        _ => None,
    };
    let Some(to) = to else {
        return Ok(None);
    };
    vars.set("user_email", &to);
    let custom = store.mail().template(&reseller.id, kind.name())?;
    let rendered = templates::render(kind, custom.as_deref(), &vars);
    compose(mailer, &reseller.id, kind.name(), &to, &rendered, event.at).map(Some)
}

/// A signed message from the reseller's verified sender, or from the instance's.
pub fn compose(
    mailer: &Mailer,
    reseller_id: &str,
    kind: &str,
    to: &str,
    rendered: &templates::Rendered,
    at: Timestamp,
) -> MailResult<Mail> {
    let store = &mailer.store;
    // A verified sender whose key was deleted since cannot sign: the instance's sender stands in.
    let own = store
        .mail()
        .sender(reseller_id)?
        .filter(|s| s.status == SenderStatus::Verified)
        .and_then(|s| sender_key(store, &s).ok().map(|key| (s, key)));
    let (from, name, key, selector) = match own {
        Some((sender, key)) => (sender.from, sender.name, key, sender.selector),
        None => {
            let key = instance_key(store)?;
            let selector = selector(&key);
            (mailer.default_from.clone(), None, key, selector)
        }
    };
    let domain = from.rsplit('@').next().unwrap_or("localhost").to_string();
    let message = mime::Message {
        from_name: name.as_deref(),
        from: &from,
        to,
        subject: &rendered.subject,
        text: &rendered.text,
        html: &rendered.html,
        message_id: format!("<{}@{}>", crate::model::new_id(), domain),
        date: at,
    };
    let (mut headers, body) = mime::render(&message);
    let signature = dkim::sign(&headers, &body, &domain, &selector, &key, at.0 / 1000)?;
    headers.insert(0, ("DKIM-Signature", signature));
    Ok(Mail::new(
        reseller_id,
        kind,
        from,
        to.to_string(),
        mime::assemble(&headers, &body),
        Timestamp::now(),
    ))
}

/// Sends due mails, one at a time, forever; prunes old ones now and then.
pub async fn send_forever(mailer: Arc<Mailer>) {
    let Some(transport) = mailer.transport.clone() else {
        return;
    };
    let mut rounds = 0u64;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if !mailer.store.is_leader() {
            continue;
        }
        rounds += 1;
        if rounds % 14_400 == 1 {
            let before = Timestamp(Timestamp::now().0 - KEEP_MS);
            if let Err(e) = mailer.store.mail().prune(before, 10_000) {
                tracing::warn!(error = %e, "cannot prune sent mail");
            }
        }
        let now = Timestamp::now();
        let due = match mailer.store.mail().due(now, 32) {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the mail queue");
                continue;
            }
        };
        for entry in due {
            let lease = Timestamp(now.0 + 120_000);
            let mail = match mailer.store.mail().lease(&entry, lease) {
                Ok(Some(mail)) => mail,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take a mail from the queue");
                    continue;
                }
            };
            // The lease, and the fan-out that queued this mail, on disk before it is sent: a
            // crash that undid the fan-out would queue the mail again and send it twice.
            if let Err(e) = mailer.store.flush().await {
                tracing::warn!(error = %e, "cannot flush the mail queue; the mail waits");
                continue;
            }
            let result = send(&transport, &mail).await;
            let (error, next) = match result {
                Ok(()) => {
                    crate::metrics::count(&mailer.attempts, "sent");
                    (None, None)
                }
                Err(e) => {
                    crate::metrics::count(&mailer.attempts, "failed");
                    tracing::warn!(mail = %mail.id, error = %e, "cannot send a notification mail; it is retried");
                    (Some(e), next_attempt(&mail, Timestamp::now()))
                }
            };
            if let Err(e) = mailer.store.mail().record(&mail.id, error, next) {
                tracing::warn!(error = %e, "cannot record a mail attempt");
            }
        }
    }
}

async fn send(transport: &Transport, mail: &Mail) -> Result<(), String> {
    let from: lettre::Address = mail.from.parse().map_err(|e| format!("from: {e}"))?;
    let to: lettre::Address = mail.to.parse().map_err(|e| format!("to: {e}"))?;
    let envelope =
        lettre::address::Envelope::new(Some(from), vec![to]).map_err(|e| e.to_string())?;
    transport
        .send_raw(&envelope, &mail.message)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// 30 s after the first failure, doubling up to an hour, for 3 days.
fn next_attempt(mail: &Mail, now: Timestamp) -> Option<Timestamp> {
    let delay = FIRST_BACKOFF_MS
        .saturating_mul(1i64 << mail.attempt_count.min(20))
        .min(MAX_BACKOFF_MS);
    let at = Timestamp(now.0 + delay);
    (at.0 <= mail.created_at.0 + RETRY_FOR_MS).then_some(at)
}

/// Queues one mail outside the event flow (an endpoint disabled), flushed.
pub async fn queue(mailer: &Mailer, mail: Mail) -> MailResult<()> {
    mailer.store.mail().queue(&[mail])?;
    mailer.store.flush().await?;
    Ok(())
}

/// The last lines of the log of the build that made a deploy (empty for an uploaded deploy).
fn build_log_tail(store: &crate::store::Store, site_id: &str, deploy_id: &str) -> String {
    const LINES: usize = 20;
    let Ok(Some(build)) = store.builds().of_deploy(site_id, deploy_id) else {
        return String::new();
    };
    let lines = store.builds().log(&build.id, 0).unwrap_or_default();
    let start = lines.len().saturating_sub(LINES);
    lines[start..]
        .iter()
        .map(|(_, l)| l.message.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}
