//! Domain registration goes through a `Registrar` adapter. The one shipped adapter is a webhook:
//! resellerd POSTs a JSON request signed with HMAC-SHA256 (Stripe-style
//! `X-Resellerd-Signature: t=<unix>,v1=<hex>` over `"<t>.<body>"`) to a URL the operator
//! configures, and the webhook's 2xx JSON answer `{"status": "registered"}` means success.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, Serialize)]
pub struct RegistrationRequest {
    pub domain: String,
    pub email: String,
    pub reseller_id: String,
    pub request_id: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Registration {
    pub status: String,
    #[serde(default)]
    pub message: Option<String>,
}

pub trait Registrar: Send + Sync {
    /// Registers the domain; `Err` carries a message for the reseller.
    fn register<'a>(
        &'a self,
        req: &'a RegistrationRequest,
    ) -> BoxFuture<'a, Result<Registration, String>>;
}

pub struct WebhookRegistrar {
    url: String,
    secret: String,
    client: reqwest::Client,
}

pub const SIGNATURE_HEADER: &str = "X-Resellerd-Signature";

/// The signature header value for `body` at unix time `t`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut mac = ring::hmac::Context::with_key(&key);
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.sign()))
}

impl WebhookRegistrar {
    pub fn new(url: String, secret: String) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("registrar HTTP client: {e}"))?;
        Ok(WebhookRegistrar {
            url,
            secret,
            client,
        })
    }
}

impl Registrar for WebhookRegistrar {
    fn register<'a>(
        &'a self,
        req: &'a RegistrationRequest,
    ) -> BoxFuture<'a, Result<Registration, String>> {
        Box::pin(async move {
            let body = serde_json::to_vec(req).map_err(|e| e.to_string())?;
            let signature = sign(&self.secret, crate::model::Timestamp::now().0 / 1000, &body);
            let resp = self
                .client
                .post(&self.url)
                .header("content-type", "application/json")
                .header(SIGNATURE_HEADER, signature)
                .body(body)
                .send()
                .await
                .map_err(|e| format!("the registrar could not be reached: {e}"))?;
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            if !status.is_success() {
                return Err(format!(
                    "the registrar refused the registration ({status}): {}",
                    text.chars().take(300).collect::<String>()
                ));
            }
            let reg: Registration = serde_json::from_str(&text)
                .map_err(|_| "the registrar answered with something other than JSON".to_string())?;
            if reg.status != "registered" {
                return Err(format!(
                    "the registrar did not register the domain: {}",
                    reg.message.as_deref().unwrap_or(&reg.status)
                ));
            }
            Ok(reg)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_depend_on_secret_time_and_body() {
        let a = sign("s3cret", 1700000000, b"{}");
        assert!(a.starts_with("t=1700000000,v1="));
        assert_ne!(a, sign("other", 1700000000, b"{}"));
        assert_ne!(a, sign("s3cret", 1700000001, b"{}"));
        assert_ne!(a, sign("s3cret", 1700000000, b"{ }"));
        assert_eq!(a, sign("s3cret", 1700000000, b"{}"));
    }
}
