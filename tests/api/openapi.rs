//! `GET /api/v1/openapi.json`: served without credentials, OpenAPI 3.x, and describing every
//! endpoint in the route table the API registers from (`api::routes()`).

use crate::helpers::TestApp;
use crate::isolation::{registered_routes, rows, shape, Access};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const PREFIX: &str = "/api/v1";

/// The served document.
async fn document(app: &TestApp) -> Value {
    app.call(Method::GET, "/api/v1/openapi.json", None, None)
        .await
        .expect(200)
        .body
}

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
    assert!(routes.len() >= 60, "the route table has {}", routes.len());
    let missing: Vec<String> = routes
        .iter()
        .filter(|(m, p)| !documented.contains(&(m.clone(), format!("{PREFIX}{p}"))))
        .map(|(m, p)| format!("  {m} {PREFIX}{p}"))
        .collect();
    assert!(
        missing.is_empty(),
        "these endpoints are missing from openapi.json (add a #[utoipa::path] beside the \
         handler):\n{}",
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
        for status in ["400", "401", "404", "414"] {
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

/// The property names (and the required ones) of a component schema, following `allOf`.
fn schema_fields(doc: &Value, name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let schema = &doc["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema {name}");
    let mut props = BTreeSet::new();
    let mut required = BTreeSet::new();
    let parts: Vec<Value> = match schema["allOf"].as_array() {
        Some(all) => all.clone(),
        None => vec![schema.clone()],
    };
    for part in parts {
        if let Some(r) = part["$ref"].as_str() {
            let (p, q) = schema_fields(doc, r.rsplit('/').next().unwrap());
            props.extend(p);
            required.extend(q);
            continue;
        }
        if let Some(p) = part["properties"].as_object() {
            props.extend(p.keys().cloned());
        }
        if let Some(q) = part["required"].as_array() {
            required.extend(q.iter().filter_map(|v| v.as_str().map(String::from)));
        }
    }
    (props, required)
}

/// Real replies carry exactly the fields their documented schema names (no more, and every
/// required one), so the schemas cannot drift from the JSON the handlers build by hand.
#[tokio::test]
async fn documented_schemas_match_real_replies() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let reseller = app.reseller("Schema Co").await;
    let user = reseller.access_token(&app, "client@mail.test").await;
    let rk = reseller.key.as_str();
    let ut = user.token.as_str();

    let site = app
        .post("/api/v1/sites", ut, json!({"name": "schema-site"}))
        .await
        .expect(201)
        .body;
    let site_id = site["id"].as_str().unwrap().to_string();
    let sha = "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed";
    let deploy = app
        .post(
            &format!("/api/v1/sites/{site_id}/deploys"),
            ut,
            json!({"files": {"index.html": sha}}),
        )
        .await
        .expect(200)
        .body;
    let domain = app
        .post(
            "/api/v1/domains",
            rk,
            json!({"domain": "schema-client.test", "email": "client@mail.test"}),
        )
        .await
        .expect(201)
        .body;
    let key = app
        .post("/api/v1/keys", rk, json!({"name": "crm"}))
        .await
        .expect(201)
        .body;
    let method = app
        .post(
            "/api/v1/payment_methods",
            rk,
            json!({"label": "Visa", "type": "card", "reference": "tok_1"}),
        )
        .await
        .expect(201)
        .body;
    let token = app
        .post(
            "/api/v1/access_tokens",
            rk,
            json!({"user": {"email": "other@mail.test", "uid": 7}}),
        )
        .await
        .expect(201)
        .body;
    let mut cases: Vec<(&str, &str, &str, Value)> = vec![
        ("post", "/api/v1/sites", "201", site.clone()),
        ("post", "/api/v1/sites/{site_id}/deploys", "200", deploy),
        ("post", "/api/v1/domains", "201", domain),
        ("post", "/api/v1/keys", "201", key),
        ("post", "/api/v1/payment_methods", "201", method),
        ("post", "/api/v1/access_tokens", "201", token),
    ];
    for (path, real, bearer) in [
        ("/api/v1/user", "/api/v1/user".to_string(), ut),
        ("/api/v1/reseller", "/api/v1/reseller".to_string(), rk),
        (
            "/api/v1/users/{id}",
            format!("/api/v1/users/{}", user.user_id),
            rk,
        ),
        ("/api/v1/accounts", "/api/v1/accounts".to_string(), rk),
        ("/api/v1/keys", "/api/v1/keys".to_string(), rk),
        ("/api/v1/audit", "/api/v1/audit".to_string(), rk),
        (
            "/api/v1/admin/resellers/{id}/prices",
            format!("/api/v1/admin/resellers/{}/prices", reseller.id),
            app.operator.as_str(),
        ),
    ] {
        let body = app.get(&real, bearer).await.expect(200).body;
        cases.push(("get", path, "200", body));
    }
    for (method, path, status, body) in cases {
        let op = &doc["paths"][path][method];
        let name = response_ref(op, status);
        assert!(!name.is_empty(), "{method} {path} names no schema");
        let items: Vec<Value> = match body {
            Value::Array(items) => items,
            one => vec![one],
        };
        assert!(!items.is_empty(), "{method} {path}: nothing to compare");
        let (props, required) = schema_fields(&doc, &name);
        for item in items {
            let sent: BTreeSet<String> = item.as_object().unwrap().keys().cloned().collect();
            let undocumented: Vec<_> = sent.difference(&props).collect();
            let absent: Vec<_> = required.difference(&sent).collect();
            assert!(
                undocumented.is_empty() && absent.is_empty(),
                "{method} {path} ({name}): sent but not in the schema {undocumented:?}; \
                 required but not sent {absent:?}"
            );
        }
    }
    // The published deploy inside a site is a DeployView too.
    assert!(site["published_deploy"].is_null());
}

/// Each operation says who may call it, in its security requirements and its description, and
/// says what the isolation matrix (which calls every endpoint as every kind of caller) enforces.
#[tokio::test]
async fn openapi_document_says_who_may_call_each_operation() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let mut ops = std::collections::HashMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.insert((method.to_ascii_uppercase(), shape(path)), op.clone());
        }
    }
    let key = |perms: &[&str]| vec![json!({"bearer": perms}), json!({"basic": perms})];
    let mut checked = 0;
    for row in rows() {
        let at = (
            row.method.to_string(),
            shape(&format!("{PREFIX}{}", row.path)),
        );
        let op = ops
            .get(&at)
            .unwrap_or_else(|| panic!("{at:?} is not documented"));
        let (expected, words): (Vec<Value>, String) = match row.access {
            Access::Public => (vec![json!({})], "public".into()),
            Access::Operator => (
                vec![json!({"bearer": ["operator"]})],
                "operator token".into(),
            ),
            Access::Plugin => (
                vec![json!({"bearer": ["plugin"]})],
                "WordPress plugin key".into(),
            ),
            Access::Key(perms, _) => (key(perms), perms.join("` and `")),
            Access::Tenant(perms, _) => {
                let mut all = key(perms);
                all.push(json!({"bearer": ["user"]}));
                (all, "user access token".into())
            }
        };
        assert_eq!(op["security"], json!(expected), "{at:?}");
        let description = op["description"].as_str().unwrap_or_default();
        assert!(description.contains(&words), "{at:?}: {description}");
        checked += 1;
    }
    assert!(checked >= 60, "only {checked} rows");
    // The one public operation stays public.
    assert_eq!(
        doc["paths"]["/api/v1/openapi.json"]["get"]["security"],
        json!([{}])
    );
}
