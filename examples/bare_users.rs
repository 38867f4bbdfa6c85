//! The same-work baseline for `GET /api/v1/users?per_page=10` (`bench/api.sh`): a minimal
//! actix-web handler with no middleware that does what the endpoint must do and nothing else.
//! It resolves the Bearer token by its SHA-256 in a redb table (redb, raw, as the store's default
//! engine), reads ten user records of that reseller with one range scan, and renders them as
//! JSON with `Link` and `X-Total-Count`.
//!
//! Usage: bare_users ADDR WORKERS DATA_DIR; prints `listening http://…` and, on the next line,
//! `token <secret>` for the load generator.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Serialize, Deserialize)]
struct User {
    id: String,
    uid: Option<String>,
    email: String,
    full_name: Option<String>,
    avatar_url: Option<String>,
    created_at: String,
    token_count: u64,
}

const TOKEN_BY_HASH: TableDefinition<&[u8], &[u8]> = TableDefinition::new("token_by_hash");
const USERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("users");

struct Db(redb::Database);

/// The reseller the token with SHA-256 `hash` belongs to, and the first ten of its users.
fn lookup(db: &redb::Database, hash: &[u8]) -> Result<Option<Vec<User>>, redb::Error> {
    let tx = db.begin_read()?;
    let Some(reseller) = tx
        .open_table(TOKEN_BY_HASH)?
        .get(hash)?
        .map(|v| v.value().to_vec())
    else {
        return Ok(None);
    };
    let mut prefix = reseller;
    prefix.push(b'/');
    let mut end = prefix.clone();
    *end.last_mut().unwrap_or(&mut 0) += 1;
    let users = tx.open_table(USERS)?;
    let page = users
        .range(&prefix[..]..&end[..])?
        .take(10)
        .filter_map(|kv| {
            kv.ok()
                .and_then(|(_, v)| bincode::deserialize(v.value()).ok())
        })
        .collect();
    Ok(Some(page))
}

async fn list_users(req: HttpRequest, db: web::Data<Db>) -> HttpResponse {
    let Some(token) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return HttpResponse::Unauthorized().finish();
    };
    let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let Ok(Some(page)) = lookup(&db.0, &hash) else {
        return HttpResponse::Unauthorized().finish();
    };
    let host = req.connection_info().host().to_string();
    HttpResponse::Ok()
        .insert_header((
            "Link",
            format!(
                "<http://{host}/api/v1/users?cursor=AQEwMW04YnhwNjZ0MHA3bno4NTl6N3ZjbTAxMF9fX19fX19fX18&per_page=10>; rel=\"next\", \
                 <http://{host}/api/v1/users?cursor=AQBfX19fX19fX19fX19fX19f&per_page=10>; rel=\"first\", \
                 <http://{host}/api/v1/users?cursor=AQNfX19fX19fX19fX19fX19f&per_page=10>; rel=\"last\""
            ),
        ))
        .insert_header(("X-Total-Count", "50"))
        .json(page)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let workers: usize = args.next().and_then(|w| w.parse().ok()).unwrap_or(2);
    let dir = args.next().unwrap_or_else(|| "bare-users-data".into());
    std::fs::create_dir_all(&dir)?;
    let db = redb::Database::builder()
        .set_cache_size(64 << 20)
        .create(std::path::Path::new(&dir).join("store.redb"))
        .map_err(std::io::Error::other)?;
    let token = "rt_bareUsersBaselineToken0000000000000000000000";
    let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let seed = || -> Result<(), redb::Error> {
        let tx = db.begin_write()?;
        tx.open_table(TOKEN_BY_HASH)?
            .insert(&hash[..], &b"01RESELLER"[..])?;
        {
            let mut users = tx.open_table(USERS)?;
            for i in 0..50 {
                let user = User {
                    id: format!("01m8bxp66t0p7nz859z7vcm{i:03}"),
                    uid: None,
                    email: format!("seed{i}@bench.test"),
                    full_name: None,
                    avatar_url: None,
                    created_at: "2026-11-26T12:36:04.442Z".into(),
                    token_count: 1,
                };
                let value = bincode::serialize(&user).map_err(std::io::Error::other)?;
                let key = format!("01RESELLER/{}", user.id);
                users.insert(key.as_bytes(), &value[..])?;
            }
        }
        tx.commit()?;
        Ok(())
    };
    seed().map_err(std::io::Error::other)?;
    let data = web::Data::new(Db(db));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/api/v1/users", web::get().to(list_users))
    })
    .workers(workers)
    .bind(addr)?;
    println!("listening http://{}", server.addrs()[0]);
    println!("token {token}");
    server.run().await
}
