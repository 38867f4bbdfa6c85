//! The benchmark baseline: a bare actix-web handler with the same actix-web build and worker
//! count as resellerd, so `bench/api.sh` can print resellerd's throughput as a ratio of it.

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
    let server = HttpServer::new(|| {
        App::new().route(
            "/",
            web::get()
                .to(|| async { HttpResponse::Ok().json(serde_json::json!({"hello": "world"})) }),
        )
    })
    .workers(workers)
    .bind(addr)?;
    println!("listening http://{}", server.addrs()[0]);
    server.run().await
}
