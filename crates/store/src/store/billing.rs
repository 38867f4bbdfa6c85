//! Paid actions: a reseller's payment methods, its charges ledger and its prices. Records are
//! keyed `reseller_id/id`, so a reseller's list is a prefix scan and a foreign id is simply absent.
//! A paid action may carry the client's `Idempotency-Key`, scoped to the reseller and the
//! action and bound to the request: a retry gets the stored answer for the key's whole life,
//! the same key on another request is refused, and every action completed has its own charge.

use super::events::{emit, Subject};
pub use super::records::{Charge, PaidAction};
use super::{abort, decode, encode, get, Store};
use crate::error::{StoreError, StoreResult};
use crate::kv::Transactional;
use crate::model::{new_id, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentKind {
    Card,
    Invoice,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaymentMethod {
    pub id: String,
    pub label: String,
    #[serde(rename = "type")]
    pub kind: PaymentKind,
    pub reference: String,
    pub created_at: Timestamp,
}

impl PaidAction {
    pub fn name(self) -> &'static str {
        match self {
            PaidAction::SslCertificate => "ssl_certificate",
            PaidAction::DomainRegistration => "domain_registration",
        }
    }
}

/// How long a claimed idempotency key waits for its run before another may take it over (a
/// run that long died with its server): ACME orders and registrars answer well within it.
pub const IDEMPOTENCY_RUN: i64 = 15 * 60 * 1000;

/// A claimed idempotency key: the digest of the request that claimed it and, once the action
/// completed, its answer (status and JSON body).
#[derive(Serialize, Deserialize)]
struct Idempotent {
    request: [u8; 32],
    answer: Option<(u16, Vec<u8>)>,
    created_at: Timestamp,
    /// The run holding the claim: only it may record the answer or let go of the claim.
    run: [u8; 16],
}

/// What a claim of an idempotency key found.
pub enum Claim {
    /// Run the action (and charge it with the key and this run's id).
    Run([u8; 16]),
    /// The same request finished before: its answer.
    Replay { status: u16, body: Vec<u8> },
    /// The same request is running now.
    Running,
    /// Another request used the key.
    Reused,
}

/// A claimed idempotency key's answer, stored with the charge: the key, the status, and the
/// body made from the charge.
pub type Answer<'a> = (&'a str, [u8; 16], u16, &'a dyn Fn(&Charge) -> Vec<u8>);

fn idempotency_key(reseller_id: &str, action: PaidAction, key: &str) -> String {
    format!("{reseller_id}/{}/{key}", action.name())
}

/// What the operator charges a reseller per paid action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Prices {
    pub currency: String,
    pub ssl_certificate_cents: u64,
    pub domain_registration_cents: u64,
}

impl Default for Prices {
    fn default() -> Self {
        Prices {
            currency: "USD".into(),
            ssl_certificate_cents: 0,
            domain_registration_cents: 0,
        }
    }
}

impl Prices {
    pub fn of(&self, action: PaidAction) -> u64 {
        match action {
            PaidAction::SslCertificate => self.ssl_certificate_cents,
            PaidAction::DomainRegistration => self.domain_registration_cents,
        }
    }
}

pub struct Billing<'a>(&'a Store);

impl Store {
    pub fn billing(&self) -> Billing<'_> {
        Billing(self)
    }
}

fn scoped(reseller_id: &str, id: &str) -> String {
    format!("{reseller_id}/{id}")
}

fn list_under<T: serde::de::DeserializeOwned>(
    tree: &crate::kv::Tree,
    reseller_id: &str,
) -> StoreResult<Vec<T>> {
    tree.scan_prefix(format!("{reseller_id}/").as_bytes())
        .values()
        .map(|v| decode(&v?))
        .collect()
}

