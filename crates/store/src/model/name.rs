//! DNS names: lowercased, trailing dot removed, internationalised names kept as given ASCII
//! (punycode), each label 1..=63 of [a-z0-9-] not starting or ending with '-'.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainName(String);

impl DomainName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid domain name {raw:?}: {why}");
        let trimmed = raw.trim().trim_end_matches('.');
        // Internationalised names become punycode (bücher.example -> xn--bcher-kva.example).
        let s = if trimmed.is_ascii() {
            trimmed.to_ascii_lowercase()
        } else {
            idna::domain_to_ascii(trimmed).map_err(|_| bad("not a valid internationalised name"))?
        };
        if s.is_empty() || s.len() > 253 {
            return Err(bad("must be 1 to 253 characters"));
        }
        let labels: Vec<&str> = s.split('.').collect();
        if labels.len() < 2 {
            return Err(bad("needs at least two labels, e.g. example.com"));
        }
        for label in &labels {
            if !is_dns_label(label) {
                return Err(bad(
                    "each label is 1-63 letters, digits or '-', not starting or ending with '-'",
                ));
            }
        }
        if labels
            .last()
            .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(bad("an IP address is not a domain name"));
        }
        Ok(DomainName(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One DNS label: 1..=63 of [a-z0-9-], not starting or ending with '-'.
pub fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl TryFrom<String> for DomainName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        DomainName::parse(&s)
    }
}

impl From<DomainName> for String {
    fn from(d: DomainName) -> String {
        d.0
    }
}

impl std::fmt::Display for DomainName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A display name (of a reseller, a key): 1 to 200 characters, no control characters, trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub fn parse(raw: &str) -> Result<Name, String> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err("name must be 1 to 200 characters without control characters".into());
        }
        Ok(Name(name.to_string()))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A site name: one DNS label (it becomes `NAME.<preview domain>`), lowercased.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SiteName(String);

impl SiteName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim().to_lowercase();
        if s.contains("--") {
            // `DEPLOY_ID--NAME.<domain>` is a deploy's permalink; a name with `--` could take
            // over another site's deploy URL.
            return Err(format!(
                "invalid site name {raw:?}: '--' is reserved for deploy URLs (DEPLOY_ID--NAME)"
            ));
        }
        if is_dns_label(&s) {
            Ok(SiteName(s))
        } else {
            Err(format!(
                "invalid site name {raw:?}: 1-63 letters, digits or '-', not starting or ending with '-'"
            ))
        }
    }

    /// A random name like `site-3kq9x2mz7a`, for sites created without one.
    pub fn generate() -> Self {
        use rand::Rng;
        const CHARS: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
        let mut rng = rand::thread_rng();
        let tail: String = (0..10)
            .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
            .collect();
        SiteName(format!("site-{tail}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Decoding (stored records) only checks the label, so a site named with `--` before that was
/// reserved still loads; new names go through `parse`.
impl TryFrom<String> for SiteName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if is_dns_label(&s) {
            Ok(SiteName(s))
        } else {
            SiteName::parse(&s)
        }
    }
}

impl From<SiteName> for String {
    fn from(n: SiteName) -> String {
        n.0
    }
}

impl std::fmt::Display for SiteName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        assert_eq!(
            DomainName::parse("Sites.Example.COM.").unwrap().as_str(),
            "sites.example.com"
        );
        assert_eq!(
            DomainName::parse("Bücher.Example").unwrap().as_str(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            DomainName::parse("xn--bcher-kva.example").unwrap().as_str(),
            "xn--bcher-kva.example"
        );
        for bad in [
            "",
            "localhost",
            "-a.com",
            "a-.com",
            "a..com",
            "a_b.com",
            "1.2.3.4",
            "a b.com",
        ] {
            assert!(DomainName::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
