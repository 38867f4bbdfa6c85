//! Bench seeding (`bench/sites.sh`): stores N issued certificates (ECDSA P-256, as an ACME CA
//! issues them; self-signed here) for `d{i}.certs.bench.test` in a stopped server's data dir, so
//! the next start loads them as it loads certificates ACME issued.
//!
//! Usage: cargo run --release --example seed_certs -- DATA_DIR N

use resellerd::store::certs::{CertRecord, CertState};
use resellerd::store::Store;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(n)) = (
        args.get(1),
        args.get(2).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        return Err("usage: seed_certs DATA_DIR N".into());
    };
    let store = Store::open(std::path::Path::new(dir)).map_err(|e| e.to_string())?;
    let now = resellerd::model::Timestamp::now();
    for i in 0..n {
        let domain = format!("d{i}.certs.bench.test");
        let made =
            rcgen::generate_simple_self_signed(vec![domain.clone()]).map_err(|e| e.to_string())?;
        store
            .certs()
            .put(&CertRecord {
                domain,
                site_id: String::new(),
                reseller_id: String::new(),
                state: CertState::Issued,
                error: None,
                cert_pem: made.cert.pem(),
                key_pem: made.key_pair.serialize_pem(),
                issuer: Some("bench".into()),
                not_after: None,
                renewals: 0,
                created_at: now,
                updated_at: now,
            })
            .map_err(|e| e.to_string())?;
    }
    store.flush_blocking().map_err(|e| e.to_string())?;
    println!("stored {n} certificates");
    Ok(())
}
