//! Upgrades: a data dir written by data format 1 (records laid out as this file freezes them,
//! before the data dir carried a format marker) opens and reads; a data dir marked with a newer
//! format is refused with a clear message instead of being misread.

use crate::helpers::{binary, serve_expecting_exit, TestApp};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Record schema version 1, as `codec` writes it: a version byte, then bincode.
fn v1<T: Serialize>(record: &T) -> Vec<u8> {
    let mut out = vec![1u8];
    out.extend(bincode::serialize(record).unwrap());
    out
}

// Format 1 record layouts, frozen here on purpose: if a change to the live types breaks
// reading them, this test fails and a migration is due.
#[derive(Serialize)]
struct ResellerV1 {
    id: String,
    name: String,
    email: String,
    preview_domain: Option<String>,
    notification_email: Option<String>,
    allowed_ips: Vec<String>,
    suspended: bool,
    created_at: i64,
    updated_at: i64,
}

#[derive(Serialize)]
enum PermissionV1 {
    All,
}

#[derive(Serialize)]
struct ApiKeyV1 {
    id: String,
    reseller_id: String,
    name: String,
    hash: [u8; 32],
    masked: String,
    permissions: Vec<PermissionV1>,
    allowed_ips: Vec<String>,
    created_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
}

#[derive(Serialize)]
struct UserV1 {
    id: String,
    reseller_id: String,
    email: String,
    uid: Option<String>,
    created_at: i64,
}

#[derive(Serialize)]
struct AccessTokenV1 {
    id: String,
    user_id: String,
    reseller_id: String,
    hash: [u8; 32],
    created_at: i64,
}

#[derive(Serialize, Clone)]
struct AuditEntryV1 {
    id: String,
    at: i64,
    actor_kind: String,
    actor_id: String,
    reseller_id: Option<String>,
    method: String,
    route: String,
    path: String,
    status: u16,
    ip: Option<String>,
}

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A well-formed secret (prefix, 40 random characters and the 6-character checksum).
fn secret_with(prefix: &str) -> String {
    let body = format!("{prefix}{}", "A1b2C3d4".repeat(5));
    let digest = Sha256::digest(format!("resellerd:{body}").as_bytes());
    let sum: String = digest
        .iter()
        .take(6)
        .map(|b| BASE62[*b as usize % BASE62.len()] as char)
        .collect();
    format!("{body}{sum}")
}

/// A new data dir on sled, the engine of every data dir before redb.
fn sled_data_dir(dir: &Path) -> resellerd::kv::Db {
    use resellerd::store::Engine;
    Engine::open(dir, 8 << 20, Engine::Sled).unwrap().0
}

