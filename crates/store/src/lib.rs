//! resellerd's model and store: the records, their invariants and the trees that hold them (in
//! sled, embedded, or in PostgreSQL: `kv`).
//! A crate of its own so that it cannot see the layers above it (the API, the edge, auth): the
//! store speaks in domain errors (`StoreError`) and the API maps them to HTTP.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod error;
pub mod files;
pub mod kv;
pub mod model;
pub mod store;
