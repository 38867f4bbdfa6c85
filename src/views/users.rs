//! A client user, with its suspension and own plan.

use crate::model::{Email, Timestamp};
use crate::store::suspensions::Suspension;
use crate::store::users::Listed;
use crate::store::Store;
use serde::Serialize;

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    pub uid: Option<String>,
    pub email: Email,
    pub full_name: Option<String>,
    pub avatar_url: Option<String>,
    pub created_at: Timestamp,
    pub token_count: usize,
    /// Set while the user is suspended: its tokens get 403 `user_suspended` and its sites show
    /// the `suspended` page.
    pub suspension: Option<Suspension>,
    /// The user's own plan (null: the reseller's default plan applies).
    pub plan_id: Option<String>,
}

impl UserView {
    /// A user as webhooks tell of it (with no token count at hand).
    pub fn of_user(user: crate::store::users::User) -> UserView {
        UserView::new(Listed { user, tokens: 0 })
    }

    pub fn new(listed: Listed) -> UserView {
        let Listed { user: u, tokens } = listed;
        UserView {
            id: u.id,
            uid: u.uid,
            email: u.email,
            full_name: None,
            avatar_url: None,
            created_at: u.created_at,
            token_count: tokens as usize,
            suspension: None,
            plan_id: None,
        }
    }

    /// As `new`, with the user's suspension and plan read from the store.
    pub fn read(store: &Store, listed: Listed) -> UserView {
        UserView::read_some(store, listed, Lookups::BOTH)
    }

    /// As `read`, skipping what `lookups` says the reseller has none of.
    pub fn read_some(store: &Store, listed: Listed, lookups: Lookups) -> UserView {
        let (reseller_id, id) = (&listed.user.reseller_id, &listed.user.id);
        let suspension = lookups
            .suspensions
            .then(|| store.suspensions().get(reseller_id, id).ok().flatten())
            .flatten();
        let plan_id = lookups
            .plans
            .then(|| store.plans().user_plan_id(reseller_id, id).ok().flatten())
            .flatten();
        UserView {
            suspension,
            plan_id,
            ..UserView::new(listed)
        }
    }
}

/// Which per-user records a listing must look up: one seek per page finds out whether the
/// reseller has any suspended user or any user with a plan of its own.
#[derive(Clone, Copy)]
pub struct Lookups {
    suspensions: bool,
    plans: bool,
}

impl Lookups {
    pub const BOTH: Lookups = Lookups {
        suspensions: true,
        plans: true,
    };

    pub fn of(store: &Store, reseller_id: &str) -> Lookups {
        Lookups {
            suspensions: store.suspensions().any(reseller_id).unwrap_or(true),
            plans: store.plans().any_assigned(reseller_id).unwrap_or(true),
        }
    }
}
