//! ACME certificates per custom domain: orders from the configured directory (instant-acme),
//! answers HTTP-01 challenges on the HTTP listener, stores certificate and key, serves them via
//! SNI at once, and renews them in the background ahead of expiry.

use crate::model::Timestamp;
use crate::store::certs::{CertRecord, CertState};
use crate::store::Store;
use crate::tls::{certified_key, CertResolver};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use resellerd_store::error::StoreError;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What can go wrong keeping certificates, with its cause. (An order the CA refuses is not
/// one: it is stored on the certificate's record, for the reseller to read.)
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An uploaded certificate and key that cannot be served together.
    #[error("{0}")]
    Unusable(String),
    /// A certificate the CA issued that cannot be served.
    #[error("the issued certificate cannot be served: {0}")]
    UnusableIssued(String),
}

pub type AcmeResult<T> = Result<T, AcmeError>;

impl From<AcmeError> for crate::error::ApiError {
    fn from(e: AcmeError) -> Self {
        use crate::error::ApiError;
        match e {
            AcmeError::Store(e) => e.into(),
            AcmeError::Unusable(why) => ApiError::invalid(why),
            e @ AcmeError::UnusableIssued(_) => ApiError::internal(e),
        }
    }
}

/// ACME settings, resolved from `Settings`.
#[derive(Clone, Debug, Default)]
pub struct AcmeConfig {
    pub directory: Option<String>,
    pub email: Option<String>,
    pub ca_bundle: Option<PathBuf>,
    pub renew_before: Duration,
}

pub struct Acme {
    config: AcmeConfig,
    store: Store,
    certs: Arc<CertResolver>,
    /// HTTP-01 token -> (domain, key authorization), while an order is in flight.
    challenges: Mutex<HashMap<String, (String, String)>>,
    /// Until when (ms) another node may have an order in flight, so a token this node does not
    /// know is looked up in the store; at other times an unknown token costs no read.
    others_ordering_until: Arc<AtomicI64>,
    account: tokio::sync::Mutex<Option<Account>>,
}

/// How close to expiry a certificate that could not be renewed is told as expiring.
const EXPIRING_MS: i64 = 14 * 24 * 3600 * 1000;

/// What other nodes are told when this one changed the stored certificates.
pub const CERTIFICATES_TOPIC: &str = "certificates";

/// What other nodes are told when this one stored an HTTP-01 challenge.
const CHALLENGES_TOPIC: &str = "acme-challenges";

/// How long after another node stored a challenge this one looks unknown tokens up (an order's
/// validation takes seconds; its polling gives up after 90 s).
const OTHERS_ORDERING_MS: i64 = 10 * 60 * 1000;

fn acme_error(what: &str, e: impl std::fmt::Debug) -> String {
    format!("{what}: {e:?}")
}

impl Acme {
    pub fn new(config: AcmeConfig, store: Store, certs: Arc<CertResolver>) -> Acme {
        let others_ordering_until = Arc::new(AtomicI64::new(0));
        let (until, stored) = (others_ordering_until.clone(), store.clone());
        store.on_announcement(CHALLENGES_TOPIC, move || {
            // Also run when announcements may have been missed: the window opens only if some
            // challenge is stored (or that cannot be told).
            if stored.certs().any_challenge().unwrap_or(true) {
                until.store(
                    Timestamp::now().0 + OTHERS_ORDERING_MS,
                    std::sync::atomic::Ordering::Release,
                );
            }
            true
        });
        Acme {
            config,
            store,
            certs,
            challenges: Mutex::new(HashMap::new()),
            others_ordering_until,
            account: tokio::sync::Mutex::new(None),
        }
    }

    pub fn is_configured(&self) -> bool {
        self.config.directory.is_some()
    }

