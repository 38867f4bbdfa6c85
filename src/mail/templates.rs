//! Mail templates: one per kind, HTML, with `{{placeholder}}`s filled in (HTML-escaped). The
//! subject is the template's `<title>`; the text part is the HTML's text. A reseller may replace
//! any template (`PUT /reseller/emails/{kind}`); the built-in ones are below.

use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    FormSubmission,
    DeployReady,
    DeployFailed,
    DomainVerified,
    DomainFailed,
    CertificateIssued,
    CertificateFailed,
    CertificateExpiring,
    QuotaWarning,
    QuotaExceeded,
    UserSuspended,
    WebhookDisabled,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::FormSubmission,
        Kind::DeployReady,
        Kind::DeployFailed,
        Kind::DomainVerified,
        Kind::DomainFailed,
        Kind::CertificateIssued,
        Kind::CertificateFailed,
        Kind::CertificateExpiring,
        Kind::QuotaWarning,
        Kind::QuotaExceeded,
        Kind::UserSuspended,
        Kind::WebhookDisabled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::FormSubmission => "form_submission",
            Kind::DeployReady => "deploy_ready",
            Kind::DeployFailed => "deploy_failed",
            Kind::DomainVerified => "domain_verified",
            Kind::DomainFailed => "domain_failed",
            Kind::CertificateIssued => "certificate_issued",
            Kind::CertificateFailed => "certificate_failed",
            Kind::CertificateExpiring => "certificate_expiring",
            Kind::QuotaWarning => "quota_warning",
            Kind::QuotaExceeded => "quota_exceeded",
            Kind::UserSuspended => "user_suspended",
            Kind::WebhookDisabled => "webhook_disabled",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The mail an event type makes, if any.
    pub fn of_event(kind: &str) -> Option<Kind> {
        Some(match kind {
            "form.submission" => Kind::FormSubmission,
            "deploy.ready" => Kind::DeployReady,
            "deploy.failed" => Kind::DeployFailed,
            "domain.verified" => Kind::DomainVerified,
            "domain.failed" => Kind::DomainFailed,
            "certificate.issued" => Kind::CertificateIssued,
            "certificate.failed" => Kind::CertificateFailed,
            "certificate.expiring" => Kind::CertificateExpiring,
            "quota.warning" => Kind::QuotaWarning,
            "quota.exceeded" => Kind::QuotaExceeded,
            "user.suspended" => Kind::UserSuspended,
            _ => return None,
        })
    }

    /// The placeholders this kind fills in (besides `reseller_name` and `user_email`).
    pub fn placeholders(self) -> &'static [&'static str] {
        match self {
            Kind::FormSubmission => &["site_name", "site_url", "form_name", "submission"],
            Kind::DeployReady => &["site_name", "site_url", "deploy_id"],
            Kind::DeployFailed => &["site_name", "site_url", "deploy_id", "error", "log_tail"],
            Kind::DomainVerified | Kind::DomainFailed => &["domain"],
            Kind::CertificateIssued => &["domain", "site_name", "expires_at"],
            Kind::CertificateFailed => &["domain", "site_name", "error"],
            Kind::CertificateExpiring => &["domain", "site_name", "expires_at", "error"],
            Kind::QuotaWarning | Kind::QuotaExceeded => &["limit", "used", "max"],
            Kind::UserSuspended => &["reason"],
            Kind::WebhookDisabled => &["webhook_url", "failing_since"],
        }
    }

    pub fn builtin(self) -> &'static str {
        match self {
            Kind::FormSubmission => "<title>New submission to {{form_name}} on {{site_name}}</title>\
                <p>Your site {{site_name}} ({{site_url}}) received a form submission:</p><pre>{{submission}}</pre>",
            Kind::DeployReady => "<title>{{site_name}} is live</title>\
                <p>The deploy {{deploy_id}} of {{site_name}} is ready and published at {{site_url}}.</p>",
            Kind::DeployFailed => "<title>A deploy of {{site_name}} failed</title>\
                <p>The deploy {{deploy_id}} of {{site_name}} failed: {{error}}</p><pre>{{log_tail}}</pre>",
            Kind::DomainVerified => "<title>{{domain}} is verified</title>\
                <p>The domain {{domain}} is verified and can serve your site.</p>",
            Kind::DomainFailed => "<title>{{domain}} could not be verified</title>\
                <p>The verification record of {{domain}} was not found in time. Add it and check again.</p>",
            Kind::CertificateIssued => "<title>HTTPS is on for {{domain}}</title>\
                <p>A certificate for {{domain}} ({{site_name}}) was issued; it is valid until {{expires_at}}.</p>",
            Kind::CertificateFailed => "<title>No certificate for {{domain}}</title>\
                <p>The certificate for {{domain}} ({{site_name}}) could not be issued: {{error}}</p>",
            Kind::CertificateExpiring => "<title>The certificate for {{domain}} expires soon</title>\
                <p>The certificate for {{domain}} expires at {{expires_at}} and could not be renewed: {{error}}</p>",
            Kind::QuotaWarning => "<title>You have used 80 % of your {{limit}}</title>\
                <p>You have used {{used}} of {{max}} ({{limit}}).</p>",
            Kind::QuotaExceeded => "<title>You have used all of your {{limit}}</title>\
                <p>You have used {{used}} of {{max}} ({{limit}}).</p>",
            Kind::UserSuspended => "<title>Your account is suspended</title>\
                <p>Your account was suspended: {{reason}}</p>",
            Kind::WebhookDisabled => "<title>A webhook endpoint was disabled</title>\
                <p>Every delivery to {{webhook_url}} has failed since {{failing_since}}, so it was disabled. \
                Fix the receiver and enable it again.</p>",
        }
    }
}

