//! Logging: pretty lines on a terminal, JSON lines otherwise; `RUST_LOG` filters.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

pub fn init(format: Option<&str>) {
    // actix-http logs a client's malformed or oversized request head at ERROR; the client already
    // got its 4xx, so those lines are noise unless RUST_LOG asks for actix_http explicitly.
    let quiet = "actix_http::h1::dispatcher=off";
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if v.contains("actix_http") => EnvFilter::new(v),
        Ok(v) if !v.trim().is_empty() => EnvFilter::new(format!("{v},{quiet}")),
        _ => EnvFilter::new(format!("info,sled=warn,{quiet}")),
    };
    let json = match format.unwrap_or("auto") {
        "json" => true,
        "pretty" => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
