//! Plans (a reseller's packages for its clients) and the operator's limits on a reseller. A
//! user's limits are the tighter of its plan's (its own plan, else the reseller's default plan)
//! and the reseller's. The counts are checked in the same transaction (or under the same lock)
//! as the write they limit, so two concurrent calls cannot both pass a limit of one.

use super::codec::{decode_as, encode_as};
use super::{encode, get, Store};
use crate::error::{StoreError, StoreResult};
use crate::model::{new_id, Timestamp};
use serde::{Deserialize, Serialize};

/// Plans per reseller.
pub const MAX_PLANS: usize = 100;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overuse {
    /// Over the month's bandwidth, the user's sites show the `quota_exceeded` page.
    #[default]
    Block,
    /// Keep serving; tell the reseller at 80 % and 100 %.
    Notify,
}

/// Limits; None is unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Limits {
    pub max_sites: Option<u64>,
    pub max_storage_mb: Option<u64>,
    pub max_bandwidth_mb_month: Option<u64>,
    pub max_domains: Option<u64>,
    pub max_submissions_month: Option<u64>,
    /// Minutes of builds from git a month (data layout 2 of plans and caps).
    pub max_build_minutes_month: Option<u64>,
}

/// The layout of plans and the operator's caps since builds from git (their `Limits` gained
/// `max_build_minutes_month`); records of layout 1 are read as `PlanV1`/`ResellerLimitsV1`.
const RECORD: u8 = 2;

#[derive(Deserialize)]
struct LimitsV1 {
    max_sites: Option<u64>,
    max_storage_mb: Option<u64>,
    max_bandwidth_mb_month: Option<u64>,
    max_domains: Option<u64>,
    max_submissions_month: Option<u64>,
}

impl From<LimitsV1> for Limits {
    fn from(l: LimitsV1) -> Limits {
        Limits {
            max_sites: l.max_sites,
            max_storage_mb: l.max_storage_mb,
            max_bandwidth_mb_month: l.max_bandwidth_mb_month,
            max_domains: l.max_domains,
            max_submissions_month: l.max_submissions_month,
            max_build_minutes_month: None,
        }
    }
}

#[derive(Deserialize)]
struct PlanV1 {
    id: String,
    name: String,
    limits: LimitsV1,
    overuse: Overuse,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl From<PlanV1> for Plan {
    fn from(p: PlanV1) -> Plan {
        Plan {
            id: p.id,
            name: p.name,
            limits: p.limits.into(),
            overuse: p.overuse,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Deserialize)]
struct ResellerLimitsV1 {
    max_users: Option<u64>,
    per_user: LimitsV1,
}

impl From<ResellerLimitsV1> for ResellerLimits {
    fn from(l: ResellerLimitsV1) -> ResellerLimits {
        ResellerLimits {
            max_users: l.max_users,
            per_user: l.per_user.into(),
        }
    }
}

fn read_plan(raw: &[u8]) -> StoreResult<Plan> {
    decode_as::<Plan, PlanV1>(RECORD, raw)
}

fn read_caps(raw: &[u8]) -> StoreResult<ResellerLimits> {
    decode_as::<ResellerLimits, ResellerLimitsV1>(RECORD, raw)
}

/// (Stored with bincode, which cannot read `#[serde(flatten)]`: the API's views flatten.)
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub limits: Limits,
    pub overuse: Overuse,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The operator's caps on a reseller: a plan's limits (applied to each user) and `max_users`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResellerLimits {
    pub max_users: Option<u64>,
    pub per_user: Limits,
}

fn plan_key(reseller_id: &str, id: &str) -> String {
    format!("{reseller_id}/{id}")
}

fn default_key(reseller_id: &str) -> String {
    format!("default/{reseller_id}")
}

fn user_key(reseller_id: &str, user_id: &str) -> String {
    format!("user/{reseller_id}/{user_id}")
}

fn limits_key(reseller_id: &str) -> String {
    format!("limits/{reseller_id}")
}

/// The tighter of two limits.
fn tighter(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

pub struct Plans<'a>(&'a Store);

impl Store {
    pub fn plans(&self) -> Plans<'_> {
        Plans(self)
    }
}

/// What other nodes are told when the operator set a reseller's limits.
pub(crate) const LIMITS_TOPIC: &str = "limits";

impl Plans<'_> {
    pub fn create(
        &self,
        reseller_id: &str,
        name: String,
        limits: Limits,
        overuse: Overuse,
        now: Timestamp,
    ) -> StoreResult<Plan> {
        let name = crate::model::Name::parse(&name)
            .map_err(StoreError::invalid)?
            .into_string();
        if self.list(reseller_id)?.len() >= MAX_PLANS {
            return Err(StoreError::Conflict(
                crate::error::Conflict::PlanLimitReached,
                format!("a reseller has at most {MAX_PLANS} plans"),
            ));
        }
        let plan = Plan {
            id: new_id(),
            name,
            limits,
            overuse,
            created_at: now,
            updated_at: now,
        };
        self.0.t.plans.insert(
            plan_key(reseller_id, &plan.id).as_bytes(),
            encode_as(RECORD, &plan),
        )?;
        Ok(plan)
    }

