//! Usage for invoicing: `GET /usage?month=YYYY-MM` and `GET /users/{id}/usage?month=`, as JSON,
//! or CSV with `Accept: text/csv`. One row per user and site.

use crate::auth::guard::{Key, UsersRead};
use crate::error::{ApiError, ApiResult};
use crate::model::Timestamp;
use crate::store::usage::{month_of, Row};
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

super::endpoints! { ENDPOINTS:
    "/usage" {
        get usage;
    }
    "/users/{id}/usage" {
        get user_usage;
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct MonthQuery {
    /// `YYYY-MM` (UTC); the current month when left out.
    month: Option<String>,
}

fn month(q: &MonthQuery) -> ApiResult<String> {
    match &q.month {
        None => Ok(month_of(Timestamp::now())),
        Some(m) => {
            let b = m.as_bytes();
            let ok = b.len() == 7
                && b[4] == b'-'
                && b.iter()
                    .enumerate()
                    .all(|(i, c)| i == 4 || c.is_ascii_digit())
                && matches!(
                    &m[5..],
                    "01" | "02"
                        | "03"
                        | "04"
                        | "05"
                        | "06"
                        | "07"
                        | "08"
                        | "09"
                        | "10"
                        | "11"
                        | "12"
                );
            if ok {
                Ok(m.clone())
            } else {
                Err(ApiError::invalid("month is YYYY-MM, e.g. 2026-11"))
            }
        }
    }
}

/// JSON, or CSV when the client asks for it.
fn answer(req: &HttpRequest, rows: Vec<Row>) -> HttpResponse {
    let wants_csv = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    if !wants_csv {
        return HttpResponse::Ok().json(rows);
    }
    let mut csv =
        String::from("user_id,site_id,site_name,requests,bytes_sent,submissions,deploys,storage_bytes,user_storage_bytes,build_seconds\r\n");
    for r in &rows {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\r\n",
            cell(&r.user_id),
            cell(&r.site_id),
            cell(&r.site_name),
            r.requests,
            r.bytes_sent,
            r.submissions,
            r.deploys,
            r.storage_bytes,
            r.user_storage_bytes,
            r.build_seconds
        ));
    }
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .body(csv)
}

/// A CSV cell: quoted, quotes doubled, and a leading formula character defused.
fn cell(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    format!("\"{}\"", value.replace('"', "\"\""))
}

#[utoipa::path(
get, path = "/api/v1/usage", tag = "usage",
    params(MonthQuery),
    responses((status = 200, description = "Every site of the reseller with its month's requests, bytes sent (with the daily rows they add up from), form submissions, deploys and storage; CSV with `Accept: text/csv`", body = Vec<Row>))
)]
async fn usage(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Key<UsersRead>,
    q: web::Query<MonthQuery>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    let month = month(&q)?;
    let rows = state.store.usage().month(&reseller.id, &month, None)?;
    Ok(answer(&req, rows))
}

#[utoipa::path(
get, path = "/api/v1/users/{id}/usage", tag = "usage",
    params(("id" = String, Path, description = "User id"), MonthQuery),
    responses((status = 200, description = "The user's sites with their month's usage", body = Vec<Row>))
)]
async fn user_usage(
    req: HttpRequest,
    state: web::Data<AppState>,
    who: Key<UsersRead>,
    id: web::Path<String>,
    q: web::Query<MonthQuery>,
) -> ApiResult<HttpResponse> {
    let reseller = who.reseller();
    state.store.users().get(&reseller.id, &id)?;
    let month = month(&q)?;
    let rows = state.store.usage().month(&reseller.id, &month, Some(&id))?;
    Ok(answer(&req, rows))
}
