//! `GET /api/v1/openapi.json`: served without credentials, OpenAPI 3.x, and describing every
//! endpoint that `src/api` registers (found by the isolation test's route scanner).

use crate::helpers::TestApp;
use crate::isolation::{registered_routes, shape};
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeSet;

const PREFIX: &str = "/api/v1";

/// The `$ref` of the JSON schema of `op`'s response `status`, or of its array items.
fn response_ref(op: &Value, status: &str) -> String {
    let schema = &op["responses"][status]["content"]["application/json"]["schema"];
    let r = schema["$ref"]
        .as_str()
        .or_else(|| schema["items"]["$ref"].as_str())
        .unwrap_or_default();
    r.rsplit('/').next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn openapi_document_covers_every_route() {
    let app = TestApp::spawn().await;
    let reply = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await
        .expect(200);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        reply.headers
    );
    let doc = reply.body;
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "not an OpenAPI 3 document: {}",
        reply.text
    );
    assert!(doc["info"]["title"].is_string());
    let paths = doc["paths"].as_object().expect("paths");

    let mut documented = BTreeSet::new();
    let mut operation_ids = BTreeSet::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            if ["get", "post", "put", "patch", "delete", "head"].contains(&method.as_str()) {
                documented.insert((method.to_ascii_uppercase(), shape(path)));
                let id = op["operationId"].as_str().unwrap_or_default().to_string();
                assert!(
                    operation_ids.insert(id),
                    "{method} {path}: duplicate operationId"
                );
                assert!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{method} {path} documents no response"
                );
            }
        }
    }
    let routes = registered_routes();
    assert!(routes.len() >= 60, "the route scan found {}", routes.len());
    let missing: Vec<String> = routes
        .iter()
        .filter(|(m, p)| !documented.contains(&(m.clone(), format!("{PREFIX}{p}"))))
        .map(|(m, p)| format!("  {m} {PREFIX}{p}"))
        .collect();
    assert!(
        missing.is_empty(),
        "these endpoints are missing from openapi.json (add a #[utoipa::path] beside the \
         handler and list it in src/api/openapi.rs):\n{}",
        missing.join("\n")
    );
    assert!(documented.contains(&("GET".into(), "/api/v1/openapi.json".into())));

    // Not vacuous: responses name the schemas they send.
    let op = |m: &str, p: &str| paths[p][m].clone();
    assert_eq!(
        response_ref(&op("post", "/api/v1/access_tokens"), "201"),
        "CreatedToken"
    );
    assert_eq!(
        response_ref(&op("post", "/api/v1/keys"), "201"),
        "CreatedKey"
    );
    assert_eq!(response_ref(&op("get", "/api/v1/keys"), "200"), "KeyView");
    assert_eq!(
        response_ref(&op("get", "/api/v1/sites/{site_id}"), "200"),
        "SiteView"
    );
    assert_eq!(
        response_ref(&op("get", "/api/v1/domains/{id}"), "200"),
        "DomainView"
    );
    for (m, p) in [("get", "/api/v1/keys"), ("post", "/api/v1/domains")] {
        for status in ["400", "401", "404"] {
            assert_eq!(
                response_ref(&op(m, p), status),
                "ErrorBody",
                "{m} {p} {status}"
            );
        }
    }
    let backup = &paths["/api/v1/admin/backup"]["get"]["responses"]["200"]["content"];
    assert_eq!(
        backup["application/x-tar"]["schema"]["format"], "binary",
        "{backup}"
    );

    // The schemas describe the JSON actually sent.
    let schemas = &doc["components"]["schemas"];
    let error = &schemas["ErrorBody"]["properties"];
    for field in ["code", "error", "message"] {
        assert!(error.get(field).is_some(), "ErrorBody lacks {field}");
    }
    assert_eq!(schemas["Timestamp"]["type"], "string");
    assert_eq!(schemas["Timestamp"]["format"], "date-time");
    assert_eq!(schemas["IpAllowList"]["type"], "array");
    assert_eq!(schemas["Permissions"]["type"], "array");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["basic"]["scheme"], "basic");
}
