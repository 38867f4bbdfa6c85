//! Packaging stays true to the code: the example config parses and names every `serve` flag.

use crate::helpers::binary;
use std::process::Command;

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

/// `cargo deb` (installed by the test command) packages the binary this test run built, with
/// the systemd unit, the example config as a conffile, and the docs.
#[test]
fn cargo_deb_builds_a_package_with_binary_unit_and_config() {
    let root = env!("CARGO_MANIFEST_DIR");
    let tmp = tempfile::tempdir().unwrap();
    let deb = tmp.path().join("resellerd.deb");
    let built = Command::new("cargo")
        .args([
            "deb",
            "--profile",
            "dev",
            "--no-build",
            "--fast",
            "--output",
        ])
        .arg(&deb)
        .current_dir(root)
        .output()
        .expect("run cargo deb (installed by ./scripts/test: cargo install cargo-deb)");
    assert!(
        built.status.success(),
        "cargo deb failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let listing = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    for path in [
        "./usr/bin/resellerd",
        "./etc/resellerd/resellerd.toml",
        "/systemd/system/resellerd.service",
        "./usr/share/doc/resellerd/README.md",
    ] {
        assert!(
            listing.contains(path),
            "{path} missing from the package:\n{listing}"
        );
    }
    let control = tmp.path().join("control");
    let unpacked = tmp.path().join("root");
    assert!(Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(&control)
        .status()
        .unwrap()
        .success());
    assert!(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&unpacked)
        .status()
        .unwrap()
        .success());
    let fields = std::fs::read_to_string(control.join("control")).unwrap();
    assert!(fields.contains("Package: resellerd"), "{fields}");
    assert!(
        fields.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{fields}"
    );
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert!(
        conffiles.contains("/etc/resellerd/resellerd.toml"),
        "{conffiles}"
    );
    // The packaged binary runs, and the packaged config is the documented example.
    let version = Command::new(unpacked.join("usr/bin/resellerd"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success());
    assert_eq!(
        std::fs::read(unpacked.join("etc/resellerd/resellerd.toml")).unwrap(),
        std::fs::read(format!("{root}/packaging/resellerd.example.toml")).unwrap()
    );
}

/// The scale-out recipe names only settings `serve` has, and its balancer sends traffic to the
/// ports the image listens on.
#[test]
fn the_compose_recipe_names_real_settings_and_ports() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging");
    let compose = std::fs::read_to_string(format!("{dir}/compose.yaml")).unwrap();
    let help = Command::new(binary())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let named: Vec<&str> = compose
        .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
        .filter(|w| w.starts_with("RESELLERD_"))
        .collect();
    assert!(named.len() >= 4, "{named:?}");
    for var in named {
        assert!(
            help.contains(&format!("[env: {var}=")),
            "packaging/compose.yaml sets {var}, which `serve` does not read"
        );
    }
    let dockerfile = std::fs::read_to_string(format!("{dir}/Dockerfile")).unwrap();
    let haproxy = std::fs::read_to_string(format!("{dir}/haproxy.cfg")).unwrap();
    for port in ["8080", "8443"] {
        assert!(dockerfile.contains(&format!("0.0.0.0:{port}")));
        assert!(haproxy.contains(&format!("node1:{port}")));
        assert!(haproxy.contains(&format!("node2:{port}")));
    }
    assert!(compose.contains("./haproxy.cfg:"));

    // It is YAML a compose tool reads: PyYAML (installed with moto by ./scripts/test) resolves
    // the anchors, and each node gets the shared settings and a data dir of its own.
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/target/mailtest/bin/python");
    let out = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(format!("{dir}/compose.yaml"))
        .output()
        .expect("target/mailtest/bin/python (./scripts/test makes it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let services = &doc["services"];
    for name in ["postgres", "minio", "bucket", "node1", "node2", "balancer"] {
        assert!(services[name].is_object(), "no service {name}");
    }
    for node in ["node1", "node2"] {
        let env = &services[node]["environment"];
        assert!(env["RESELLERD_DATABASE_URL"]
            .as_str()
            .unwrap()
            .contains("@postgres:5432/"));
        assert!(env["RESELLERD_BLOB_STORE"]
            .as_str()
            .unwrap()
            .starts_with("s3://sites?endpoint=http://minio:9000"));
        assert_eq!(services[node]["volumes"][0], format!("{node}:/data"));
    }
    assert_eq!(
        services["node1"]["environment"]["AWS_SECRET_ACCESS_KEY"],
        services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
    );
}