/// Writes a format-1 data dir: one reseller with one key and one user with one token.
fn write_fixture(dir: &Path, secret: &str, token: &str) {
    let db = sled_data_dir(dir);
    let t = |name: &str| db.open_tree(name).unwrap();
    let now = 1_700_000_000_000i64;
    let (rid, kid, uid) = ("01HRESELLERV1", "01HKEYV1", "01HUSERV1");
    let reseller = ResellerV1 {
        id: rid.into(),
        name: "Legacy Hosting".into(),
        email: "ops@legacy.test".into(),
        preview_domain: Some("sites.legacy.test".into()),
        notification_email: None,
        allowed_ips: vec![],
        suspended: false,
        created_at: now,
        updated_at: now,
    };
    t("resellers").insert(rid, v1(&reseller)).unwrap();
    t("reseller_by_preview")
        .insert("sites.legacy.test", rid)
        .unwrap();
    let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    let key = ApiKeyV1 {
        id: kid.into(),
        reseller_id: rid.into(),
        name: "crm".into(),
        hash,
        masked: "sk_org_…xxxx".into(),
        permissions: vec![PermissionV1::All],
        allowed_ips: vec![],
        created_at: now,
        expires_at: None,
        last_used_at: None,
    };
    t("keys").insert(kid, v1(&key)).unwrap();
    t("key_by_hash").insert(&hash[..], kid).unwrap();
    t("reseller_keys")
        .insert(rid, v1(&vec![kid.to_string()]))
        .unwrap();
    let user = UserV1 {
        id: uid.into(),
        reseller_id: rid.into(),
        email: "client@legacy.test".into(),
        uid: Some("crm-42".into()),
        created_at: now,
    };
    t("users").insert(uid, v1(&user)).unwrap();
    t("user_by_email")
        .insert(format!("{rid}/client@legacy.test"), uid)
        .unwrap();
    t("users_by_reseller")
        .insert(format!("{rid}/{uid}"), &[])
        .unwrap();
    t("counters")
        .insert(format!("users/{rid}"), &1i64.to_be_bytes())
        .unwrap();
    let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let tid = "01HTOKENV1";
    let access = AccessTokenV1 {
        id: tid.into(),
        user_id: uid.into(),
        reseller_id: rid.into(),
        hash,
        created_at: now,
    };
    t("tokens").insert(tid, v1(&access)).unwrap();
    t("token_by_hash").insert(&hash[..], tid).unwrap();
    t("tokens_by_user")
        .insert(format!("{uid}/{tid}"), &[])
        .unwrap();
    t("counters")
        .insert(format!("tokens/{uid}"), &1i64.to_be_bytes())
        .unwrap();
    // Format 1 wrote one audit record per entry, everyone's and per reseller.
    let entry = AuditEntryV1 {
        id: "01HAUDITV1".into(),
        at: now,
        actor_kind: "api_key".into(),
        actor_id: kid.into(),
        reseller_id: Some(rid.into()),
        method: "POST".into(),
        route: "/api/v1/access_tokens".into(),
        path: "/api/v1/access_tokens".into(),
        status: 201,
        ip: Some("192.0.2.7".into()),
    };
    t("audit").insert("01HAUDITV1", v1(&entry)).unwrap();
    t("audit_by_reseller")
        .insert(format!("{rid}/01HAUDITV1"), v1(&entry))
        .unwrap();
    // Formats 2 to 5 wrote batches of entries, everyone's and per reseller; a deleted
    // reseller's view was removed, while everyone's kept its entries.
    let batched = AuditEntryV1 {
        id: "01HAUDITV2".into(),
        ip: Some("198.51.100.1".into()),
        ..entry
    };
    let gone = AuditEntryV1 {
        id: "01HAUDITV3".into(),
        reseller_id: Some("r-deleted".into()),
        ip: Some("198.51.100.2".into()),
        ..batched.clone()
    };
    let seq = 7u64.to_be_bytes();
    t("audit_batches")
        .insert(seq, v1(&vec![&batched, &gone]))
        .unwrap();
    t("audit_batches_by_reseller")
        .insert(
            [format!("{rid}/").as_bytes(), &seq].concat(),
            v1(&vec![&batched]),
        )
        .unwrap();
    db.flush().unwrap();
}

