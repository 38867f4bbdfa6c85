//! One integration test binary (one link step): a module per resource, each test starting
//! its own real server.

mod edge;
mod foundation;
mod helpers;
mod netlify;
mod sites;
