//! The benchmark baseline: a bare actix-web handler with the same actix-web build and worker
//! count as resellerd, so `bench/api.sh` can print resellerd's throughput as a ratio of it.
//! `GET /page` answers a fixed page shaped like ten users with the same headers as
//! `GET /api/v1/users`: what sending such a reply costs before any work is done for it.
//! `POST /hook` is a webhook receiver for `bench/webhooks.sh`: it answers 204 and counts, and
//! `GET /hook` tells the count.

use actix_web::{web, App, HttpResponse, HttpServer};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let workers: usize = std::env::args()
        .nth(2)
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    let user = |i: usize| {
        serde_json::json!({"id": format!("01m8bxp66t0p7nz859z7vcm{i:03}"), "uid": null,
            "email": format!("seed{i}@bench.test"), "full_name": null, "avatar_url": null,
            "created_at": "2026-11-26T12:36:04.442Z", "token_count": 1})
    };
    let page = serde_json::to_string(&(1..=10).map(user).collect::<Vec<_>>())?;
    static HOOKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let server = HttpServer::new(move || {
        let page = page.clone();
        App::new()
            .route(
                "/hook",
                web::post().to(|_body: web::Bytes| async {
                    HOOKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    HttpResponse::NoContent().finish()
                }),
            )
            .route(
                "/hook",
                web::get().to(|| async {
                    let n = HOOKS.load(std::sync::atomic::Ordering::Relaxed);
                    HttpResponse::Ok().body(n.to_string())
                }),
            )
            .route(
                "/",
                web::get().to(|| async {
                    HttpResponse::Ok().json(serde_json::json!({"hello": "world"}))
                }),
            )
            .route(
                "/page",
                web::get().to(move || {
                    let page = page.clone();
                    async move {
                        HttpResponse::Ok()
                            .insert_header(("Link", "<http://127.0.0.1/api/v1/users?page=2&per_page=10>; rel=\"next\", <http://127.0.0.1/api/v1/users?page=6&per_page=10>; rel=\"last\""))
                            .insert_header(("X-Total-Count", "60"))
                            .content_type("application/json")
                            .body(page)
                    }
                }),
            )
    })
    .workers(workers)
    .bind(addr)?;
    println!("listening http://{}", server.addrs()[0]);
    server.run().await
}
