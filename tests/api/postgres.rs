//! PostgreSQL-only behaviour (the PostgreSQL pass of `scripts/test`): TLS to the database.

use crate::helpers::{psql, serve_expecting_exit_with, TestApp};
use std::process::Command;

/// With `sslmode=require` the server speaks TLS to PostgreSQL and checks its certificate: against
/// the CA `PGSSLROOTCERT` names, and refuses one it cannot trust.
#[tokio::test]
async fn sslmode_require_speaks_verified_tls_to_postgresql() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let Some(url) = crate::helpers::database_for(&data) else {
        return; // the sled run
    };
    let admin = std::env::var("RESELLERD_TEST_DATABASE_URL").unwrap();
    // A CA, and a certificate for 127.0.0.1 it signed, for the test cluster.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let cluster = psql(&admin, "SHOW data_directory");
    let (crt, pem) = (
        format!("{cluster}/test-server.crt"),
        format!("{cluster}/test-server.key"),
    );
    std::fs::write(&crt, server.pem()).unwrap();
    std::fs::write(&pem, key.serialize_pem()).unwrap();
    for file in [&crt, &pem] {
        let owned = Command::new("chown").args(["postgres:", file]).status();
        assert!(owned.is_ok());
        std::fs::set_permissions(file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }
    // Turning TLS on leaves plain connections working (the other tests' `sslmode=prefer`).
    psql(&admin, &format!("ALTER SYSTEM SET ssl_cert_file = '{crt}'"));
    psql(&admin, &format!("ALTER SYSTEM SET ssl_key_file = '{pem}'"));
    psql(&admin, "ALTER SYSTEM SET ssl = on");
    psql(&admin, "SELECT pg_reload_conf()");
    let ca_file = tmp.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let tls_url = format!("{url}?sslmode=require");

    // A certificate the public roots do not vouch for is refused, and the server says why.
    let refused = serve_expecting_exit_with(&data, &["--database-url", &tls_url]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("PostgreSQL") && said.contains("TLS"),
        "{said}"
    );

    // Its CA named: the server runs, and its connections are encrypted.
    let app = TestApp::spawn_configured(&data, &["--database-url", &tls_url], |cmd| {
        cmd.env("PGSSLROOTCERT", &ca_file);
    });
    app.reseller("Over TLS").await;
    let db = url.rsplit('/').next().unwrap();
    let encrypted = psql(
        &admin,
        &format!(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE datname = '{db}' AND ssl"
        ),
    );
    assert!(encrypted.parse::<u32>().unwrap() > 0, "no TLS connection");
}

