//! Domain newtypes parsed at the boundary: once a value has one of these types it is valid,
//! so handlers and the store never re-check raw strings.

mod email;
mod id;
mod ipnet_list;
mod name;
mod permission;
mod schema;
mod time;

pub use email::Email;
pub use id::new_id;
pub use ipnet_list::IpAllowList;
pub use name::{is_dns_label, DomainName, SiteName};
pub use permission::{Permission, Permissions};
pub use time::{write_rfc3339, Timestamp};
