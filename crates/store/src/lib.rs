//! resellerd's model and store: the records, their invariants and the sled trees that hold them.
//! A crate of its own so that it cannot see the layers above it (the API, the edge, auth): the
//! store speaks in domain errors (`StoreError`) and the API maps them to HTTP.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod error;
pub mod files;
pub mod model;
pub mod store;
