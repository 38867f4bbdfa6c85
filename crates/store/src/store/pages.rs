//! A reseller's custom HTML pages: the 404 page, the form-success page and the password page.

use super::Store;
use crate::error::{StoreError, StoreResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageKind {
    NotFound,
    FormSuccess,
    Password,
    /// Shown (503) on the sites of a suspended user.
    Suspended,
    /// Shown (503) on the sites of a user over its plan's bandwidth, with `overuse: block`.
    QuotaExceeded,
}

impl PageKind {
    pub const ALL: [PageKind; 5] = [
        PageKind::NotFound,
        PageKind::FormSuccess,
        PageKind::Password,
        PageKind::Suspended,
        PageKind::QuotaExceeded,
    ];

    pub fn parse(s: &str) -> StoreResult<PageKind> {
        match s {
            "not_found" => Ok(PageKind::NotFound),
            "form_success" => Ok(PageKind::FormSuccess),
            "password" => Ok(PageKind::Password),
            "suspended" => Ok(PageKind::Suspended),
            "quota_exceeded" => Ok(PageKind::QuotaExceeded),
            _ => Err(StoreError::NotFound("page kind")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PageKind::NotFound => "not_found",
            PageKind::FormSuccess => "form_success",
            PageKind::Password => "password",
            PageKind::Suspended => "suspended",
            PageKind::QuotaExceeded => "quota_exceeded",
        }
    }
}

pub struct Pages<'a>(&'a Store);

impl Store {
    pub fn pages(&self) -> Pages<'_> {
        Pages(self)
    }
}

fn key(reseller_id: &str, kind: PageKind) -> String {
    format!("{reseller_id}/{}", kind.name())
}

impl Pages<'_> {
    pub fn get(&self, reseller_id: &str, kind: PageKind) -> StoreResult<Option<String>> {
        Ok(self
            .0
            .t
            .pages
            .get(key(reseller_id, kind).as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn put(&self, reseller_id: &str, kind: PageKind, html: &str) -> StoreResult<()> {
        self.0
            .t
            .pages
            .insert(key(reseller_id, kind).as_bytes(), html.as_bytes())?;
        Ok(())
    }

    /// Removes a custom page (back to the built-in one). True if there was one.
    pub fn delete(&self, reseller_id: &str, kind: PageKind) -> StoreResult<bool> {
        Ok(self
            .0
            .t
            .pages
            .remove(key(reseller_id, kind).as_bytes())?
            .is_some())
    }
}