    pub fn list(&self, reseller_id: &str) -> StoreResult<Vec<Plan>> {
        self.0
            .t
            .plans
            .scan_prefix(format!("{reseller_id}/").as_bytes())
            .values()
            .map(|v| read_plan(&v?))
            .collect()
    }

    pub fn get(&self, reseller_id: &str, id: &str) -> StoreResult<Plan> {
        self.find(reseller_id, id)?
            .ok_or(StoreError::NotFound("plan"))
    }

    fn find(&self, reseller_id: &str, id: &str) -> StoreResult<Option<Plan>> {
        self.0
            .t
            .plans
            .get(plan_key(reseller_id, id).as_bytes())?
            .map(|raw| read_plan(&raw))
            .transpose()
    }

    pub fn put(&self, reseller_id: &str, plan: &Plan) -> StoreResult<()> {
        self.get(reseller_id, &plan.id)?;
        self.0.t.plans.insert(
            plan_key(reseller_id, &plan.id).as_bytes(),
            encode_as(RECORD, plan),
        )?;
        Ok(())
    }

    /// Deletes a plan; its users fall back to the default plan (or none).
    pub fn delete(&self, reseller_id: &str, id: &str) -> StoreResult<()> {
        self.get(reseller_id, id)?;
        self.0
            .t
            .plans
            .remove(plan_key(reseller_id, id).as_bytes())?;
        if self.default_plan_id(reseller_id)?.as_deref() == Some(id) {
            self.0
                .t
                .plan_settings
                .remove(default_key(reseller_id).as_bytes())?;
        }
        Ok(())
    }

    pub fn default_plan_id(&self, reseller_id: &str) -> StoreResult<Option<String>> {
        get(&self.0.t.plan_settings, &default_key(reseller_id))
    }

    /// Sets (or clears) the plan of users without one of their own.
    pub fn set_default(&self, reseller_id: &str, plan_id: Option<&str>) -> StoreResult<()> {
        self.point(reseller_id, &default_key(reseller_id), plan_id)
    }

    /// Points the settings key `key` at one of the reseller's plans (404 for another's or an
    /// unknown one), or removes it.
    fn point(&self, reseller_id: &str, key: &str, plan_id: Option<&str>) -> StoreResult<()> {
        let settings = &self.0.t.plan_settings;
        match plan_id {
            Some(id) => {
                self.get(reseller_id, id)?;
                settings.insert(key.as_bytes(), encode(&id.to_string()))?;
            }
            None => {
                settings.remove(key.as_bytes())?;
            }
        }
        Ok(())
    }

    /// True if any user of the reseller has a plan of its own (one seek).
    pub fn any_assigned(&self, reseller_id: &str) -> StoreResult<bool> {
        let prefix = format!("user/{reseller_id}/");
        Ok(self
            .0
            .t
            .plan_settings
            .scan_prefix(prefix.as_bytes())
            .next()
            .transpose()?
            .is_some())
    }

    pub fn user_plan_id(&self, reseller_id: &str, user_id: &str) -> StoreResult<Option<String>> {
        get(&self.0.t.plan_settings, &user_key(reseller_id, user_id))
    }

