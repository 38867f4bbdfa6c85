//! An event's body (the data as the API shows it) and its signature.

use super::*;

/// The body of an event: `{"type", "timestamp", "data"}`, the data as the API shows it.
pub fn render(views: &Views, event: &Event) -> Vec<u8> {
    let data = render_subject(views, &event.subject).unwrap_or_else(|_| fallback(&event.subject));
    let body = serde_json::json!({
        "type": event.kind,
        "timestamp": event.at.to_rfc3339(),
        "data": data,
    });
    body.to_string().into_bytes()
}

fn render_subject(views: &Views, subject: &Subject) -> StoreResult<serde_json::Value> {
    use crate::views::{domains, forms, sites, KeyView, UserView};
    let json = |v: &dyn erased::Json| v.value();
    let store = &views.store;
    Ok(match subject {
        Subject::User(u) => json(&UserView::of_user(u.clone())),
        Subject::Site(site) => {
            let reseller = store.resellers().get(&site.reseller_id)?;
            json(&sites::site_view(views, &reseller, site)?)
        }
        Subject::Deploy(d) => {
            let reseller = store.resellers().get(&d.reseller_id)?;
            let site = store
                .sites()
                .get(&d.site_id)?
                .ok_or(StoreError::NotFound("site"))?;
            json(&sites::deploy_view(views, &reseller, &site, d))
        }
        Subject::Domain(d) => json(&domains::domain_view(views, d)?),
        Subject::Submission(s) => json(&forms::submission_view(s)),
        Subject::Charge(c) => json(c),
        Subject::Key(k) => json(&KeyView::from(k.clone())),
        Subject::Quota {
            user,
            limit,
            used,
            max,
            month,
        } => serde_json::json!({
            "user": json(&UserView::of_user(user.clone())),
            "limit": limit,
            "used": used,
            "max": max,
            "month": month,
        }),
        Subject::Suspension { user, reason } => serde_json::json!({
            "user": json(&UserView::of_user(user.clone())),
            "reason": reason,
        }),
        Subject::Certificate {
            domain,
            site_id,
            expires_at,
            error,
        } => serde_json::json!({
            "domain": domain,
            "site_id": site_id,
            "expires_at": expires_at,
            "error": error,
        }),
    })
}

/// When the full view cannot be made (its site was deleted meanwhile): the ids it names.
fn fallback(subject: &Subject) -> serde_json::Value {
    match subject {
        Subject::Deploy(d) => serde_json::json!({
            "id": d.id, "site_id": d.site_id, "state": d.state.name(),
            "error_message": d.error_message,
        }),
        Subject::Site(s) => serde_json::json!({"id": s.id, "name": s.name}),
        Subject::Domain(d) => serde_json::json!({"id": d.id, "domain": d.name}),
        _ => serde_json::Value::Null,
    }
}

/// Serializes any view to a JSON value (the views are different types).
mod erased {
    pub trait Json {
        fn value(&self) -> serde_json::Value;
    }

    impl<T: serde::Serialize> Json for T {
        fn value(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }
}

/// The `webhook-signature` header: `v1,<HMAC>` and, with an active EdDSA key, `v1a,<Ed25519>`,
/// both over `<id>.<timestamp>.<body>`.
pub fn signature(
    secret: &crate::store::webhooks::WebhookSecret,
    ed25519: Option<&crate::store::signing::SigningKey>,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret.key());
    let mut header = format!("v1,{}", STANDARD.encode(ring::hmac::sign(&key, &content)));
    if let Some(key) = ed25519 {
        match crate::signing::sign(key, &content) {
            Ok(sig) => {
                header.push_str(" v1a,");
                header.push_str(&STANDARD.encode(sig));
            }
            Err(e) => {
                tracing::warn!(kid = %key.kid, error = %e, "cannot sign a webhook with the reseller's key")
            }
        }
    }
    header
}