    /// The key authorization for an HTTP-01 token we are waiting on for `host`. On
    /// PostgreSQL the order may be another node's: its challenges are in the database too, read
    /// only while another node has said it stored one (so random tokens from the internet cost
    /// no read otherwise).
    pub fn challenge_response(&self, host: &str, token: &str) -> Option<String> {
        let mine = self
            .challenges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned();
        let found = match mine {
            Some(found) => Some(found),
            None if self
                .others_ordering_until
                .load(std::sync::atomic::Ordering::Acquire)
                > Timestamp::now().0 =>
            {
                self.store.certs().challenge(token).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cannot read an ACME challenge");
                    None
                })
            }
            None => None,
        };
        found
            .filter(|(domain, _)| domain == host)
            .map(|(_, key_auth)| key_auth)
    }

    /// Serves exactly the stored certificates: at start, and whenever another node issued,
    /// uploaded or removed one (`CERTIFICATES_TOPIC`).
    pub fn load_issued(&self) -> AcmeResult<usize> {
        loop {
            // Read again if this node changed a certificate meanwhile (its change is newer).
            let seen = self.certs.version();
            let keys = self.stored_keys()?;
            let n = keys.len();
            if self.certs.replace_all_if(seen, keys) {
                return Ok(n);
            }
        }
    }

    /// Every stored certificate that can be served, by name.
    fn stored_keys(
        &self,
    ) -> AcmeResult<std::collections::HashMap<String, Arc<rustls::sign::CertifiedKey>>> {
        let mut keys = std::collections::HashMap::new();
        for rec in self.store.certs().all()? {
            if rec.state == CertState::Issued || !rec.cert_pem.is_empty() {
                match certified_key(rec.cert_pem.as_bytes(), rec.key_pem.as_bytes()) {
                    Ok(key) => {
                        keys.insert(rec.domain.clone(), Arc::new(key));
                    }
                    Err(e) => {
                        tracing::warn!(domain = %rec.domain, error = %e, "stored certificate unusable")
                    }
                }
            }
        }
        Ok(keys)
    }

    /// Tells the other nodes that the stored certificates changed (nothing on an embedded database).
    fn tell_nodes(&self) {
        self.store.announce(CERTIFICATES_TOPIC);
    }

    /// Stores and serves an operator-provided certificate for `name` (may be `*.domain`).
    pub async fn install_uploaded(
        &self,
        name: &str,
        reseller_id: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> AcmeResult<CertRecord> {
        let key =
            certified_key(cert_pem.as_bytes(), key_pem.as_bytes()).map_err(AcmeError::Unusable)?;
        let (issuer, not_after) = describe(cert_pem);
        let now = Timestamp::now();
        let rec = CertRecord {
            domain: name.to_string(),
            site_id: String::new(),
            reseller_id: reseller_id.to_string(),
            state: CertState::Uploaded,
            error: None,
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            issuer,
            not_after,
            renewals: 0,
            created_at: now,
            updated_at: now,
        };
        self.store.certs().put(&rec)?;
        self.store.flush().await?;
        self.certs.insert(name, Arc::new(key));
        self.tell_nodes();
        Ok(rec)
    }

    /// Stops serving a domain's certificate and forgets it (domain deleted).
    /// Stops serving `domain`'s certificate if the store no longer holds one for it (its domain
    /// was deleted); a name now owned by someone else keeps theirs.
    pub fn forget_if_gone(&self, domain: &str) -> AcmeResult<()> {
        if self.store.certs().get(domain)?.is_none() {
            self.certs.remove(domain);
            self.tell_nodes();
        }
        Ok(())
    }

    pub fn forget(&self, domain: &str) -> AcmeResult<()> {
        self.certs.remove(domain);
        self.store.certs().delete(domain)?;
        self.tell_nodes();
        Ok(())
    }

    async fn account(&self) -> Result<Account, String> {
        let mut slot = self.account.lock().await;
        if let Some(a) = slot.as_ref() {
            return Ok(a.clone());
        }
        let directory = self
            .config
            .directory
            .clone()
            .ok_or("no ACME directory is configured (--acme-directory)")?;
        let builder = || match &self.config.ca_bundle {
            Some(pem) => {
                Account::builder_with_root(pem).map_err(|e| acme_error("ACME CA bundle", e))
            }
            None => Account::builder().map_err(|e| acme_error("ACME client", e)),
        };
        let stored = self
            .store
            .certs()
            .account(&directory)
            .map_err(|e| e.to_string())?;
        let account = match stored
            .and_then(|json| serde_json::from_str::<AccountCredentials>(&json).ok())
        {
            Some(creds) => builder()?
                .from_credentials(creds)
                .await
                .map_err(|e| acme_error("ACME account", e))?,
            None => {
                let contact = self.config.email.as_ref().map(|e| format!("mailto:{e}"));
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let new = NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                };
                let (account, creds) = builder()?
                    .create(&new, directory.clone(), None)
                    .await
                    .map_err(|e| acme_error("ACME account registration", e))?;
                let json = serde_json::to_string(&creds).map_err(|e| e.to_string())?;
                self.store
                    .certs()
                    .put_account(&directory, &json)
                    .map_err(|e| e.to_string())?;
                self.store.flush().await.map_err(|e| e.to_string())?;
                account
            }
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    /// Orders a certificate for `domain` and, on success, stores and serves it. The record
    /// (issued or failed with the ACME error) is stored either way and returned.
    pub async fn issue(
        &self,
        domain: &str,
        site_id: &str,
        reseller_id: &str,
    ) -> AcmeResult<CertRecord> {
        let now = Timestamp::now();
        let previous = self.store.certs().get(domain)?;
        let mut rec = previous.clone().unwrap_or(CertRecord {
            domain: domain.to_string(),
            site_id: site_id.to_string(),
            reseller_id: reseller_id.to_string(),
            state: CertState::Pending,
            error: None,
            cert_pem: String::new(),
            key_pem: String::new(),
            issuer: None,
            not_after: None,
            renewals: 0,
            created_at: now,
            updated_at: now,
        });
        if previous
            .as_ref()
            .is_none_or(|p| p.state != CertState::Issued)
        {
            rec.state = CertState::Pending;
        }
        rec.site_id = site_id.to_string();
        rec.reseller_id = reseller_id.to_string();
        self.store.certs().put(&rec)?;
        let result = self.order(domain).await;
        rec.updated_at = Timestamp::now();
        match result {
            Ok((cert_pem, key_pem)) => {
                let key = certified_key(cert_pem.as_bytes(), key_pem.as_bytes())
                    .map_err(AcmeError::UnusableIssued)?;
                let (issuer, not_after) = describe(&cert_pem);
                if previous
                    .as_ref()
                    .is_some_and(|p| p.state == CertState::Issued)
                {
                    rec.renewals += 1;
                }
                rec.state = CertState::Issued;
                rec.error = None;
                rec.cert_pem = cert_pem;
                rec.key_pem = key_pem;
                rec.issuer = issuer;
                rec.not_after = not_after;
                let issued = Some("certificate.issued");
                self.store
                    .certs()
                    .put_telling(&rec, issued, rec.updated_at)?;
                self.certs.insert(domain, Arc::new(key));
                self.tell_nodes();
                tracing::info!(%domain, "certificate issued");
            }
            Err(e) => {
                tracing::warn!(%domain, error = %e, "certificate order failed");
                // A failed renewal keeps serving the certificate that is still valid.
                if rec.cert_pem.is_empty() {
                    rec.state = CertState::Failed;
                }
                rec.error = Some(e);
                let failed = Some("certificate.failed");
                self.store
                    .certs()
                    .put_telling(&rec, failed, rec.updated_at)?;
            }
        }
        self.store.flush().await?;
        Ok(rec)
    }

    async fn order(&self, domain: &str) -> Result<(String, String), String> {
        let account = self.account().await?;
        let ids = [Identifier::Dns(domain.to_string())];
        let mut order = account
            .new_order(&NewOrder::new(&ids))
            .await
            .map_err(|e| acme_error("new order", e))?;
        let mut tokens = Vec::new();
        let outcome = async {
            let mut authorizations = order.authorizations();
            while let Some(result) = authorizations.next().await {
                let mut authz = result.map_err(|e| acme_error("authorization", e))?;
                match authz.status {
                    AuthorizationStatus::Pending => {}
                    AuthorizationStatus::Valid => continue,
                    other => return Err(format!("authorization is {other:?}")),
                }
                let mut challenge = authz
                    .challenge(ChallengeType::Http01)
                    .ok_or("the CA offered no HTTP-01 challenge")?;
                let token = challenge.token.clone();
                let key_auth = challenge.key_authorization().as_str().to_string();
                // In the store too, so any node behind the load balancer can answer the CA.
                self.store
                    .certs()
                    .put_challenge(&token, domain, &key_auth)
                    .map_err(|e| format!("cannot store the ACME challenge: {e}"))?;
                self.store.announce(CHALLENGES_TOPIC);
                self.challenges
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(token.clone(), (domain.to_string(), key_auth));
                tokens.push(token);
                challenge
                    .set_ready()
                    .await
                    .map_err(|e| acme_error("challenge", e))?;
            }
            let retry = RetryPolicy::default().timeout(Duration::from_secs(90));
            let status = order
                .poll_ready(&retry)
                .await
                .map_err(|e| acme_error("order", e))?;
            if status != OrderStatus::Ready {
                return Err(format!(
                    "the CA did not validate {domain}: order is {status:?}"
                ));
            }
            let key_pem = order
                .finalize()
                .await
                .map_err(|e| acme_error("finalize", e))?;
            let cert_pem = order
                .poll_certificate(&retry)
                .await
                .map_err(|e| acme_error("certificate", e))?;
            Ok((cert_pem, key_pem))
        }
        .await;
        let mut map = self.challenges.lock().unwrap_or_else(|p| p.into_inner());
        for t in tokens {
            map.remove(&t);
            if let Err(e) = self.store.certs().remove_challenge(&t) {
                tracing::warn!(error = %e, "cannot remove an ACME challenge");
            }
        }
        outcome
    }

    /// Re-orders every issued certificate that expires within the renewal window; one whose
    /// renewal fails within 14 days of expiry is told to the reseller (`certificate.expiring`).
    pub async fn renew_due(&self, now: Timestamp) -> AcmeResult<usize> {
        let window = self.config.renew_before.as_millis() as i64;
        let mut renewed = 0;
        for rec in self.store.certs().all()? {
            // A round can outlast a leadership (each order may poll for 90 s): a node that
            // lost the lead stops ordering, so two nodes never order the same renewal.
            if !self.store.is_leader() {
                break;
            }
            let due = rec.not_after.is_some_and(|t| t.0 - now.0 <= window);
            if rec.state == CertState::Issued && due {
                let after = self
                    .issue(&rec.domain, &rec.site_id, &rec.reseller_id)
                    .await?;
                if after.error.is_none() {
                    renewed += 1;
                } else if after.not_after.is_some_and(|t| t.0 - now.0 <= EXPIRING_MS) {
                    self.store.certs().note_expiring(&after, now)?;
                    self.store.flush().await?;
                }
            }
        }
        Ok(renewed)
    }

    /// Checks for due renewals every `interval`, forever.
    pub async fn renew_forever(self: Arc<Self>, interval: Duration) {
        loop {
            tokio::time::sleep(interval).await;
            if !self.store.is_leader() {
                continue;
            }
            if let Err(e) = self.renew_due(Timestamp::now()).await {
                tracing::warn!(error = %e, "certificate renewal check failed");
            }
        }
    }
}

/// The issuer and expiry of the first certificate in a PEM chain.
pub fn describe(chain_pem: &str) -> (Option<String>, Option<Timestamp>) {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes()) else {
        return (None, None);
    };
    let Ok(cert) = pem.parse_x509() else {
        return (None, None);
    };
    let issuer = cert.issuer().to_string();
    let not_after = Timestamp(cert.validity().not_after.timestamp() * 1000);
    (Some(issuer), Some(not_after))
}
