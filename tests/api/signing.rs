//! Signing keys: EdDSA and RS256 made on the server, the private part never shown, one active
//! key per algorithm, rotation that keeps old keys in the public JWKS until deleted, at most 6.

use crate::helpers::TestApp;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn signing_keys_rotate_through_a_public_jwks() {
    let app = TestApp::spawn().await;
    let a = app.reseller("Sign A").await;
    let b = app.reseller("Sign B").await;
    let jwks = |id: String| {
        let app = &app;
        async move {
            let r = app
                .call(
                    Method::GET,
                    &format!("/api/v1/resellers/{id}/jwks.json"),
                    None,
                    None,
                )
                .await
                .expect(200);
            r.body["keys"].as_array().unwrap().clone()
        }
    };
    assert!(jwks(a.id.clone()).await.is_empty());

    let ed1 = app
        .post("/api/v1/signing_keys", &a.key, json!({"alg": "EdDSA"}))
        .await
        .expect(201)
        .body;
    let rsa = app
        .post("/api/v1/signing_keys", &a.key, json!({"alg": "RS256"}))
        .await
        .expect(201)
        .body;
    let ed2 = app
        .post("/api/v1/signing_keys", &a.key, json!({"alg": "EdDSA"}))
        .await
        .expect(201)
        .body;
    assert_eq!(
        ed1["active"], true,
        "the first key of an algorithm is active"
    );
    assert_eq!(rsa["active"], true);
    assert_eq!(
        ed2["active"], false,
        "a second EdDSA key waits for activation"
    );
    assert_eq!(ed1["public_jwk"]["kty"], "OKP");
    assert_eq!(ed1["public_jwk"]["crv"], "Ed25519");
    assert_eq!(ed1["public_jwk"]["kid"], ed1["kid"]);
    assert_eq!(rsa["public_jwk"]["kty"], "RSA");
    assert_eq!(rsa["alg"], "RS256");
    let n = URL_SAFE_NO_PAD
        .decode(rsa["public_jwk"]["n"].as_str().unwrap())
        .unwrap();
    assert_eq!(n.len(), 256, "RSA 2048");
    for key in [&ed1, &rsa, &ed2] {
        let text = key.to_string();
        for private in ["\"d\"", "\"p\"", "\"q\"", "private"] {
            assert!(!text.contains(private), "{private} in {text}");
        }
    }

    let listed = app.get("/api/v1/signing_keys", &a.key).await.expect(200);
    assert_eq!(
        ids(&listed.body),
        [&ed1["id"], &rsa["id"], &ed2["id"]].map(|v| v.as_str().unwrap())
    );
    assert!(!listed.text.contains("\"d\""));

    // Rotation: the new key signs, the old one stays verifiable.
    let ed2_id = ed2["id"].as_str().unwrap();
    let activated = app
        .post(
            &format!("/api/v1/signing_keys/{ed2_id}/activate"),
            &a.key,
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(activated.body["active"], true);
    let listed = app
        .get("/api/v1/signing_keys", &a.key)
        .await
        .expect(200)
        .body;
    let active: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["active"] == true)
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(active, [rsa["id"].as_str().unwrap(), ed2_id]);
    let kids: Vec<Value> = jwks(a.id.clone())
        .await
        .iter()
        .map(|k| k["kid"].clone())
        .collect();
    assert_eq!(
        kids,
        [ed1["kid"].clone(), rsa["kid"].clone(), ed2["kid"].clone()]
    );

    // Another reseller sees none of it, and cannot touch it.
    assert!(app
        .get("/api/v1/signing_keys", &b.key)
        .await
        .expect(200)
        .body
        .as_array()
        .unwrap()
        .is_empty());
    app.delete(&format!("/api/v1/signing_keys/{ed2_id}"), &b.key)
        .await
        .expect_error(404, "not_found");
    app.post(
        &format!("/api/v1/signing_keys/{ed2_id}/activate"),
        &b.key,
        json!({}),
    )
    .await
    .expect_error(404, "not_found");
    assert!(jwks(b.id.clone()).await.is_empty());
    assert!(jwks("no-such-reseller".into()).await.is_empty());

    // Deleting takes a key out of the JWKS at once.
    let ed1_id = ed1["id"].as_str().unwrap();
    app.delete(&format!("/api/v1/signing_keys/{ed1_id}"), &a.key)
        .await
        .expect(204);
    assert_eq!(jwks(a.id.clone()).await.len(), 2);

    // Bad input changes nothing; the seventh key is refused.
    app.post("/api/v1/signing_keys", &a.key, json!({"alg": "HS256"}))
        .await
        .expect_error(400, "invalid_request");
    app.post(
        "/api/v1/signing_keys",
        &a.key,
        json!({"alg": "EdDSA", "d": "x"}),
    )
    .await
    .expect_error(400, "invalid_request");
    for _ in 0..4 {
        app.post("/api/v1/signing_keys", &a.key, json!({"alg": "EdDSA"}))
            .await
            .expect(201);
    }
    app.post("/api/v1/signing_keys", &a.key, json!({"alg": "EdDSA"}))
        .await
        .expect_error(400, "signing_key_limit_reached");
    assert_eq!(jwks(a.id.clone()).await.len(), 6);

    // A key with only sites:read cannot manage signing keys.
    let reader = a.key_with(&app, json!(["sites:read"])).await;
    app.get("/api/v1/signing_keys", &reader)
        .await
        .expect_error(403, "forbidden");
}
