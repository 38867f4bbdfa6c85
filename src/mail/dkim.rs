//! DKIM signatures (RFC 6376, relaxed/relaxed) with a reseller's signing key: rsa-sha256 with an
//! RS256 key, ed25519-sha256 (RFC 8463) with an EdDSA key. The hashing and signing is ring's,
//! through `signing::sign`.
//!
//! Why not lettre's DKIM (lettre sends the mail): it signs RSA with the `rsa` crate, whose private
//! key operations are not constant-time (RUSTSEC-2023-0071, the Marvin attack, unfixed), and
//! anyone who can make resellerd send mail (a domain event, a form) could time them. ring signs
//! in constant time; this file is the canonicalization RFC 6376 asks for and nothing more, and
//! `tests/api/mail.rs` checks its signatures with dkimpy, an independent verifier.

use crate::store::signing::{Alg, SigningKey};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// The header fields signed, in this order (those a message has).
const SIGNED: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
];

/// The `DKIM-Signature` header value for a message, to put before its other header fields.
pub fn sign(
    headers: &[(&str, String)],
    body: &[u8],
    domain: &str,
    selector: &str,
    key: &SigningKey,
    timestamp: i64,
) -> Result<String, crate::signing::SigningError> {
    let bh = STANDARD.encode(Sha256::digest(canonical_body(body)));
    let signed: Vec<&(&str, String)> = SIGNED
        .iter()
        .filter_map(|name| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)))
        .collect();
    let names: Vec<String> = signed.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
    let algorithm = match key.alg {
        Alg::RS256 => "rsa-sha256",
        Alg::EdDSA => "ed25519-sha256",
    };
    let unsigned = format!(
        "v=1; a={algorithm}; c=relaxed/relaxed; d={domain}; s={selector}; t={timestamp}; h={}; bh={bh}; b=",
        names.join(":")
    );
    let mut data = String::new();
    for (name, value) in &signed {
        data.push_str(&canonical_header(name, value));
        data.push_str("\r\n");
    }
    // The signature's own field, canonicalized, with an empty b= and no CRLF (RFC 6376 3.7).
    data.push_str(&canonical_header("DKIM-Signature", &unsigned));
    let signature = match key.alg {
        Alg::RS256 => crate::signing::sign(key, data.as_bytes())?,
        // RFC 8463: Ed25519 signs the SHA-256 of the data.
        Alg::EdDSA => crate::signing::sign(key, &Sha256::digest(data.as_bytes()))?,
    };
    Ok(format!("{unsigned}{}", STANDARD.encode(signature)))
}

/// Relaxed header canonicalization: the name lower-cased, the value unfolded, runs of white
/// space one space, none at either end.
fn canonical_header(name: &str, value: &str) -> String {
    let unfolded = value.replace("\r\n", "");
    let collapsed = unfolded
        .split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    format!("{}:{}", name.to_ascii_lowercase().trim(), collapsed)
}

/// Relaxed body canonicalization: white space at line ends removed, runs of it one space, empty
/// lines at the end removed, and a non-empty body ending in CRLF.
fn canonical_body(body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    let mut lines: Vec<String> = text
        .split("\r\n")
        .map(|line| {
            let mut out = String::with_capacity(line.len());
            let mut space = false;
            for c in line.chars() {
                if c == ' ' || c == '\t' {
                    space = true;
                } else {
                    if space {
                        out.push(' ');
                        space = false;
                    }
                    out.push(c);
                }
            }
            out
        })
        .collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    if lines.is_empty() {
        return Vec::new();
    }
    let mut out = lines.join("\r\n");
    out.push_str("\r\n");
    out.into_bytes()
}

/// The TXT record a domain publishes for the key: `v=DKIM1; k=rsa|ed25519; p=<key>`.
pub fn record(key: &SigningKey) -> Result<String, crate::signing::SigningError> {
    let k = match key.alg {
        Alg::RS256 => "rsa",
        Alg::EdDSA => "ed25519",
    };
    Ok(format!(
        "v=DKIM1; k={k}; p={}",
        crate::signing::dkim_public_key(key)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalization_follows_rfc_6376() {
        // RFC 6376, 3.4.5: the example's relaxed forms.
        assert_eq!(canonical_header("A", " X"), "a:X");
        assert_eq!(canonical_header("B ", " Y\t\r\n\tZ  "), "b:Y Z");
        assert_eq!(
            canonical_body(b" C \r\nD \t E\r\n\r\n\r\n"),
            b" C\r\nD E\r\n"
        );
        assert_eq!(canonical_body(b""), b"");
        assert_eq!(canonical_body(b"\r\n\r\n"), b"");
    }
}
