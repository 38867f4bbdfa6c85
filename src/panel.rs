//! The admin panel: static HTML/CSS/ES modules from `static/`, embedded in the binary and served
//! at `/admin/` under a strict Content-Security-Policy. It talks only to the public API.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "static/"]
struct Assets;

/// No inline scripts anywhere. Inline styles are allowed only because the sandboxed `srcdoc`
/// preview of a reseller's custom page inherits this policy and should render with its own styles;
/// the panel itself uses none.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; \
                   frame-src 'self' about:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(welcome))
        .route("/admin", web::get().to(redirect))
        .route("/admin/", web::get().to(index))
        .route("/admin/{path:.*}", web::get().to(asset));
}

fn secured(mut resp: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    resp.insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    resp
}

/// `/` on the instance's own names: what this server is and what to do next (Caddy greets a new
/// install the same way). Sites never answer here: their hosts go to the edge.
async fn welcome() -> HttpResponse {
    secured(HttpResponse::Ok())
        .content_type("text/html; charset=utf-8")
        .body(WELCOME)
}

const WELCOME: &str = r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width"><title>resellerd</title>
<link rel="stylesheet" href="/admin/app.css"></head>
<body><main class="welcome">
<h1>resellerd is running</h1>
<p>This is a reseller hosting server: a reseller API for CRMs, a Netlify-compatible deploy API, and an
edge that serves every deployed site by its host name.</p>
<h2>Next steps</h2>
<ol>
<li><strong>Sign in to the <a href="/admin/">admin panel</a></strong> with the operator token. It is in the
file <code>operator-token</code> in the server's data directory (<code>./data</code> by default), printed at
the first start; <code>resellerd operator-token --data-dir DIR</code> makes a new one.</li>
<li><strong>Create a reseller</strong> in the panel (or <code>POST /api/v1/admin/resellers</code>) and give its
API key, shown once, to its CRM.</li>
</ol>
<h2>For developers</h2>
<ul>
<li>The API is under <a href="/api/v1"><code>/api/v1</code></a>; its OpenAPI document is
<a href="/api/v1/openapi.json"><code>/api/v1/openapi.json</code></a>.</li>
<li>Health: <a href="/healthz"><code>/healthz</code></a>, <a href="/readyz"><code>/readyz</code></a>.</li>
</ul>
</main></body></html>"#;

async fn redirect() -> HttpResponse {
    secured(HttpResponse::PermanentRedirect())
        .insert_header((header::LOCATION, "/admin/"))
        .finish()
}

async fn index(req: HttpRequest) -> HttpResponse {
    serve(&req, "index.html")
}

async fn asset(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    serve(&req, &path)
}

fn serve(req: &HttpRequest, path: &str) -> HttpResponse {
    let Some(file) = Assets::get(path) else {
        return secured(HttpResponse::NotFound())
            .content_type("text/plain; charset=utf-8")
            .body("not found");
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp = secured(if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    });
    resp.insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    if fresh {
        return resp.finish();
    }
    let mime = file.metadata.mimetype();
    let content_type = if mime.starts_with("text/") || mime.ends_with("javascript") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    };
    resp.content_type(content_type).body(file.data.into_owned())
}
