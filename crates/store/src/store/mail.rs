//! Notification mail: each reseller's sender (its verification by DNS), its templates, and the
//! mail outbox. Mails are made by the server's dispatcher from the same durable events webhooks
//! are (see `webhooks`), queued in `mail_due` (8-byte due time + id) and sent with retries.

use super::due_key;
pub use super::records::{Mail, MailState};
use super::{abort, decode, encode, get, Store};
use crate::error::{StoreError, StoreResult};
use crate::kv::Transactional;
use crate::model::{new_id, Timestamp};
use serde::{Deserialize, Serialize};

/// Template bodies are HTML; this is the most a reseller may store per kind.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
/// Attempts a mail keeps.
const MAX_ATTEMPTS_KEPT: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SenderStatus {
    Pending,
    Verified,
    Failed,
}

impl SenderStatus {
    pub fn name(self) -> &'static str {
        match self {
            SenderStatus::Pending => "pending",
            SenderStatus::Verified => "verified",
            SenderStatus::Failed => "failed",
        }
    }
}

/// A reseller's own sender address, and what DNS said of it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sender {
    pub reseller_id: String,
    /// The address mail is sent from once verified.
    pub from: String,
    pub name: Option<String>,
    /// The DKIM selector: `<selector>._domainkey.<domain>` holds the public key.
    pub selector: String,
    /// The signing key (RS256) whose public part the DKIM record must hold.
    pub key_id: String,
    pub status: SenderStatus,
    pub dkim_found: bool,
    pub spf_found: bool,
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub verified_at: Option<Timestamp>,
    pub last_checked_at: Option<Timestamp>,
    pub next_check_at: Timestamp,
    pub misses: u32,
}

impl Sender {
    /// The domain part of the address.
    pub fn domain(&self) -> &str {
        self.from.rsplit('@').next().unwrap_or_default()
    }
}

impl MailState {
    pub fn name(self) -> &'static str {
        match self {
            MailState::Pending => "pending",
            MailState::Sent => "sent",
            MailState::Failed => "failed",
        }
    }
}

impl Mail {
    pub fn new(
        reseller_id: &str,
        kind: &str,
        from: String,
        to: String,
        message: Vec<u8>,
        now: Timestamp,
    ) -> Mail {
        Mail {
            id: new_id(),
            reseller_id: reseller_id.to_string(),
            kind: kind.to_string(),
            from,
            to,
            message,
            created_at: now,
            state: MailState::Pending,
            next_attempt_at: Some(now),
            attempt_count: 0,
            errors: Vec::new(),
        }
    }
}

pub struct Mails<'a>(&'a Store);

impl Store {
    pub fn mail(&self) -> Mails<'_> {
        Mails(self)
    }
}

fn template_key(reseller_id: &str, kind: &str) -> String {
    format!("{reseller_id}/{kind}")
}

