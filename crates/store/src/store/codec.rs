//! The one encode/decode pair for stored records: a schema version byte, then bincode.
//! Keeping it in one file keeps a switch of format (e.g. to postcard) a one-file change.

use crate::error::{StoreError, StoreResult};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The version written today. A record with an older version is migrated in `decode`.
pub const VERSION: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![VERSION];
    // Serialising plain structs into a Vec cannot fail; a failure would be a programming error
    // in a record type (e.g. a map with non-string keys is still fine for bincode).
    bincode::serialize_into(&mut out, value)
        .unwrap_or_else(|e| panic!("record encoding failed: {e}"));
    out
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    match bytes.split_first() {
        Some((&VERSION, body)) => bincode::deserialize(body)
            .map_err(|e| StoreError::internal(format!("corrupt record: {e}"))),
        Some((v, _)) => Err(StoreError::internal(format!(
            "record has unknown schema version {v}"
        ))),
        None => Err(StoreError::internal("empty record")),
    }
}

/// `encode` for a record type whose layout changed since version 1: written with `version`.
pub fn encode_as<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let mut out = encode(value);
    out[0] = version;
    out
}

/// `decode` for a record type written today with `version` (see `encode_as`): a record still in
/// the version-1 layout `Old` is read as that and converted.
pub fn decode_as<T: DeserializeOwned, Old: DeserializeOwned + Into<T>>(
    version: u8,
    bytes: &[u8],
) -> StoreResult<T> {
    match bytes.split_first() {
        Some((v, body)) if *v == version => bincode::deserialize(body)
            .map_err(|e| StoreError::internal(format!("corrupt record: {e}"))),
        Some((&VERSION, _)) => decode::<Old>(bytes).map(Into::into),
        Some((v, _)) => Err(StoreError::internal(format!(
            "record has unknown schema version {v}"
        ))),
        None => Err(StoreError::internal("empty record")),
    }
}