/// Connections the database closes while they sit idle (a restart, a terminated backend, a
/// proxy's idle timeout) are replaced, not handed out: the next calls simply work.
#[tokio::test]
async fn connections_the_database_closed_are_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let Some(url) = crate::helpers::database_for(&data) else {
        return; // the sled run
    };
    let admin = std::env::var("RESELLERD_TEST_DATABASE_URL").unwrap();
    let app = TestApp::spawn_in(&data, &[]);
    let acme = app.reseller("Acme").await;
    for i in 0..10 {
        acme.access_token(&app, &format!("u{i}@acme.test")).await;
    }
    let db = url.rsplit('/').next().unwrap();
    let killed = psql(
        &admin,
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{db}' AND state = 'idle'"
        ),
    );
    assert!(
        killed.parse::<u32>().unwrap() > 0,
        "no idle connection to close"
    );
    // A moment for the connections to see they were closed (no longer than that: the server's
    // background loops would otherwise meet the closed ones first).
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    for i in 0..20 {
        app.get("/api/v1/users?per_page=5", &acme.key)
            .await
            .expect(200);
        acme.access_token(&app, &format!("after{i}@acme.test"))
            .await;
    }
    // The connection holding the leader lock was among them: the node takes the lock again
    // (no other node wants it), so the background work goes on.
    let held = || {
        psql(
            &admin,
            &format!(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND a.datname = '{db}'"
            ),
        )
    };
    let mut retaken = false;
    for _ in 0..100 {
        if held() != "0"
            && app
                .metrics_text()
                .await
                .contains("resellerd_cluster_leader 1")
        {
            retaken = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(retaken, "the leader lock was not taken again");
    app.get("/healthz", &app.operator).await.expect(200);
}

/// A server of the version before several nodes held the database's serving lock alone (here
/// a psql session holds that lock the same way): a node of this version refuses to start beside
/// it, since that server neither tells nor hears of changes; once it is gone, the node starts.
#[tokio::test]
async fn a_node_refuses_to_share_a_database_with_an_older_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let Some(url) = crate::helpers::database_for(&data) else {
        return; // the sled run
    };
    use std::io::Write;
    let mut older = Command::new("psql")
        .arg(&url)
        .args(["-qtA", "-v", "ON_ERROR_STOP=1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run psql");
    let mut input = older.stdin.take().unwrap();
    // The older version's serving lock (its key is fixed in that version's code).
    writeln!(input, "SELECT pg_advisory_lock(8243121572419495283);").unwrap();
    input.flush().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(older.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let out = serve_expecting_exit_with(&data, &["--database-url", &url]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("an older resellerd"), "{said}");
    drop(input);
    older.wait().unwrap();
    let app = TestApp::spawn_in(&data, &["--database-url", &url]);
    app.get("/healthz", &app.operator).await.expect(200);
}

/// A change whose announcement never left (as if its node were killed between the commit and
/// the notice; here the key's hash index is emptied in the database behind the server's back)
/// reaches the server's cached credentials within 30 s.
#[tokio::test]
async fn cached_credentials_expire_even_without_an_announcement() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let Some(url) = crate::helpers::database_for(&data) else {
        return; // the sled run
    };
    let app = TestApp::spawn_in(&data, &[]);
    let acme = app.reseller("Acme").await;
    app.get("/api/v1/reseller", &acme.key).await.expect(200);
    psql(
        &url,
        "DELETE FROM kv WHERE t = (SELECT id FROM kv_trees WHERE name = 'key_by_hash'::bytea)",
    );
    let began = std::time::Instant::now();
    while app.get("/api/v1/reseller", &acme.key).await.status != 401 {
        assert!(
            began.elapsed() < std::time::Duration::from_secs(40),
            "a cached credential outlived the expiry"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    println!(
        "the unannounced change was seen after {:?}",
        began.elapsed()
    );
}

/// Anyone on the internet may ask any node for any ACME token. A token the node does not know
/// costs it no database read unless another node has said it stored a challenge: here one is in
/// the database, unannounced, and is not answered; once another node's notice arrives, it is.
#[tokio::test]
async fn unknown_acme_tokens_are_looked_up_only_while_another_node_orders() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let Some(url) = crate::helpers::database_for(&data) else {
        return; // the sled run: challenges never leave the process
    };
    let app = TestApp::spawn_in(&data, &[]);
    let stored = resellerd::store::encode(&(
        "shop.example.test".to_string(),
        "tok123.key-authorization".to_string(),
    ));
    psql(
        &url,
        &format!(
            "INSERT INTO kv (t, k, v) SELECT id, 'tok123'::bytea, decode('{}', 'hex') \
             FROM kv_trees WHERE name = 'acme_challenges'::bytea",
            hex::encode(stored)
        ),
    );
    let ask = || async {
        let r = app
            .client
            .get(app.url("/.well-known/acme-challenge/tok123"))
            .header("host", "shop.example.test")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let (status, body) = ask().await;
    assert_ne!(body, "tok123.key-authorization", "{status}: read unasked");
    psql(
        &url,
        "SELECT pg_notify('resellerd', 'another-node acme-challenges')",
    );
    let began = std::time::Instant::now();
    loop {
        let (status, body) = ask().await;
        if status == 200 && body == "tok123.key-authorization" {
            break;
        }
        assert!(
            began.elapsed() < std::time::Duration::from_secs(5),
            "another node's challenge was not answered: {status} {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