impl Mails<'_> {
    pub fn sender(&self, reseller_id: &str) -> StoreResult<Option<Sender>> {
        get(&self.0.t.mail_senders, reseller_id)
    }

    pub fn put_sender(&self, sender: &Sender) -> StoreResult<()> {
        self.0
            .t
            .mail_senders
            .insert(sender.reseller_id.as_bytes(), encode(sender))?;
        Ok(())
    }

    /// Forgets the reseller's sender (its notification address was removed).
    pub fn delete_sender(&self, reseller_id: &str) -> StoreResult<()> {
        self.0.t.mail_senders.remove(reseller_id.as_bytes())?;
        Ok(())
    }

    /// Every sender, for the background checker.
    pub fn senders(&self) -> StoreResult<Vec<Sender>> {
        self.0
            .t
            .mail_senders
            .iter()
            .values()
            .map(|v| decode(&v?))
            .collect()
    }

    /// Applies `change` to the sender as it is now, if it still exists and is for `from`
    /// (a check that raced an address change is dropped).
    pub fn update_sender(
        &self,
        reseller_id: &str,
        from: &str,
        change: impl Fn(&mut Sender),
    ) -> StoreResult<Option<Sender>> {
        let tree = &self.0.t.mail_senders;
        loop {
            let Some(raw) = tree.get(reseller_id.as_bytes())? else {
                return Ok(None);
            };
            let mut sender: Sender = decode(&raw)?;
            if sender.from != from {
                return Ok(None);
            }
            change(&mut sender);
            if tree
                .compare_and_swap(reseller_id.as_bytes(), Some(&raw), Some(encode(&sender)))?
                .is_ok()
            {
                return Ok(Some(sender));
            }
        }
    }

    /// The reseller's template for `kind`, if it set one.
    pub fn template(&self, reseller_id: &str, kind: &str) -> StoreResult<Option<String>> {
        Ok(self
            .0
            .t
            .mail_templates
            .get(template_key(reseller_id, kind).as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn put_template(&self, reseller_id: &str, kind: &str, html: &str) -> StoreResult<()> {
        if html.len() > MAX_TEMPLATE_BYTES {
            return Err(StoreError::invalid(format!(
                "a template is at most {MAX_TEMPLATE_BYTES} bytes"
            )));
        }
        self.0
            .t
            .mail_templates
            .insert(template_key(reseller_id, kind).as_bytes(), html.as_bytes())?;
        Ok(())
    }

    /// Back to the built-in template. True if there was one to remove.
    pub fn delete_template(&self, reseller_id: &str, kind: &str) -> StoreResult<bool> {
        Ok(self
            .0
            .t
            .mail_templates
            .remove(template_key(reseller_id, kind).as_bytes())?
            .is_some())
    }

    /// Forgets a deleted reseller's sender and templates (its queued mails go out or expire).
    pub fn delete_all(&self, reseller_id: &str) -> StoreResult<()> {
        self.delete_sender(reseller_id)?;
        let prefix = format!("{reseller_id}/");
        for key in self
            .0
            .t
            .mail_templates
            .scan_prefix(prefix.as_bytes())
            .keys()
        {
            self.0.t.mail_templates.remove(key?)?;
        }
        Ok(())
    }

    /// Queues mails, due now, in one transaction.
    pub fn queue(&self, mails: &[Mail]) -> StoreResult<()> {
        let t = &self.0.t;
        (&t.mails, &t.mail_due).transaction(|(all, due)| {
            for m in mails {
                all.insert(m.id.as_bytes(), encode(m))?;
                if let Some(at) = m.next_attempt_at {
                    due.insert(due_key(at, &m.id), &[])?;
                }
            }
            Ok::<_, crate::kv::ConflictableTransactionError<StoreError>>(())
        })?;
        Ok(())
    }

    /// Queue entries due at or before `now`, at most `limit`.
    pub fn due(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<Vec<u8>>> {
        let end = (now.0.max(0) as u64 + 1).to_be_bytes();
        self.0
            .t
            .mail_due
            .range(..&end[..])
            .keys()
            .take(limit)
            .map(|k| Ok(k?.to_vec()))
            .collect()
    }

    /// Takes a due mail for an attempt, leased until `until` (see `Webhooks::lease_many`).
    pub fn lease(&self, due_entry: &[u8], until: Timestamp) -> StoreResult<Option<Mail>> {
        let t = &self.0.t;
        let id = String::from_utf8_lossy(&due_entry[8.min(due_entry.len())..]).into_owned();
        Ok((&t.mails, &t.mail_due).transaction(|(all, due)| {
            if due.remove(due_entry)?.is_none() {
                return Ok(None);
            }
            let Some(raw) = all.get(id.as_bytes())? else {
                return Ok(None);
            };
            let mut m: Mail = decode(&raw).or_else(abort)?;
            if m.state != MailState::Pending {
                return Ok(None);
            }
            m.next_attempt_at = Some(until);
            due.insert(due_key(until, &m.id), &[])?;
            all.insert(m.id.as_bytes(), encode(&m))?;
            Ok(Some(m))
        })?)
    }

    /// Records an attempt: sent, or failed with `error` and retried at `next` (None: given up).
    pub fn record(
        &self,
        id: &str,
        error: Option<String>,
        next: Option<Timestamp>,
    ) -> StoreResult<Mail> {
        let t = &self.0.t;
        Ok((&t.mails, &t.mail_due).transaction(|(all, due)| {
            let Some(raw) = all.get(id.as_bytes())? else {
                return abort(StoreError::NotFound("mail"));
            };
            let mut m: Mail = decode(&raw).or_else(abort)?;
            if let Some(at) = m.next_attempt_at {
                due.remove(due_key(at, &m.id))?;
            }
            m.attempt_count += 1;
            match (&error, next) {
                (None, _) => {
                    m.state = MailState::Sent;
                    m.next_attempt_at = None;
                }
                (Some(e), Some(at)) => {
                    m.errors.push(e.clone());
                    m.next_attempt_at = Some(at);
                    due.insert(due_key(at, &m.id), &[])?;
                }
                (Some(e), None) => {
                    m.errors.push(e.clone());
                    m.state = MailState::Failed;
                    m.next_attempt_at = None;
                }
            }
            if m.errors.len() > MAX_ATTEMPTS_KEPT {
                m.errors.remove(0);
            }
            all.insert(m.id.as_bytes(), encode(&m))?;
            Ok(m)
        })?)
    }

    pub fn get(&self, id: &str) -> StoreResult<Option<Mail>> {
        get(&self.0.t.mails, id)
    }

    /// Mails waiting (for the outbox-depth gauge): the queue's length.
    pub fn pending_count(&self) -> usize {
        self.0.t.mail_due.len()
    }

    /// Removes finished mails made before `before`, at most `limit`.
    pub fn prune(&self, before: Timestamp, limit: usize) -> StoreResult<usize> {
        let t = &self.0.t;
        let end = crate::model::id_floor(before);
        let mut removed = 0;
        for item in t.mails.range(..end.as_bytes()).take(limit) {
            let (key, raw) = item?;
            let m: Mail = decode(&raw)?;
            if m.state != MailState::Pending {
                t.mails.remove(key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