    /// Puts a user on a plan (None: back to the default plan).
    pub fn assign(
        &self,
        reseller_id: &str,
        user_id: &str,
        plan_id: Option<&str>,
    ) -> StoreResult<()> {
        self.0.users().get(reseller_id, user_id)?;
        self.point(reseller_id, &user_key(reseller_id, user_id), plan_id)
    }

    /// The plan a user is on: its own, else the reseller's default (a deleted one is none).
    pub fn plan_of(&self, reseller_id: &str, user_id: &str) -> StoreResult<Option<Plan>> {
        let id = match self.user_plan_id(reseller_id, user_id)? {
            Some(id) => Some(id),
            None => self.default_plan_id(reseller_id)?,
        };
        Ok(match id {
            Some(id) => self.find(reseller_id, &id)?,
            None => None,
        })
    }

    /// The operator's limits on a reseller. Read on every token issue, so while the operator has
    /// set limits for no reseller it costs no read (the read measured 30 % of the create rate).
    pub fn reseller_limits(&self, reseller_id: &str) -> StoreResult<ResellerLimits> {
        if !self.0.any_limits.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(ResellerLimits::default());
        }
        Ok(self
            .0
            .t
            .plan_settings
            .get(limits_key(reseller_id).as_bytes())?
            .map(|raw| read_caps(&raw))
            .transpose()?
            .unwrap_or_default())
    }

    /// True if limits are stored for some reseller (read at open, and again when another node
    /// announces `LIMITS_TOPIC`).
    pub(crate) fn any_limits_stored(tree: &crate::kv::Tree) -> StoreResult<bool> {
        Ok(tree.scan_prefix(b"limits/").next().transpose()?.is_some())
    }

    pub fn set_reseller_limits(
        &self,
        reseller_id: &str,
        limits: &ResellerLimits,
    ) -> StoreResult<()> {
        self.0
            .any_limits
            .store(true, std::sync::atomic::Ordering::Release);
        self.0.t.plan_settings.insert(
            limits_key(reseller_id).as_bytes(),
            encode_as(RECORD, limits),
        )?;
        self.0.db.announce(&[LIMITS_TOPIC]);
        Ok(())
    }

    /// A user's limits: the tighter of its plan's and the reseller's, field by field.
    pub fn limits_of(&self, reseller_id: &str, user_id: &str) -> StoreResult<(Limits, Overuse)> {
        let caps = self.reseller_limits(reseller_id)?.per_user;
        let (plan, overuse) = match self.plan_of(reseller_id, user_id)? {
            Some(p) => (p.limits, p.overuse),
            None => (Limits::default(), Overuse::default()),
        };
        Ok((
            Limits {
                max_sites: tighter(plan.max_sites, caps.max_sites),
                max_storage_mb: tighter(plan.max_storage_mb, caps.max_storage_mb),
                max_bandwidth_mb_month: tighter(
                    plan.max_bandwidth_mb_month,
                    caps.max_bandwidth_mb_month,
                ),
                max_domains: tighter(plan.max_domains, caps.max_domains),
                max_submissions_month: tighter(
                    plan.max_submissions_month,
                    caps.max_submissions_month,
                ),
                max_build_minutes_month: tighter(
                    plan.max_build_minutes_month,
                    caps.max_build_minutes_month,
                ),
            },
            overuse,
        ))
    }

    /// Forgets a deleted reseller's plans and settings.
    pub fn delete_all(&self, reseller_id: &str) -> StoreResult<()> {
        let t = &self.0.t;
        for key in t
            .plans
            .scan_prefix(format!("{reseller_id}/").as_bytes())
            .keys()
        {
            t.plans.remove(key?)?;
        }
        for prefix in [
            format!("user/{reseller_id}/"),
            default_key(reseller_id),
            limits_key(reseller_id),
        ] {
            for key in t.plan_settings.scan_prefix(prefix.as_bytes()).keys() {
                t.plan_settings.remove(key?)?;
            }
        }
        Ok(())
    }
}

/// 403 `quota_exceeded` when `used` is already at `max`.
pub fn check(limit: &'static str, used: u64, max: Option<u64>) -> StoreResult<()> {
    match max {
        Some(max) if used >= max => Err(StoreError::QuotaExceeded { limit, used, max }),
        _ => Ok(()),
    }
}
