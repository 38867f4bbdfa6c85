//! Pebble (Let's Encrypt's ACME test server) and pebble-challtestsrv (its DNS server) on
//! loopback ports, for certificate and DNS verification tests. Both are killed on drop.

#![allow(dead_code)] // shared by several test modules

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what} did not start listening on {port}");
}

/// A DNS server whose records tests set over HTTP. Every A query it cannot answer gets 127.0.0.1.
pub struct ChallTestSrv {
    pub dns_port: u16,
    pub management: String,
    child: Child,
}

impl ChallTestSrv {
    pub fn start() -> ChallTestSrv {
        let (dns_port, mgmt_port) = (free_port(), free_port());
        let child = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-management", &format!("127.0.0.1:{mgmt_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv (Debian package pebble; ./scripts/test installs it)");
        wait_for_port(mgmt_port, "pebble-challtestsrv");
        ChallTestSrv {
            dns_port,
            management: format!("http://127.0.0.1:{mgmt_port}"),
            child,
        }
    }

    pub fn dns_server(&self) -> String {
        format!("127.0.0.1:{}", self.dns_port)
    }

    pub async fn set_txt(&self, host: &str, value: &str) {
        let body = serde_json::json!({"host": format!("{host}."), "value": value});
        let r = reqwest::Client::new()
            .post(format!("{}/set-txt", self.management))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "set-txt failed: {}", r.status());
    }

    pub async fn clear_txt(&self, host: &str) {
        let body = serde_json::json!({"host": format!("{host}.")});
        let r = reqwest::Client::new()
            .post(format!("{}/clear-txt", self.management))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "clear-txt failed: {}", r.status());
    }
}

impl Drop for ChallTestSrv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An ACME directory. Its own HTTPS certificate is signed by a CA made here (`ca_pem`), which
/// resellerd is told to trust with `--acme-ca-bundle`.
pub struct Pebble {
    pub port: u16,
    pub management_port: u16,
    pub ca_pem: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Pebble {
    /// Prepares the certificates and ports; `start` runs it once the HTTP-01 port is known.
    pub fn prepare() -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap()
                .signed_by(&leaf_key, &ca, &ca_key)
                .unwrap();
        let ca_pem = dir.path().join("ca.pem");
        std::fs::write(&ca_pem, ca.pem()).unwrap();
        std::fs::write(dir.path().join("pebble.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.path().join("pebble.key"), leaf_key.serialize_pem()).unwrap();
        Pebble {
            port: free_port(),
            management_port: free_port(),
            ca_pem,
            dir,
            child: None,
        }
    }

    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// Starts pebble validating HTTP-01 on `http_port` and resolving names through `dns`.
    pub fn start(&mut self, http_port: u16, dns: &ChallTestSrv) {
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{}", self.port),
            "managementListenAddress": format!("127.0.0.1:{}", self.management_port),
            "certificate": self.dir.path().join("pebble.pem"),
            "privateKey": self.dir.path().join("pebble.key"),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        let config_path = self.dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &dns.dns_server()])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble (Debian package pebble; ./scripts/test installs it)");
        self.child = Some(child);
        wait_for_port(self.port, "pebble");
    }

    /// The root that signs the certificates pebble issues.
    pub async fn issuing_root(&self) -> String {
        let ca = std::fs::read(&self.ca_pem).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .build()
            .unwrap();
        let url = format!("https://127.0.0.1:{}/roots/0", self.management_port);
        client.get(url).send().await.unwrap().text().await.unwrap()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
