//! Access guards: who may call a handler, stated once, in its signature. A handler takes one guard
//! (`Key<UsersWrite>`, `KeyOrUser<SitesRead>`, `Operator`, `Plugin` or `Public`); the guard is an
//! extractor that refuses everyone else before the handler runs (401 without a credential, 403
//! with the wrong one), and hands the handler what it checked (the reseller, the tenant). The
//! route table reads the same rule from the handler's type (`who_of`), so the OpenAPI document,
//! the write gate and the isolation test all see the rule the guard enforces; a handler without
//! a guard, or with two, does not compile into the table.

use super::{Principal, Tenant};
use crate::error::{ApiError, ApiResult};
use crate::model::Permission;
use crate::store::resellers::Reseller;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use std::future::{ready, Ready};
use std::marker::PhantomData;
use std::ops::Deref;

/// Who may call an endpoint: what its guard enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// Anyone, without a credential (public documents such as a reseller's JWKS).
    Public,
    /// The operator token only.
    Operator,
    /// A WordPress plugin key only.
    Plugin,
    /// A reseller API key holding all these permissions (none listed: any key).
    Key(&'static [&'static str]),
    /// Such a key, or a user access token (users own their data).
    Tenant(&'static [&'static str]),
}

/// The permissions a guard demands, as a type.
pub trait Needs {
    const PERMISSIONS: &'static [Permission];
    /// Their names, as API.md and the OpenAPI document spell them.
    const NAMES: &'static [&'static str];
}

macro_rules! needs {
    ($( $(#[$doc:meta])* $name:ident => [$($p:ident),*]; )*) => {
        $(
            $(#[$doc])*
            pub struct $name;
            impl Needs for $name {
                const PERMISSIONS: &'static [Permission] = &[$(Permission::$p),*];
                const NAMES: &'static [&'static str] = &[$(Permission::$p.name()),*];
            }
        )*
    };
}

needs! {
    UsersRead => [UsersRead];
    UsersWrite => [UsersWrite];
    SitesRead => [SitesRead];
    SitesWrite => [SitesWrite];
    DomainsRead => [DomainsRead];
    DomainsWrite => [DomainsWrite];
    KeysManage => [KeysManage];
    SettingsWrite => [SettingsWrite];
    SubmissionsRead => [SubmissionsRead];
    BillingWrite => [BillingWrite];
    /// Registering a domain: it is paid for and becomes a client domain.
    RegisterDomains => [BillingWrite, DomainsWrite];
    /// Any reseller key (no permission in particular).
    AnyKey => [];
}

/// The reseller of `who`, if it is a reseller key holding every one of `needs`.
fn key_holding<'a>(who: &'a Principal, needs: &[Permission]) -> ApiResult<&'a Reseller> {
    match who {
        Principal::Reseller { reseller, key } => {
            match needs.iter().find(|p| !key.permissions.allows(**p)) {
                Some(missing) => Err(ApiError::MissingPermission(missing.name())),
                None => Ok(reseller),
            }
        }
        _ => Err(ApiError::Forbidden(
            "this endpoint needs a reseller API key".into(),
        )),
    }
}

/// The caller, authenticated (once per request: see `Principal`'s extractor), then `check`ed.
fn guarded<T>(
    req: &HttpRequest,
    payload: &mut Payload,
    check: impl FnOnce(Principal) -> ApiResult<T>,
) -> Ready<ApiResult<T>> {
    ready(
        Principal::from_request(req, payload)
            .into_inner()
            .and_then(check),
    )
}

/// A reseller API key holding `N`'s permissions. (It lends the handler the caller's reseller
/// rather than copying it once more.)
pub struct Key<N> {
    who: Principal,
    needs: PhantomData<N>,
}

impl<N> Key<N> {
    /// The key's reseller.
    pub fn reseller(&self) -> &Reseller {
        match &self.who {
            Principal::Reseller { reseller, .. } => reseller,
            // `from_request` makes a `Key` of nothing else.
            _ => unreachable!("a Key guard holds a reseller key"),
        }
    }

    /// Checks a further permission that what the request asks for needs, beyond the route's
    /// (changing the reseller's IP allowlist is key management): 403 without it.
    pub fn holds(&self, perm: Permission) -> ApiResult<()> {
        key_holding(&self.who, &[perm]).map(drop)
    }
}

impl<N: Needs> FromRequest for Key<N> {
    type Error = ApiError;
    type Future = Ready<ApiResult<Self>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        guarded(req, payload, |who| {
            key_holding(&who, N::PERMISSIONS)?;
            Ok(Key {
                who,
                needs: PhantomData,
            })
        })
    }
}

/// A reseller API key holding `N`'s permissions, or a user access token (users own their data;
/// the handler shows a user only its own part of the account).
pub struct KeyOrUser<N> {
    who: Principal,
    needs: PhantomData<N>,
}

