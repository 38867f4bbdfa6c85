//! Email addresses, lowercased so lookups are case-insensitive.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Serialize for Email {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// JSON (client input) is validated and normalised; stored records (bincode, not human
/// readable) hold addresses that were, so reading them back skips the work.
impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let stored = !d.is_human_readable();
        let raw = String::deserialize(d)?;
        if stored {
            return Ok(Email(raw));
        }
        Email::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim().to_lowercase();
        let bad = || format!("invalid email address {raw:?}");
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = s.rsplit_once('@').ok_or_else(bad)?;
        if local.is_empty() || local.len() > 64 || local.contains('@') {
            return Err(bad());
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2
            || labels.iter().any(|l| {
                l.is_empty()
                    || l.starts_with('-')
                    || l.ends_with('-')
                    || !l.chars().all(|c| c.is_alphanumeric() || c == '-')
            })
        {
            return Err(bad());
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Email {
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
            Email::parse(" Name@Mail.COM ").unwrap().as_str(),
            "name@mail.com"
        );
        for bad in ["", "a", "a@", "@b.c", "a@b", "a b@c.d", "a@-b.c", "a@b..c"] {
            assert!(Email::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