/// The values placeholders take.
pub struct Vars(BTreeMap<&'static str, String>);

impl Vars {
    pub fn new(reseller_name: &str) -> Vars {
        let mut vars = Vars(BTreeMap::new());
        vars.set("reseller_name", reseller_name);
        vars
    }

    pub fn set(&mut self, name: &'static str, value: &str) {
        self.0.insert(name, value.to_string());
    }

    /// Sample values for a preview.
    pub fn sample(kind: Kind, reseller_name: &str) -> Vars {
        let mut vars = Vars::new(reseller_name);
        vars.set("user_email", "client@example.com");
        for name in kind.placeholders() {
            let value = match *name {
                "site_name" => "client-site",
                "site_url" => "https://client-site.example.com",
                "form_name" => "contact",
                "submission" => "name: Ada\nemail: ada@example.com",
                "deploy_id" => "01jz0example0deploy00000000",
                "error" => "the example error",
                "log_tail" => "$ npm run build\nError: Cannot find module 'vite'",
                "domain" => "client.example.com",
                "expires_at" => "2027-03-01T00:00:00Z",
                "limit" => "bandwidth",
                "used" => "8 GB",
                "max" => "10 GB",
                "reason" => "the example reason",
                "webhook_url" => "https://crm.example.com/hook",
                "failing_since" => "2026-12-01T00:00:00Z",
                other => other,
            };
            vars.set(name, value);
        }
        vars
    }
}

/// A mail ready to compose.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// Fills in a template (the reseller's, else the built-in one).
pub fn render(kind: Kind, custom: Option<&str>, vars: &Vars) -> Rendered {
    let template = custom.unwrap_or(kind.builtin());
    let html = fill(template, vars);
    let doc = scraper::Html::parse_document(&html);
    let subject = scraper::Selector::parse("title")
        .ok()
        .and_then(|s| doc.select(&s).next())
        .map(|t| t.text().collect::<String>())
        .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| kind.name().replace('_', " "));
    let text = text_of(&doc);
    Rendered {
        subject,
        html,
        text,
    }
}

/// `{{name}}` -> its value, HTML-escaped; unknown names are left as they are.
fn fill(template: &str, vars: &Vars) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                match vars.0.get(name) {
                    Some(value) => out.push_str(&escape(value)),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The text of the body: each block on its own line, `<title>` left out.
fn text_of(doc: &scraper::Html) -> String {
    let body = scraper::Selector::parse("body")
        .ok()
        .and_then(|s| doc.select(&s).next());
    let Some(body) = body else {
        return String::new();
    };
    let mut lines = Vec::new();
    let mut line = String::new();
    for node in body.descendants() {
        if let Some(text) = node.value().as_text() {
            line.push_str(text);
        } else if let Some(el) = node.value().as_element() {
            if matches!(
                el.name(),
                "p" | "br" | "div" | "li" | "tr" | "h1" | "h2" | "h3" | "pre" | "table"
            ) && !line.trim().is_empty()
            {
                lines.push(std::mem::take(&mut line));
            }
        }
    }
    if !line.trim().is_empty() {
        lines.push(line);
    }
    lines
        .iter()
        .map(|l| l.trim())
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_escape_and_give_a_subject_and_text() {
        let mut vars = Vars::new("Agency");
        vars.set("site_name", "<b>shop</b>");
        vars.set("site_url", "https://shop.example");
        vars.set("deploy_id", "d1");
        let r = render(Kind::DeployReady, None, &vars);
        assert_eq!(r.subject, "<b>shop</b> is live");
        assert!(r.html.contains("&lt;b&gt;shop&lt;/b&gt;"), "{}", r.html);
        assert!(
            r.text.contains("published at https://shop.example"),
            "{}",
            r.text
        );
        assert!(
            !r.text.contains("is live"),
            "the title is not in the text: {}",
            r.text
        );
        let custom = render(
            Kind::DeployReady,
            Some("<title>Hi {{ reseller_name }}</title><p>{{unknown}} {{site_name</p>"),
            &vars,
        );
        assert_eq!(custom.subject, "Hi Agency");
        assert!(custom.html.contains("{{unknown}}"));
    }
}