#[tokio::test]
async fn a_format_1_data_dir_opens_and_reads() {
    if crate::helpers::on_postgres() {
        return; // a fixture of the embedded database's files: nothing of it runs on PostgreSQL
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let secret = secret_with("sk_org_");
    let token = secret_with("rt_");
    write_fixture(&dir, &secret, &token);
    let out = std::process::Command::new(binary())
        .args(["operator-token", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let operator = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let app = TestApp::spawn_on(&dir, &operator);
    let me = app.get("/api/v1/reseller", &secret).await.expect(200);
    assert_eq!(me.body["name"], "Legacy Hosting");
    assert_eq!(me.body["preview_domain"], "sites.legacy.test");
    let users = app.get("/api/v1/users", &secret).await.expect(200);
    assert_eq!(users.body[0]["email"], "client@legacy.test");
    assert_eq!(users.body[0]["uid"], "crm-42");
    assert_eq!(users.header("x-total-count"), Some("1"));
    assert_eq!(users.body[0]["token_count"], 1);
    // The uid index did not exist in format 1; opening the dir built it.
    let by_uid = app
        .get("/api/v1/users?uid=crm-42", &secret)
        .await
        .expect(200);
    assert_eq!(by_uid.body[0]["id"], "01HUSERV1", "{}", by_uid.text);
    let me = app.get("/api/v1/user", &token).await.expect(200);
    assert_eq!(me.body["email"], "client@legacy.test");
    // Format 5: the token's list entry was built from the old index; the old token never
    // expires, and the reseller reads with the token defaults.
    let tokens = app
        .get("/api/v1/users/01HUSERV1/access_tokens", &secret)
        .await
        .expect(200);
    assert_eq!(tokens.body[0]["id"], "01HTOKENV1", "{}", tokens.text);
    assert_eq!(tokens.body[0]["expires_at"], serde_json::Value::Null);
    let reseller = app.get("/api/v1/reseller", &secret).await.expect(200);
    assert_eq!(reseller.body["access_token_ttl"], 90 * 86_400);
    assert_eq!(reseller.body["max_tokens_per_user"], 100);
    // Writes work on the upgraded dir and keep the old uniqueness rules.
    let r = app
        .post(
            "/api/v1/access_tokens",
            &secret,
            serde_json::json!({"user": {"email": "CLIENT@legacy.test"}}),
        )
        .await
        .expect(201);
    assert_eq!(r.body["user_id"], "01HUSERV1");
    // That write moved the user into its format-2 index entry; it reads the same.
    let user = app
        .get("/api/v1/users/01HUSERV1", &secret)
        .await
        .expect(200);
    assert_eq!(user.body["uid"], "crm-42");
    assert_eq!(user.body["token_count"], 2);
    app.get("/api/v1/user", &token).await.expect(200);
    app.delete("/api/v1/access_tokens/01HTOKENV1", &secret)
        .await
        .expect(204);
    app.get("/api/v1/user", &token)
        .await
        .expect_error(401, "unauthorized");
    let users = app.get("/api/v1/users", &secret).await.expect(200);
    assert_eq!(users.body[0]["token_count"], 1, "{}", users.text);
    assert_eq!(users.header("x-total-count"), Some("1"));
    let keys = app.get("/api/v1/keys", &secret).await.expect(200);
    assert_eq!(keys.body.as_array().unwrap().len(), 1);
    // The old audit entries are listed after the new ones, in both views, oldest last.
    let log = app.get("/api/v1/audit", &secret).await.expect(200);
    assert_eq!(log.header("x-total-count"), Some("4"));
    let ips: Vec<&str> = log
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ip"].as_str().unwrap())
        .collect();
    assert_eq!(
        ips,
        ["127.0.0.1", "127.0.0.1", "198.51.100.1", "192.0.2.7"],
        "{}",
        log.text
    );
    let all = app
        .get("/api/v1/admin/audit", &app.operator)
        .await
        .expect(200);
    assert_eq!(all.body.as_array().unwrap().len(), 5, "{}", all.text);
    assert_eq!(all.header("x-total-count"), Some("5"));
    assert_eq!(all.body[2]["id"], "01HAUDITV3");
    assert_eq!(all.body[2]["reseller_id"], "r-deleted");
    assert_eq!(all.body[4]["id"], "01HAUDITV1");
}

#[tokio::test]
async fn a_data_dir_from_a_newer_format_is_refused() {
    if crate::helpers::on_postgres() {
        return; // the marker of the embedded database's files: nothing of it runs on PostgreSQL
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    {
        let db = sled_data_dir(&dir);
        db.open_tree("meta")
            .unwrap()
            .insert("format", &99u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let out = serve_expecting_exit(&dir);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("newer resellerd"), "{err}");
}

/// A format-2 dir (users in their index entries, no uid index) gets its uid index on opening.
#[tokio::test]
async fn a_format_2_data_dir_gets_its_uid_index() {
    if crate::helpers::on_postgres() {
        return; // it edits the embedded database's files: nothing of it runs on PostgreSQL
    }
    let mut app = TestApp::spawn().await;
    let acme = app.reseller("Acme").await;
    for (email, uid) in [("a@x.test", "crm/1"), ("b@x.test", "crm/2")] {
        app.post(
            "/api/v1/access_tokens",
            &acme.key,
            serde_json::json!({"user": {"email": email, "uid": uid}}),
        )
        .await
        .expect(201);
    }
    app.kill9();
    {
        let db = crate::helpers::open_embedded(&app.data_dir);
        db.drop_tree("users_by_uid").unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("format", &2u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let app = app.restart().await;
    let found = app
        .get("/api/v1/users?uid=crm%2F2", &acme.key)
        .await
        .expect(200);
    assert_eq!(found.body.as_array().unwrap().len(), 1, "{}", found.text);
    assert_eq!(found.body[0]["email"], "b@x.test");
}

/// A data dir made by the last release on the vendored redb 2.6.4 (data format 8: a reseller,
/// three clients, a deployed site; `tests/fixtures/redb-fork-data-format-8.tar.gz`) opens on
/// upstream redb 5 with every record, serves its site, takes writes and opens again.
#[tokio::test]
async fn a_data_dir_made_on_the_redb_fork_opens_on_upstream_redb() {
    if crate::helpers::on_postgres() {
        return; // a fixture of the embedded database's files: nothing of it runs on PostgreSQL
    }
    let tmp = tempfile::tempdir().unwrap();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/redb-fork-data-format-8.tar.gz");
    let unpacked = std::process::Command::new("tar")
        .arg("xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(unpacked.success());
    let dir = tmp.path().join("data");
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .unwrap()
            .trim()
            .to_string()
    };
    let (operator, key, token) = (read("operator-token"), read("key.txt"), read("tok.txt"));
    let app = TestApp::spawn_on(&dir, &operator);
    let me = app.get("/api/v1/reseller", &key).await.expect(200);
    assert_eq!(me.body["name"], "Fork Era");
    let users = app.get("/api/v1/users", &key).await.expect(200);
    assert_eq!(users.body.as_array().unwrap().len(), 3);
    app.get("/api/v1/user", &token).await.expect(200);
    let page = crate::edge::get(&app, "fork-site.localhost", "/")
        .await
        .expect(200);
    assert_eq!(page.text, "<h1>made on the fork</h1>");
    app.post(
        "/api/v1/access_tokens",
        &key,
        serde_json::json!({"user": {"email": "after@fork.test"}}),
    )
    .await
    .expect(201);
    let app = app.restart().await;
    let users = app.get("/api/v1/users", &key).await.expect(200);
    assert_eq!(users.body.as_array().unwrap().len(), 4);
}

/// A data dir from before precompressed variants (format 8) gets them for every published
/// deploy: the upgrade queues them.
#[tokio::test]
async fn a_format_8_data_dir_gets_its_sites_compressed() {
    if crate::helpers::on_postgres() {
        return; // it edits the embedded database's files: nothing of it runs on PostgreSQL
    }
    let mut app = TestApp::spawn().await;
    let a = app.reseller("Old Sites").await;
    let ann = a.access_token(&app, "ann@old.test").await;
    let page = "<p>an old page, long enough to compress</p>\n".repeat(40);
    crate::sites::publish_site(
        &app,
        &ann.token,
        "old-site",
        &[("index.html", page.as_bytes())],
    )
    .await;
    assert!(
        crate::edge::brotli_variant(&app, "old-site.localhost", "/")
            .await
            .is_some(),
        "compressed after the deploy"
    );
    app.kill9();
    {
        // As format 8 left it: no variants recorded, nothing queued.
        let db = crate::helpers::open_embedded(&app.data_dir);
        db.drop_tree("encodings").unwrap();
        db.drop_tree("encode_queue").unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("format", &8u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let app = app.restart().await;
    assert!(
        crate::edge::brotli_variant(&app, "old-site.localhost", "/")
            .await
            .is_some(),
        "compressed after the upgrade"
    );
}
