//! One integration test binary (one link step): a module per resource, each test starting
//! its own real server.

// Tests observe the system clock from outside; the one-clock rule (clippy.toml) is for the server.
#![allow(clippy::disallowed_methods)]

mod helpers;
mod http2;
mod pebble;

mod audit;
mod backup;
mod billing;
mod blob_store;
mod builds;
mod certificates;
mod cluster;
mod doctor;
mod domains;
mod durability;
mod edge;
mod foundation;
mod fuzz;
mod isolation;
mod keys;
mod limits;
mod logs;
mod mail;
mod migrate;
mod names;
mod netlify;
mod openapi;
mod packaging;
mod paging;
mod panel;
mod plans;
mod postgres;
mod proxy;
mod ratelimit;
mod readme;
mod refusals;
mod registration;
mod security;
mod settings;
mod signing;
mod sites;
mod storage;
mod suspension;
mod tokens;
mod upgrade;
mod usage;
mod users;
mod webhooks;
