//! Signing keys' cryptography: generation, public JWKs and signatures. ring (the provider rustls
//! uses) does all of it but generate RSA keys, which the `rsa` crate does; ring then signs with
//! them.

use crate::model::Timestamp;
use crate::store::signing::{Alg, PrivateKey, SigningKey};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The instance's own HMAC secret: it signs API cursors, billing idempotency ids and site
/// password cookies. Kept in `<data-dir>/edge-secret` (the name it always had); on PostgreSQL
/// every node uses the one in the database (see `Store::cluster_secret`), so a cursor or a
/// cookie one node signed is good on the others.
pub struct InstanceSecret {
    /// HMAC-SHA256 keyed with the secret (its inner and outer states computed once).
    mac: ring::hmac::Key,
}

impl InstanceSecret {
    /// Loads the secret from the data dir, or makes and keeps a new one.
    pub fn load(data_dir: &std::path::Path, store: &crate::store::Store) -> Result<Self, String> {
        use rand::RngCore;
        let path = data_dir.join("edge-secret");
        let secret = match std::fs::read_to_string(&path) {
            Ok(text) => hex::decode(text.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    format!("{} is corrupt; delete it to make a new one", path.display())
                })?,
            Err(_) => {
                let mut s = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut s);
                crate::files::write_private(&path, hex::encode(s).as_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                s
            }
        };
        let secret = store
            .cluster_secret("edge-secret", &secret)
            .map_err(|e| format!("cannot read the cluster's edge secret: {e}"))?;
        Ok(InstanceSecret {
            mac: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
        })
    }

    /// HMAC-SHA256 of `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 32] {
        tag_bytes(ring::hmac::sign(&self.mac, msg))
    }

    /// An HMAC-SHA256 keyed with the secret, to feed a message in parts.
    pub fn keyed(&self) -> ring::hmac::Context {
        ring::hmac::Context::with_key(&self.mac)
    }
}

/// RSA keys are 2048 bits: what DKIM verifiers and JOSE libraries all accept.
const RSA_BITS: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("cannot generate the key: {0}")]
    Generate(String),
    #[error("the stored private key cannot be read: {0}")]
    BadKey(String),
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// A new key of `alg` for a reseller (not yet stored, not active).
pub fn generate(reseller_id: &str, alg: Alg, now: Timestamp) -> Result<SigningKey, SigningError> {
    let (pkcs8, public) = match alg {
        Alg::EdDSA => {
            let rng = ring::rand::SystemRandom::new();
            let doc = Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|e| SigningError::Generate(e.to_string()))?;
            let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
                .map_err(|e| SigningError::Generate(e.to_string()))?;
            let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
            (
                doc.as_ref().to_vec(),
                json!({"crv": "Ed25519", "kty": "OKP", "x": x}),
            )
        }
        Alg::RS256 => {
            use rsa::pkcs8::EncodePrivateKey;
            use rsa::traits::PublicKeyParts;
            let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, RSA_BITS)
                .map_err(|e| SigningError::Generate(e.to_string()))?;
            let der = key
                .to_pkcs8_der()
                .map_err(|e| SigningError::Generate(e.to_string()))?;
            let n = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
            let e = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
            (
                der.as_bytes().to_vec(),
                json!({"e": e, "kty": "RSA", "n": n}),
            )
        }
    };
    let kid = thumbprint(&public);
    let mut jwk = public;
    jwk["kid"] = json!(kid);
    jwk["alg"] = json!(alg.as_str());
    jwk["use"] = json!("sig");
    Ok(SigningKey {
        id: crate::model::new_id(),
        reseller_id: reseller_id.to_string(),
        kid,
        alg,
        public_jwk: jwk.to_string(),
        private: PrivateKey(pkcs8),
        created_at: now,
        active: false,
    })
}

/// The RFC 7638 thumbprint of a public JWK that holds only its required members (serde_json's
/// map keeps them sorted, as the RFC's canonical form wants).
fn thumbprint(required: &Value) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(required.to_string().as_bytes()))
}