impl<N> KeyOrUser<N> {
    /// What the caller may see: the whole reseller account, or one user's part of it.
    pub fn tenant(&self) -> Tenant {
        match &self.who {
            Principal::User { reseller, user, .. } => Tenant {
                reseller: reseller.clone(),
                user: Some(user.clone()),
            },
            Principal::Reseller { reseller, .. } => Tenant {
                reseller: reseller.clone(),
                user: None,
            },
            // `from_request` makes a `KeyOrUser` of nothing else.
            _ => unreachable!("a KeyOrUser guard holds a reseller key or a user token"),
        }
    }
}

impl<N: Needs> FromRequest for KeyOrUser<N> {
    type Error = ApiError;
    type Future = Ready<ApiResult<Self>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        guarded(req, payload, |who| {
            if !matches!(who, Principal::User { .. }) {
                key_holding(&who, N::PERMISSIONS)?;
            }
            Ok(KeyOrUser {
                who,
                needs: PhantomData,
            })
        })
    }
}

/// The operator token.
pub struct Operator(Principal);

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = Ready<ApiResult<Self>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        guarded(req, payload, |who| match who {
            Principal::Operator => Ok(Operator(who)),
            _ => Err(ApiError::Forbidden(
                "only the operator token may call this endpoint".into(),
            )),
        })
    }
}

/// A WordPress plugin key: the handler gets its one domain.
pub struct Plugin {
    pub domain: crate::store::domains::Domain,
    who: Principal,
}

impl FromRequest for Plugin {
    type Error = ApiError;
    type Future = Ready<ApiResult<Self>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        guarded(req, payload, |who| match &who {
            Principal::Plugin { domain } => Ok(Plugin {
                domain: domain.clone(),
                who,
            }),
            _ => Err(ApiError::Forbidden(
                "this endpoint takes a WordPress plugin key".into(),
            )),
        })
    }
}

/// Anyone, with or without a credential.
pub struct Public;

impl FromRequest for Public {
    type Error = ApiError;
    type Future = Ready<ApiResult<Self>>;

    fn from_request(_: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Public))
    }
}

/// Every guard is the authenticated caller too (`who.scope()`, `who.actor()`).
macro_rules! deref_to_principal {
    ($($guard:ident $(<$n:ident>)?: $field:tt;)*) => {
        $(
            impl$(<$n>)? Deref for $guard$(<$n>)? {
                type Target = Principal;
                fn deref(&self) -> &Principal {
                    &self.$field
                }
            }
        )*
    };
}

deref_to_principal! {
    Key<N>: who;
    KeyOrUser<N>: who;
    Operator: 0;
    Plugin: who;
}

/// The access rule an argument of a handler states: a guard's, or none.
pub trait Access {
    const WHO: Option<Who> = None;
}

impl<N: Needs> Access for Key<N> {
    const WHO: Option<Who> = Some(Who::Key(N::NAMES));
}
impl<N: Needs> Access for KeyOrUser<N> {
    const WHO: Option<Who> = Some(Who::Tenant(N::NAMES));
}
impl Access for Operator {
    const WHO: Option<Who> = Some(Who::Operator);
}
impl Access for Plugin {
    const WHO: Option<Who> = Some(Who::Plugin);
}
impl Access for Public {
    const WHO: Option<Who> = Some(Who::Public);
}
impl<T> Access for web::Data<T> {}
impl<T> Access for web::Path<T> {}
impl<T> Access for web::Query<T> {}
impl<T> Access for web::Json<T> {}
impl Access for web::Payload {}
impl Access for web::Bytes {}
impl Access for HttpRequest {}

/// The access rule of a handler's arguments: exactly one guard's.
pub trait HandlerAccess {
    const WHO: Option<Who>;
}

/// The one rule among `rules` (a handler naming two guards does not compile).
const fn one(rules: &[Option<Who>]) -> Option<Who> {
    let mut found = None;
    let mut i = 0;
    while i < rules.len() {
        if let Some(who) = rules[i] {
            if found.is_some() {
                panic!("a handler names two access guards");
            }
            found = Some(who);
        }
        i += 1;
    }
    found
}

macro_rules! handler_access {
    ($($arg:ident)*) => {
        impl<$($arg: Access),*> HandlerAccess for ($($arg,)*) {
            const WHO: Option<Who> = one(&[$($arg::WHO),*]);
        }
    };
}

handler_access!();
handler_access!(A);
handler_access!(A B);
handler_access!(A B C);
handler_access!(A B C D);
handler_access!(A B C D E);
handler_access!(A B C D E F);
handler_access!(A B C D E F G);
handler_access!(A B C D E F G H);

/// Who may call `handler`, read from its guard (evaluated when the route table is compiled: a
/// handler without a guard is a compile error there).
pub const fn who_of<F, Args>(_handler: &F) -> Who
where
    F: actix_web::Handler<Args>,
    Args: HandlerAccess,
{
    match Args::WHO {
        Some(who) => who,
        None => panic!(
            "a handler in the route table names no access guard (Key, KeyOrUser, Operator, \
             Plugin or Public)"
        ),
    }
}
