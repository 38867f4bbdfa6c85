//! OpenAPI schemas for the newtypes, describing the JSON their custom serde actually sends:
//! a timestamp is an RFC 3339 string, names and emails are strings, lists are string arrays.

use super::{DomainName, Email, IpAllowList, Permission, Permissions, SiteName, Timestamp};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

fn string(format: Option<SchemaFormat>, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(format)
        .description(Some(description))
        .into()
}

macro_rules! string_schema {
    ($ty:ty, $format:expr, $description:expr) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                string($format, $description)
            }
        }
        impl ToSchema for $ty {}
    };
}

string_schema!(
    Timestamp,
    Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)),
    "An RFC 3339 date and time (UTC)"
);
string_schema!(
    Email,
    Some(SchemaFormat::KnownFormat(KnownFormat::Email)),
    "An email address (stored lower-case)"
);
string_schema!(
    DomainName,
    Some(SchemaFormat::KnownFormat(KnownFormat::Hostname)),
    "A DNS name, e.g. client.example"
);
string_schema!(
    SiteName,
    None,
    "A site name: one DNS label, unique on the instance"
);

impl PartialSchema for Permission {
    fn schema() -> RefOr<Schema> {
        let names = [
            Permission::All,
            Permission::UsersRead,
            Permission::UsersWrite,
            Permission::SitesRead,
            Permission::SitesWrite,
            Permission::DomainsRead,
            Permission::DomainsWrite,
            Permission::KeysManage,
            Permission::SettingsWrite,
            Permission::SubmissionsRead,
            Permission::BillingWrite,
        ]
        .map(Permission::name);
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(names))
            .description(Some("A reseller API key permission; `*` grants all"))
            .into()
    }
}
impl ToSchema for Permission {}

impl PartialSchema for Permissions {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(Permission::schema())
            .description(Some("Permissions of a reseller API key"))
            .into()
    }
}
impl ToSchema for Permissions {}

impl PartialSchema for IpAllowList {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(string(
                None,
                "An IP address or CIDR block, e.g. 203.0.113.0/24",
            ))
            .description(Some(
                "Allowed client IPs (CIDR); empty allows every address",
            ))
            .into()
    }
}
impl ToSchema for IpAllowList {}
