//! The one encode/decode pair for stored records: a schema version byte, then bincode.
//! Keeping it in one file keeps a switch of format (e.g. to postcard) a one-file change.
//!
//! The version byte's low seven bits are the record type's layout version; its high bit
//! (`COMPACT`, written since data format 8) says the body is bincode with variable-length
//! integers, where every string's and list's length takes one byte instead of eight. Records
//! written before keep the fixed-width body and are read as they are: nothing is rewritten.

use crate::error::{StoreError, StoreResult};
use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The version written today. A record with an older version is migrated in `decode`.
pub const VERSION: u8 = 1;

/// The version byte's flag for a body in the compact encoding.
const COMPACT: u8 = 0x80;

/// The compact encoding: varints, little-endian, nothing after the value.
fn compact() -> impl Options {
    bincode::DefaultOptions::new()
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    encode_as(VERSION, value)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    match split(bytes)? {
        (VERSION, compact, body) => body_of(compact, body),
        (v, ..) => Err(StoreError::internal(format!(
            "record has unknown schema version {v}"
        ))),
    }
}

/// `encode` for a record type whose layout changed since version 1: written with `version`.
pub fn encode_as<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let mut out = vec![version | COMPACT];
    // Serialising plain structs into a Vec cannot fail; a failure would be a programming error
    // in a record type.
    compact()
        .serialize_into(&mut out, value)
        .unwrap_or_else(|e| panic!("record encoding failed: {e}"));
    out
}

/// `decode` for a record type written today with `version` (see `encode_as`): a record still in
/// the version-1 layout `Old` is read as that and converted.
pub fn decode_as<T: DeserializeOwned, Old: DeserializeOwned + Into<T>>(
    version: u8,
    bytes: &[u8],
) -> StoreResult<T> {
    match split(bytes)? {
        (v, compact, body) if v == version => body_of(compact, body),
        (VERSION, compact, body) => body_of::<Old>(compact, body).map(Into::into),
        (v, ..) => Err(StoreError::internal(format!(
            "record has unknown schema version {v}"
        ))),
    }
}

/// A record's layout version (see `encode_as`), for a record type with more than two layouts.
pub fn version_of(bytes: &[u8]) -> StoreResult<u8> {
    split(bytes).map(|(v, ..)| v)
}

/// A record's layout version, whether its body is compact, and the body.
fn split(bytes: &[u8]) -> StoreResult<(u8, bool, &[u8])> {
    match bytes.split_first() {
        Some((v, body)) => Ok((v & !COMPACT, v & COMPACT != 0, body)),
        None => Err(StoreError::internal("empty record")),
    }
}

fn body_of<T: DeserializeOwned>(compact_body: bool, body: &[u8]) -> StoreResult<T> {
    let decoded = match compact_body {
        true => compact().deserialize(body),
        false => bincode::deserialize(body),
    };
    decoded.map_err(|e| StoreError::internal(format!("corrupt record: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Record {
        name: String,
        tags: Vec<String>,
        at: i64,
        note: Option<String>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct RecordV2 {
        name: String,
        tags: Vec<String>,
        at: i64,
        note: Option<String>,
        added: u32,
    }

    impl From<Record> for RecordV2 {
        fn from(r: Record) -> RecordV2 {
            RecordV2 {
                name: r.name,
                tags: r.tags,
                at: r.at,
                note: r.note,
                added: 7,
            }
        }
    }

    fn sample() -> Record {
        Record {
            name: "alice@example.com".into(),
            tags: vec!["a".into(), "bc".into()],
            at: 1_796_000_000_000,
            note: None,
        }
    }

    /// A record as data formats 1 to 7 wrote it: the version byte, then fixed-width bincode.
    fn written_before(version: u8, value: &impl Serialize) -> Vec<u8> {
        let mut out = vec![version];
        bincode::serialize_into(&mut out, value).unwrap();
        out
    }

    #[test]
    fn compact_records_are_smaller_and_read_back() {
        let new = encode(&sample());
        let old = written_before(VERSION, &sample());
        assert_eq!(new[0], VERSION | COMPACT);
        assert!(new.len() + 20 < old.len(), "{} vs {}", new.len(), old.len());
        assert_eq!(decode::<Record>(&new).unwrap(), sample());
    }

    #[test]
    fn records_written_before_still_read() {
        let old = written_before(VERSION, &sample());
        assert_eq!(decode::<Record>(&old).unwrap(), sample());
        // A version-1 record of a type now at version 2, in either encoding, is converted.
        for raw in [old, encode(&sample())] {
            let r = decode_as::<RecordV2, Record>(2, &raw).unwrap();
            assert_eq!(r.added, 7);
            assert_eq!(r.name, sample().name);
        }
        let v2 = RecordV2::from(sample());
        for raw in [written_before(2, &v2), encode_as(2, &v2)] {
            assert_eq!(decode_as::<RecordV2, Record>(2, &raw).unwrap(), v2);
        }
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        assert!(decode::<Record>(&[]).is_err());
        assert!(decode::<Record>(&[3, 0, 0]).is_err());
        assert!(decode::<Record>(&[VERSION | COMPACT, 200]).is_err());
        let mut trailing = encode(&sample());
        trailing.push(0);
        assert!(decode::<Record>(&trailing).is_err());
        assert!(decode_as::<RecordV2, Record>(2, &[5 | COMPACT]).is_err());
    }
}
