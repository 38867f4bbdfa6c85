//! Secrets: generated with a type prefix and a checksum, stored only as SHA-256, compared in
//! constant time, and never printed (`Debug`/`Display` show `***`).

use rand::Rng;

/// The prefix of each kind of credential: it names the kind, so a secret is never tried as
/// another kind, and it is part of what the checksum covers.
pub const OPERATOR_PREFIX: &str = "op_";
pub const KEY_PREFIX: &str = "sk_org_";
pub const TOKEN_PREFIX: &str = "rt_";
pub const WP_PREFIX: &str = "wp_";
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_LEN: usize = 40;
const CHECKSUM_LEN: usize = 6;

/// A freshly generated or presented secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A new secret `PREFIX` + 40 random base62 characters + a 6-character checksum.
    pub fn generate(prefix: &str) -> Secret {
        let mut rng = rand::thread_rng();
        let random: String = (0..RANDOM_LEN)
            .map(|_| BASE62[rng.gen_range(0..BASE62.len())] as char)
            .collect();
        let body = format!("{prefix}{random}");
        let sum = checksum(&body);
        Secret(format!("{body}{sum}"))
    }

    pub fn new(raw: String) -> Secret {
        Secret(raw)
    }

    /// The full secret, for the one response that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True if the secret starts with `prefix` and its checksum matches, so typos are rejected
    /// without a store lookup.
    pub fn is_well_formed(&self, prefix: &str) -> bool {
        let s = &self.0;
        s.len() == prefix.len() + RANDOM_LEN + CHECKSUM_LEN
            && s.starts_with(prefix)
            && s.is_char_boundary(s.len() - CHECKSUM_LEN)
            && checksum(&s[..s.len() - CHECKSUM_LEN])
                .as_bytes()
                .ct_eq(&s.as_bytes()[s.len() - CHECKSUM_LEN..])
                .into()
    }

    pub fn hash(&self) -> [u8; 32] {
        hash(&self.0)
    }

    /// `sk_org_…a1b2`: the prefix and the last four characters.
    pub fn masked(&self, prefix: &str) -> String {
        let tail: String = self
            .0
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("{prefix}…{tail}")
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

pub fn hash(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Constant-time equality of two hashes.
pub fn hashes_equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

fn checksum(body: &str) -> String {
    let digest = Sha256::digest(format!("resellerd:{body}").as_bytes());
    digest
        .iter()
        .take(CHECKSUM_LEN)
        .map(|b| BASE62[(*b as usize) % BASE62.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_validate_and_typos_do_not() {
        let s = Secret::generate("sk_org_");
        assert!(s.is_well_formed("sk_org_"));
        assert!(!s.is_well_formed("op_"));
        let mut typo = s.expose().to_string().into_bytes();
        typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
        assert!(!Secret::new(String::from_utf8(typo).unwrap()).is_well_formed("sk_org_"));
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert!(s.masked("sk_org_").starts_with("sk_org_…"));
    }
}
