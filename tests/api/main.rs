//! One integration test binary (one link step): a module per resource, each test starting
//! its own real server.

mod helpers;

mod audit;
mod billing;
mod durability;
mod foundation;
mod keys;
mod pebble;
mod settings;
mod users;
