//! Logging: pretty lines on a terminal, JSON lines otherwise; `RUST_LOG` filters.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

pub fn init(format: Option<&str>) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sled=warn"));
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
