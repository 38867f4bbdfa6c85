//! Domain newtypes parsed at the boundary: once a value has one of these types it is valid,
//! so handlers and the store never re-check raw strings.

mod email;
mod id;
mod ipnet_list;
mod name;
mod permission;
mod schema;
pub mod secret;
mod time;

pub use email::Email;
pub use id::{id_floor, new_id};
pub use ipnet_list::IpAllowList;
pub use name::{is_dns_label, DomainName, Name, SiteName};
pub use permission::{Permission, Permissions};
pub use time::{write_rfc3339, Timestamp};

/// The most items one page of a list holds (`per_page` 1 to this; the default).
pub const MAX_PER_PAGE: usize = 100;