/// The public JWK of a key, as JSON.
pub fn public_jwk(key: &SigningKey) -> Value {
    serde_json::from_str(&key.public_jwk).unwrap_or(Value::Null)
}

/// Signs `message` with the key: Ed25519, or RSASSA-PKCS1-v1_5 with SHA-256.
pub fn sign(key: &SigningKey, message: &[u8]) -> Result<Vec<u8>, SigningError> {
    let der = &key.private.0;
    match key.alg {
        Alg::EdDSA => {
            let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map_err(|e| SigningError::BadKey(e.to_string()))?;
            Ok(pair.sign(message).as_ref().to_vec())
        }
        Alg::RS256 => {
            let pair =
                RsaKeyPair::from_pkcs8(der).map_err(|e| SigningError::BadKey(e.to_string()))?;
            let mut signature = vec![0; pair.public().modulus_len()];
            pair.sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|e| SigningError::Sign(e.to_string()))?;
            Ok(signature)
        }
    }
}

/// The public key in the form a DKIM record's `p=` wants: base64 of the SubjectPublicKeyInfo
/// for RSA, of the raw 32 bytes for Ed25519 (RFC 8463).
pub fn dkim_public_key(key: &SigningKey) -> Result<String, SigningError> {
    match key.alg {
        Alg::EdDSA => {
            let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&key.private.0)
                .map_err(|e| SigningError::BadKey(e.to_string()))?;
            Ok(STANDARD.encode(pair.public_key().as_ref()))
        }
        Alg::RS256 => {
            use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
            let private = rsa::RsaPrivateKey::from_pkcs8_der(&key.private.0)
                .map_err(|e| SigningError::BadKey(e.to_string()))?;
            let spki = private
                .to_public_key()
                .to_public_key_der()
                .map_err(|e| SigningError::BadKey(e.to_string()))?;
            Ok(STANDARD.encode(spki.as_bytes()))
        }
    }
}

/// The 32 bytes of an HMAC-SHA256 tag.
pub fn tag_bytes(tag: ring::hmac::Tag) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ED25519, RSA_PKCS1_2048_8192_SHA256};

    fn b64url(v: &Value) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(v.as_str().unwrap()).unwrap()
    }

    #[test]
    fn signatures_verify_with_the_published_jwk() {
        for alg in [Alg::EdDSA, Alg::RS256] {
            let key = generate("r1", alg, Timestamp::now()).unwrap();
            let jwk = public_jwk(&key);
            assert_eq!(jwk["kid"], json!(key.kid));
            assert_eq!(jwk["alg"], json!(alg.as_str()));
            assert!(jwk.get("d").is_none(), "no private part in the JWK");
            let signature = sign(&key, b"msg_1.1700000000.{}").unwrap();
            match alg {
                Alg::EdDSA => UnparsedPublicKey::new(&ED25519, b64url(&jwk["x"]))
                    .verify(b"msg_1.1700000000.{}", &signature)
                    .unwrap(),
                Alg::RS256 => {
                    let components = ring::signature::RsaPublicKeyComponents {
                        n: b64url(&jwk["n"]),
                        e: b64url(&jwk["e"]),
                    };
                    components
                        .verify(
                            &RSA_PKCS1_2048_8192_SHA256,
                            b"msg_1.1700000000.{}",
                            &signature,
                        )
                        .unwrap()
                }
            }
            assert!(format!("{key:?}").contains("PrivateKey(***)"));
            assert!(!dkim_public_key(&key).unwrap().is_empty());
        }
    }

    /// RFC 7638, section 3.1: the example key's thumbprint.
    #[test]
    fn thumbprints_follow_rfc_7638() {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let jwk = json!({"e": "AQAB", "kty": "RSA", "n": n});
        assert_eq!(
            thumbprint(&jwk),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