impl Billing<'_> {
    pub fn add_method(
        &self,
        reseller_id: &str,
        label: String,
        kind: PaymentKind,
        reference: String,
        now: Timestamp,
    ) -> StoreResult<PaymentMethod> {
        let pm = PaymentMethod {
            id: new_id(),
            label,
            kind,
            reference,
            created_at: now,
        };
        self.0
            .t
            .payment_methods
            .insert(scoped(reseller_id, &pm.id).as_bytes(), encode(&pm))?;
        Ok(pm)
    }

    pub fn methods(&self, reseller_id: &str) -> StoreResult<Vec<PaymentMethod>> {
        list_under(&self.0.t.payment_methods, reseller_id)
    }

    pub fn delete_method(&self, reseller_id: &str, id: &str) -> StoreResult<()> {
        match self
            .0
            .t
            .payment_methods
            .remove(scoped(reseller_id, id).as_bytes())?
        {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound("payment method")),
        }
    }

    /// Checks that the reseller may be charged with this method: 402 if it is missing,
    /// deleted or another reseller's.
    pub fn require_method(
        &self,
        reseller_id: &str,
        id: Option<&str>,
    ) -> StoreResult<PaymentMethod> {
        let id = id.filter(|s| !s.is_empty()).ok_or_else(|| {
            StoreError::PaymentRequired(
                "this is a paid action: pass the payment_method_id of one of your payment methods"
                    .into(),
            )
        })?;
        get(&self.0.t.payment_methods, &scoped(reseller_id, id))?.ok_or_else(|| {
            StoreError::PaymentRequired(format!(
                "payment method {id} does not exist or was deleted"
            ))
        })
    }

    /// Claims `key` for one run of `action` by the request whose digest is `request`: the first
    /// claim runs it; a claim by the same request after it finished replays its answer; one
    /// while it runs waits; another request with the key is refused. A claim older than
    /// `IDEMPOTENCY_RUN` that never finished (its server died) may be taken over.
    pub fn claim(
        &self,
        reseller_id: &str,
        action: PaidAction,
        key: &str,
        request: [u8; 32],
        now: Timestamp,
    ) -> StoreResult<Claim> {
        let k = idempotency_key(reseller_id, action, key);
        let claim = self.0.t.idempotency.transaction(|t| {
            if let Some(raw) = t.get(k.as_bytes())? {
                let held: Idempotent = decode(&raw).or_else(abort)?;
                if held.request != request {
                    return Ok(Claim::Reused);
                }
                if let Some((status, body)) = held.answer {
                    return Ok(Claim::Replay { status, body });
                }
                if now.0 - held.created_at.0 < IDEMPOTENCY_RUN {
                    return Ok(Claim::Running);
                }
            }
            let run: [u8; 16] = rand::random();
            let fresh = Idempotent {
                request,
                answer: None,
                created_at: now,
                run,
            };
            t.insert(k.as_bytes(), encode(&fresh))?;
            Ok(Claim::Run(run))
        })?;
        Ok(claim)
    }

    /// Lets go of a claim whose run failed (nothing was charged), so a retry runs again.
    pub fn release(
        &self,
        reseller_id: &str,
        action: PaidAction,
        key: &str,
        run: [u8; 16],
    ) -> StoreResult<()> {
        let k = idempotency_key(reseller_id, action, key);
        self.0.t.idempotency.transaction(|t| {
            if let Some(raw) = t.get(k.as_bytes())? {
                let held: Idempotent = decode(&raw).or_else(abort)?;
                if held.answer.is_none() && held.run == run {
                    t.remove(k.as_bytes())?;
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Records one charge at the reseller's price, and with a claimed idempotency key the
    /// answer (`answer` makes it from the charge) in the same transaction.
    pub fn charge(
        &self,
        reseller_id: &str,
        method: &PaymentMethod,
        action: PaidAction,
        subject: &str,
        idempotent: Option<Answer<'_>>,
        now: Timestamp,
    ) -> StoreResult<Charge> {
        let prices = self.prices(reseller_id)?;
        let charge = Charge {
            id: new_id(),
            payment_method_id: method.id.clone(),
            action,
            subject: subject.to_string(),
            amount_cents: prices.of(action),
            currency: prices.currency,
            idempotency_key: idempotent.map(|(key, ..)| key.to_string()),
            created_at: now,
        };
        let (t, subs) = (&self.0.t, &self.0.subscriptions);
        let result = (&t.charges, &t.idempotency, &t.payment_methods, &t.events).transaction(
            |(c, answers, pm, events)| {
                if pm
                    .get(scoped(reseller_id, &method.id).as_bytes())?
                    .is_none()
                {
                    return abort(StoreError::PaymentRequired(format!(
                        "payment method {} was deleted",
                        method.id
                    )));
                }
                if let Some((key, run, status, answer)) = idempotent {
                    let k = idempotency_key(reseller_id, action, key);
                    let Some(raw) = answers.get(k.as_bytes())? else {
                        return abort(StoreError::internal("an idempotency claim vanished"));
                    };
                    let mut held: Idempotent = decode(&raw).or_else(abort)?;
                    // Another run took the claim over (this one outlived the takeover time):
                    // only one run of a key is ever charged.
                    if held.run != run || held.answer.is_some() {
                        return abort(StoreError::Conflict(
                            crate::error::Conflict::RegistrationFailed,
                            "another request with this Idempotency-Key completed this action; nothing was charged".into(),
                        ));
                    }
                    held.answer = Some((status, answer(&charge)));
                    answers.insert(k.as_bytes(), encode(&held))?;
                }
                c.insert(scoped(reseller_id, &charge.id).as_bytes(), encode(&charge))?;
                emit(events, subs, reseller_id, "charge.created", now, || {
                    Subject::Charge(charge.clone())
                })?;
                Ok(charge.clone())
            },
        )?;
        Ok(result)
    }

    pub fn charges(&self, reseller_id: &str) -> StoreResult<Vec<Charge>> {
        list_under(&self.0.t.charges, reseller_id)
    }

    /// One page of the reseller's charges, oldest first, and how many there are.
    pub fn charges_window(
        &self,
        reseller_id: &str,
        want: &super::Want,
    ) -> StoreResult<(super::Window<Charge>, usize)> {
        let prefix = format!("{reseller_id}/");
        let tree = &self.0.t.charges;
        let window = super::page(tree, prefix.as_bytes(), want)?;
        let items = window
            .items
            .iter()
            .map(|(_, raw)| decode(raw))
            .collect::<StoreResult<Vec<_>>>()?;
        let total = tree.scan_prefix(prefix.as_bytes()).keys().count();
        Ok((window.holding(items), total))
    }

    pub fn prices(&self, reseller_id: &str) -> StoreResult<Prices> {
        Ok(get(&self.0.t.prices, reseller_id)?.unwrap_or_default())
    }

    pub fn set_prices(&self, reseller_id: &str, prices: &Prices) -> StoreResult<()> {
        self.0
            .t
            .prices
            .insert(reseller_id.as_bytes(), encode(prices))?;
        Ok(())
    }

    /// Removes every billing record of a reseller (on reseller deletion).
    pub fn delete_all(&self, reseller_id: &str) -> StoreResult<()> {
        let t = &self.0.t;
        for tree in [
            &t.payment_methods,
            &t.charges,
            &t.charge_by_idempotency_key,
            &t.idempotency,
        ] {
            for key in tree
                .scan_prefix(format!("{reseller_id}/").as_bytes())
                .keys()
            {
                tree.remove(key?)?;
            }
        }
        t.prices.remove(reseller_id.as_bytes())?;
        Ok(())
    }
}
