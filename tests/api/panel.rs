//! The admin panel is embedded and served with strict security headers.

use crate::helpers::TestApp;
use reqwest::Method;

#[tokio::test]
async fn the_panel_is_served_with_security_headers_and_types() {
    let app = TestApp::spawn().await;
    let redirect = app.call(Method::GET, "/admin", None, None).await;
    assert_eq!(redirect.status, 308);
    assert_eq!(redirect.header("location"), Some("/admin/"));
    for (path, ctype) in [
        ("/admin/", "text/html"),
        ("/admin/app.js", "text/javascript"),
        ("/admin/api.js", "text/javascript"),
        ("/admin/pages/keys.js", "text/javascript"),
        ("/admin/app.css", "text/css"),
    ] {
        let r = app.call(Method::GET, path, None, None).await.expect(200);
        assert!(
            r.header("content-type").unwrap().starts_with(ctype),
            "{path}: {:?}",
            r.header("content-type")
        );
        let csp = r.header("content-security-policy").unwrap();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(!csp.contains("'unsafe-eval'"));
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        // Revalidation answers 304.
        let etag = r.header("etag").unwrap().to_string();
        let again = app
            .client
            .get(app.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304);
    }
    let index = app.call(Method::GET, "/admin/", None, None).await;
    assert!(
        !index.text.contains("onclick") && !index.text.contains("<style"),
        "no inline handlers or styles"
    );
    let missing = app.call(Method::GET, "/admin/nope.js", None, None).await;
    assert_eq!(missing.status, 404);
    assert!(missing.header("content-security-policy").is_some());
}

/// A new install greets its operator on its own address: `/` says what this is, where the
/// operator token is and what to do next, and `GET /api/v1` points at the API's description.
#[tokio::test]
async fn the_instance_greets_with_next_steps_and_the_api_with_its_links() {
    let app = TestApp::spawn().await;
    let r = app.call(Method::GET, "/", None, None).await.expect(200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    for words in [
        "operator-token",
        "/admin/",
        "/api/v1/openapi.json",
        "Create a reseller",
    ] {
        assert!(r.text.contains(words), "{words} missing from {}", r.text);
    }
    for path in ["/api/v1", "/api/v1/"] {
        let r = app.call(Method::GET, path, None, None).await.expect(200);
        assert_eq!(r.body["openapi"], "/api/v1/openapi.json");
        assert_eq!(r.body["panel"], "/admin/");
    }
    // An unknown path on the instance's address is the API's JSON 404, never a site's page.
    let r = app.call(Method::GET, "/no/such/page", None, None).await;
    let r = r.expect_error(404, "not_found");
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
}
