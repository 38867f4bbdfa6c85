//! Packaging stays true to the code: the example config parses and names every `serve` flag.

use crate::helpers::binary;

#[test]
fn the_example_config_parses_and_documents_every_flag() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/resellerd.example.toml"
    );
    let settings = resellerd::config::Settings::from_file(std::path::Path::new(path))
        .expect("the example parses");
    assert_eq!(settings.http_addr().unwrap().port(), 80);
    let text = std::fs::read_to_string(path).unwrap();
    let help = std::process::Command::new(binary())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let flags: Vec<&str> = help
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .filter(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .filter(|f| !["help", "config"].contains(f))
        .collect();
    assert!(flags.len() > 20, "flags found: {flags:?}");
    for flag in flags {
        let key = flag.replace('-', "_");
        let documented = text.lines().any(|l| {
            let l = l.trim_start_matches(['#', ' ']);
            l.starts_with(&format!("{key} =")) || l.starts_with(&format!("{key}="))
        });
        assert!(
            documented,
            "--{flag} is not documented in packaging/resellerd.example.toml"
        );
    }
}

#[test]
fn the_systemd_unit_is_hardened() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/resellerd.service"
    ))
    .unwrap();
    for line in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "StateDirectory=resellerd",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.lines().any(|l| l.trim() == line), "missing {line}");
    }
}
