//! The tenant-isolation matrix: every endpoint (one row each, below) called by every kind of
//! principal, against real ids of reseller A. The rule on a row says who may do what:
//!
//! | principal                          | expected                                               |
//! |------------------------------------|--------------------------------------------------------|
//! | no credential                      | 401 `unauthorized`                                     |
//! | operator                           | 2xx on `Operator` rows, else 403 `forbidden`           |
//! | A's full key                       | 2xx (or the row's `ok` outcome) on `Key`/`Tenant` rows |
//! | A key with one permission          | as the full key if it grants the row's permissions, else 403 `forbidden` |
//! | A's user (owns A's site, domain…)  | `Tenant` rows as the full key; `Key` rows 403          |
//! | A's second user                    | `Tenant`+`Ids` rows 404 `not_found`; `Own` rows 2xx on its own (empty) data |
//! | B's full key                       | `Ids` rows 404 `not_found`; `Own` rows 2xx on B's own data |
//! | B's user                           | as A's second user; `Key` rows 403                     |
//! | A's WordPress plugin key           | 2xx on `Plugin` rows, else 403 `forbidden`             |
//!
//! `Ids` rows carry A's ids (in the path or body); `Own` rows act on the caller's own account.
//! On top of the expected status, every foreign 404 must look exactly like the answer for an
//! id that does not exist, and no 2xx body a foreign principal gets may contain an id of A's.
//!
//! Destructive rows name the fixtures they consume (`fresh`): a caller expected to succeed gets
//! a throwaway one, so the shared fixtures stay valid for every other row.
//!
//! `every_route_has_an_isolation_row` reads the route table the API registers its endpoints from
//! (`api::ENDPOINTS`): a new endpoint without a row here fails the suite.

use crate::helpers::{reply, Reply, TestApp};
use crate::sites::{sha1, zip_deploy, zip_of};
use reqwest::Method;
use resellerd::api::Who as Rule;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PUT: Method = Method::PUT;
const PATCH: Method = Method::PATCH;
const DELETE: Method = Method::DELETE;

const PERMISSIONS: [&str; 10] = [
    "users:read",
    "users:write",
    "sites:read",
    "sites:write",
    "domains:read",
    "domains:write",
    "keys:manage",
    "settings:write",
    "submissions:read",
    "billing:write",
];

/// Where a row's data lives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Reach {
    /// The path or body names A's resources: any other tenant (or user) gets 404.
    Ids,
    /// The caller's own collection or account: everyone allowed gets 2xx on their own data.
    Own,
}
use Reach::*;

/// Who may call a row at all.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Access {
    /// Anyone, with or without a credential.
    Public,
    /// Only the operator token.
    Operator,
    /// Only a WordPress plugin key.
    Plugin,
    /// Only a reseller API key holding all these permissions (none listed: any key).
    Key(&'static [&'static str], Reach),
    /// A reseller key holding these permissions, or a user token (users own their data).
    Tenant(&'static [&'static str], Reach),
}
use Access::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    /// Any 2xx.
    Success,
    /// This status and machine code.
    Error(u16, &'static str),
}

impl Outcome {
    fn is_success(self) -> bool {
        self == Outcome::Success
    }
}

const UNAUTHORIZED: Outcome = Outcome::Error(401, "unauthorized");
const FORBIDDEN: Outcome = Outcome::Error(403, "forbidden");
const NOT_FOUND: Outcome = Outcome::Error(404, "not_found");

#[derive(Clone, Copy, Debug)]
enum Body {
    Empty,
    /// A JSON template; `{name}` placeholders are filled from the fixtures.
    Json(&'static str),
    Html(&'static str),
    Bytes(&'static str),
}

#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub(crate) method: Method,
    pub(crate) path: &'static str,
    pub(crate) access: Access,
    body: Body,
    /// What an allowed caller gets (when a precondition cannot be met here: see the row).
    ok: Outcome,
    /// What B's key gets instead of the reach's rule.
    foreign: Option<Outcome>,
    /// Fixtures a successful call consumes: recreated before each call expected to succeed.
    fresh: &'static [&'static str],
    /// After a successful call, delete what it created (`{created}` is the reply's id).
    cleanup: Option<&'static str>,
    /// The body legitimately echoes what the caller sent (its own audit log): no leak check.
    echoes_requests: bool,
    /// A successful call revokes every token of A's user: it gets a new one after.
    logs_out: bool,
}

/// A row for the route `method path`: who may call it comes from the route table the API
/// registers and documents its endpoints from (`api::routes()`), so the matrix checks the server
/// against the one place each rule is stated. `reach` says where the row's data lives.
fn row(method: Method, path: &'static str, reach: Reach) -> Row {
    let route = resellerd::api::routes()
        .find(|r| r.method.eq_ignore_ascii_case(method.as_str()) && shape(r.path) == shape(path))
        .unwrap_or_else(|| panic!("{method} /api/v1{path} is no route of api::routes()"));
    let access = match route.who {
        Rule::Public => Public,
        Rule::Operator => Operator,
        Rule::Plugin => Plugin,
        Rule::Key(perms) => Key(perms, reach),
        Rule::Tenant(perms) => Tenant(perms, reach),
    };
    Row {
        method,
        path,
        access,
        body: Body::Empty,
        ok: Outcome::Success,
        foreign: None,
        fresh: &[],
        cleanup: None,
        echoes_requests: false,
        logs_out: false,
    }
}

impl Row {
    fn json(mut self, template: &'static str) -> Row {
        self.body = Body::Json(template);
        self
    }
    fn html(mut self, html: &'static str) -> Row {
        self.body = Body::Html(html);
        self
    }
    fn bytes(mut self, data: &'static str) -> Row {
        self.body = Body::Bytes(data);
        self
    }
    fn ok(mut self, status: u16, code: &'static str) -> Row {
        self.ok = Outcome::Error(status, code);
        self
    }
    fn foreign(mut self, status: u16, code: &'static str) -> Row {
        self.foreign = Some(Outcome::Error(status, code));
        self
    }
    fn fresh(mut self, names: &'static [&'static str]) -> Row {
        self.fresh = names;
        self
    }
    fn cleanup(mut self, path: &'static str) -> Row {
        self.cleanup = Some(path);
        self
    }
    fn logs_out(mut self) -> Row {
        self.logs_out = true;
        self
    }
    fn echoes_requests(mut self) -> Row {
        self.echoes_requests = true;
        self
    }
    fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// THE MATRIX: one row per endpoint (paths under /api/v1).
pub(crate) fn rows() -> Vec<Row> {
    vec![
        // Operator.
        row(POST, "/admin/resellers", Own).json(r#"{"name": "Tmp {uniq}", "email": "tmp{uniq}@tmp.test"}"#),
        row(GET, "/admin/resellers", Own),
        row(GET, "/admin/resellers/{reseller}", Own),
        row(PATCH, "/admin/resellers/{reseller}", Own).json(r#"{"suspended": false}"#),
        row(DELETE, "/admin/resellers/{spare_reseller}", Own).fresh(&["spare_reseller"]),
        row(PUT, "/admin/resellers/{cert_reseller}/certificate", Own).json("{cert_body}"),
        row(DELETE, "/admin/resellers/{cert_reseller}/certificate", Own).fresh(&["cert_reseller"]),
        row(GET, "/admin/resellers/{reseller}/prices", Own),
        row(PUT, "/admin/resellers/{reseller}/prices", Own)
            .json(r#"{"currency": "EUR", "ssl_certificate_cents": 500, "domain_registration_cents": 1200}"#),
        row(GET, "/admin/audit", Own),
        if crate::helpers::on_postgres() {
            // PostgreSQL is backed up with its own tools; the operator is told so.
            row(GET, "/admin/backup", Own).ok(400, "invalid_request")
        } else {
            row(GET, "/admin/backup", Own)
        },
        // The reseller's audit log lists its own calls, with the paths it sent (A's ids for B).
        row(GET, "/audit", Own).echoes_requests(),
        // Billing.
        row(POST, "/payment_methods", Own).json(r#"{"label": "card", "type": "card", "reference": "4242"}"#),
        row(GET, "/payment_methods", Own),
        row(DELETE, "/payment_methods/{pm}", Ids).fresh(&["pm"]),
        row(GET, "/charges", Own),
        // No verified custom domain on the site: an allowed caller gets past every ownership
        // check to the precondition.
        row(POST, "/sites/{site}/ssl", Ids).json(r#"{"payment_method_id": "{pm}"}"#)
            .ok(400, "invalid_request"),
        // No certificate was ever issued: "certificate not found", where others get "site not found".
        row(GET, "/sites/{site}/ssl", Ids).ok(404, "not_found"),
        // Keys.
        row(POST, "/keys", Own).json(r#"{"name": "tmp", "permissions": ["keys:manage"]}"#)
            .cleanup("/keys/{created}"),
        row(GET, "/keys", Own),
        row(DELETE, "/keys/{key}", Ids).fresh(&["key"]),
        // Signing keys; the JWKS is public (an unknown reseller has no keys, like one without).
        row(POST, "/signing_keys", Own).json(r#"{"alg": "EdDSA"}"#)
            .cleanup("/signing_keys/{created}"),
        row(GET, "/signing_keys", Own),
        row(POST, "/signing_keys/{signing_key}/activate", Ids),
        row(DELETE, "/signing_keys/{signing_key}", Ids).fresh(&["signing_key"]),
        row(GET, "/resellers/{reseller}/jwks.json", Own),
        // Notification mail: A has a sender (set up, and set again by PATCH /reseller); B's
        // first call may find none.
        row(GET, "/reseller/notification_email", Own).foreign(404, "not_found"),
        row(POST, "/reseller/notification_email/verify", Own).foreign(404, "not_found"),
        row(GET, "/reseller/emails", Own),
        row(GET, "/reseller/emails/{mail_kind}", Own),
        row(PUT, "/reseller/emails/{mail_kind}", Own).html("<title>{{site_name}}</title><p>x</p>"),
        row(DELETE, "/reseller/emails/{mail_kind}", Own),
        row(POST, "/reseller/emails/{mail_kind}/preview", Own),
        row(GET, "/admin/notification_email", Own),
        // Webhooks.
        row(POST, "/webhooks", Own).json(r#"{"url": "http://127.0.0.1:9/{uniq}", "events": ["*"]}"#)
            .cleanup("/webhooks/{created}"),
        row(GET, "/webhooks", Own),
        row(GET, "/webhooks/{webhook}", Ids),
        row(PATCH, "/webhooks/{webhook}", Ids).json(r#"{"events": ["key.created"]}"#),
        row(DELETE, "/webhooks/{webhook}", Ids).fresh(&["webhook"]),
        row(GET, "/webhooks/{webhook}/deliveries", Ids),
        row(POST, "/webhooks/{webhook}/deliveries/{delivery}/retry", Ids),
        // Reseller account and custom pages.
        row(GET, "/reseller", Own),
        row(PATCH, "/reseller", Own).json(r#"{"notification_email": "noreply@own.test"}"#),
        row(POST, "/reseller/preview_domain/verify", Own),
        row(PUT, "/reseller/pages/{page}", Own).html("<p>custom not found</p>"),
        row(GET, "/reseller/pages/{page}", Own).fresh(&["page"]),
        row(DELETE, "/reseller/pages/{page}", Own).fresh(&["page"]),
        // Users and access tokens.
        row(POST, "/access_tokens", Own).json(r#"{"user": {"email": "crm@a.test"}}"#),
        row(DELETE, "/access_tokens/{token}", Ids).fresh(&["token"]),
        row(GET, "/users/{user}/access_tokens", Ids),
        row(DELETE, "/users/{user}/access_tokens", Ids).logs_out(),
        row(GET, "/users", Own),
        row(GET, "/users/{user}", Ids),
        row(DELETE, "/users/{spare_user}", Ids).fresh(&["spare_user"]),
        // A user of its own, suspended and then unsuspended by each caller allowed to.
        row(POST, "/users/{held_user}/suspend", Ids).json(r#"{"reason": "unpaid"}"#),
        row(POST, "/users/{held_user}/unsuspend", Ids),
        row(PATCH, "/users/{held_user}", Ids).json(r#"{"plan_id": "{plan}"}"#),
        // Usage.
        row(GET, "/usage", Own),
        row(GET, "/users/{user}/usage", Ids),
        // Plans.
        row(POST, "/plans", Own).json(r#"{"name": "Tmp {uniq}", "max_sites": 5}"#)
            .cleanup("/plans/{created}"),
        row(GET, "/plans", Own),
        row(GET, "/plans/{plan}", Ids),
        row(PATCH, "/plans/{plan}", Ids).json(r#"{"max_domains": 9}"#),
        row(DELETE, "/plans/{plan}", Ids).fresh(&["plan"]),
        row(POST, "/proxy_profiles", Own)
            .json(r#"{"name": "Tmp {uniq}", "origin": "http://127.0.0.4:{uniq}", "headers": {"X-Key": "s"}}"#)
            .cleanup("/proxy_profiles/{created}"),
        row(GET, "/proxy_profiles", Own),
        row(GET, "/proxy_profiles/{proxy_profile}", Ids),
        row(PATCH, "/proxy_profiles/{proxy_profile}", Ids).json(r#"{"timeout_ms": 5000}"#),
        row(DELETE, "/proxy_profiles/{proxy_profile}", Ids).fresh(&["proxy_profile"]),
        row(GET, "/user", Own),
        // Sites and Netlify accounts (the account slug is A's user's id).
        row(GET, "/sites", Own),
        row(POST, "/sites", Ids).json(r#"{"user_id": "{user}"}"#),
        row(GET, "/sites/{site}", Ids),
        row(PATCH, "/sites/{site}", Ids).json(r#"{"password": null}"#),
        row(PUT, "/sites/{site}", Ids).json(r#"{"password": null}"#),
        row(DELETE, "/sites/{site}", Ids).fresh(&["site"]),
        row(GET, "/accounts", Own),
        row(GET, "/accounts/{user}", Ids),
        row(GET, "/accounts/{user}/env", Ids),
        row(POST, "/accounts/{user}/env", Ids).json(r#"[{"key": "K{uniq}", "values": [{"value": "v"}]}]"#),
        row(GET, "/accounts/{user}/env/{env_key}", Ids),
        row(PUT, "/accounts/{user}/env/{env_key}", Ids).json(r#"{"key": "x", "values": [{"value": "w"}]}"#),
        row(PATCH, "/accounts/{user}/env/{env_key}", Ids).json(r#"{"value": "z", "context": "production"}"#),
        row(DELETE, "/accounts/{user}/env/{env_key}", Ids).fresh(&["env_key"]),
        // The fixture's value id is not known here: an allowed caller reaches "value not found".
        row(DELETE, "/accounts/{user}/env/{env_key}/value/{user}", Ids).ok(404, "not_found"),
        // Builds from git: the fixture site has no repository; `{built}` has one (unreachable).
        row(POST, "/deploy_keys", Own).cleanup("/deploy_keys/{created}"),
        row(GET, "/deploy_keys", Own),
        row(GET, "/deploy_keys/{deploy_key}", Ids),
        row(DELETE, "/deploy_keys/{deploy_key}", Ids).fresh(&["deploy_key"]),
        row(PUT, "/sites/{site}/unlink_repo", Ids),
        row(POST, "/sites/{site}/builds", Ids).ok(400, "invalid_request"),
        row(GET, "/sites/{site}/builds", Ids),
        row(GET, "/builds/{build}", Ids),
        row(GET, "/deploys/{build_deploy}/log", Ids),
        row(POST, "/sites/{site}/build_hooks", Ids).json(r#"{"title": "t{uniq}"}"#),
        row(GET, "/sites/{site}/build_hooks", Ids),
        row(GET, "/sites/{site}/build_hooks/{build_hook}", Ids),
        row(PUT, "/sites/{site}/build_hooks/{build_hook}", Ids).json(r#"{"title": "renamed"}"#),
        row(DELETE, "/sites/{site}/build_hooks/{build_hook}", Ids).fresh(&["build_hook"]),
        // The hook's id is its credential; the fixture site is not linked.
        row(POST, "/build_hooks/{build_hook}", Own).ok(400, "invalid_request"),
        // A git host's push is refused unless signed with the site's secret.
        row(POST, "/git_hooks/{built}", Own).json("{}").ok(401, "unauthorized"),
        row(GET, "/{user}/sites", Ids),
        row(POST, "/{user}/sites", Ids).json("{}"),
        // Deploys.
        row(GET, "/sites/{site}/deploys", Ids),
        row(POST, "/sites/{site}/deploys", Ids).json(r#"{"files": {"draft.html": "{draft_sha}"}, "draft": true}"#),
        row(GET, "/sites/{site}/deploys/{deploy}", Ids),
        row(PUT, "/sites/{site}/deploys/{deploy}", Ids).json("{}"),
        row(POST, "/sites/{site}/deploys/{deploy}/restore", Ids),
        row(GET, "/deploys/{deploy}", Ids),
        row(DELETE, "/deploys/{deploy}", Ids).fresh(&["deploy"]),
        row(POST, "/deploys/{deploy}/cancel", Ids), // a ready deploy stays ready
        row(POST, "/deploys/{deploy}/lock", Ids),
        row(POST, "/deploys/{deploy}/unlock", Ids),
        row(PUT, "/deploys/{draft}/files/{file}", Ids).bytes("draft"),
        // Forms and submissions.
        row(GET, "/sites/{site}/forms", Ids),
        row(GET, "/sites/{site}/submissions", Ids),
        row(GET, "/forms", Own),
        row(GET, "/forms/{form}/submissions", Ids),
        row(GET, "/submissions", Own),
        row(GET, "/submissions/{submission}", Ids),
        row(DELETE, "/submissions/{submission}", Ids).fresh(&["submission"]),
        // Domains (the body of a create names A's site) and the WordPress plugin.
        row(POST, "/domains", Ids)
            .json(r#"{"domain": "new{uniq}.a-client.test", "email": "ann@a.test", "site_id": "{site}"}"#),
        row(GET, "/domains", Own),
        // Needs both permissions; A's payment method is no payment method of B's: 402 as for
        // an unknown one.
        row(POST, "/domains/register", Ids)
            .json(r#"{"domain": "reg{uniq}.a-client.test", "email": "ann@a.test", "payment_method_id": "{pm}", "site_id": "{site}"}"#)
            .foreign(402, "payment_required"),
        row(GET, "/domains/{domain}", Ids),
        row(PATCH, "/domains/{domain}", Ids).json(r#"{"site_id": "{site}"}"#),
        row(DELETE, "/domains/{domain}", Ids).fresh(&["domain"]),
        row(POST, "/domains/{domain}/verify", Ids),
        row(POST, "/domains/{domain}/wordpress_key", Ids).fresh(&["domain"]),
        row(GET, "/plugin/domain", Own),
    ]
}

/// The kinds of caller.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Anonymous,
    Operator,
    AFull,
    AKey(&'static str),
    AUser,
    AUser2,
    BFull,
    BUser,
    Plugin,
}

impl Who {
    fn name(self) -> String {
        match self {
            Who::Anonymous => "no credential".into(),
            Who::Operator => "operator".into(),
            Who::AFull => "A's full key".into(),
            Who::AKey(p) => format!("A's {p} key"),
            Who::AUser => "A's user".into(),
            Who::AUser2 => "A's other user".into(),
            Who::BFull => "B's key".into(),
            Who::BUser => "B's user".into(),
            Who::Plugin => "A's WordPress key".into(),
        }
    }

    /// Callers who must never see A's (or A's user's) data.
    fn is_foreign(self) -> bool {
        matches!(self, Who::AUser2 | Who::BFull | Who::BUser)
    }
}

/// True if a key holding only `held` may call a row needing all of `needed`.
fn grants(held: &str, needed: &[&str]) -> bool {
    needed.iter().all(|n| {
        held == *n
            || n.strip_suffix(":read")
                .is_some_and(|r| held == format!("{r}:write"))
    })
}

fn expected(row: &Row, who: Who) -> Outcome {
    let ok = row.ok;
    match (row.access, who) {
        (Public, _) => ok,
        (_, Who::Anonymous) => UNAUTHORIZED,
        (Operator, Who::Operator) | (Plugin, Who::Plugin) => ok,
        (Operator | Plugin, _) | (_, Who::Operator | Who::Plugin) => FORBIDDEN,
        (Key(..) | Tenant(..), Who::AFull) => ok,
        (Key(needed, _) | Tenant(needed, _), Who::AKey(held)) => {
            if grants(held, needed) {
                ok
            } else {
                FORBIDDEN
            }
        }
        (Key(..), Who::AUser | Who::AUser2 | Who::BUser) => FORBIDDEN,
        (Tenant(_, _), Who::AUser) => ok,
        (Tenant(_, Own), Who::AUser2 | Who::BUser) => Outcome::Success,
        (Tenant(_, Ids), Who::AUser2 | Who::BUser) => NOT_FOUND,
        (Key(_, reach) | Tenant(_, reach), Who::BFull) => row.foreign.unwrap_or(match reach {
            Own => Outcome::Success,
            Ids => NOT_FOUND,
        }),
    }
}

/// Fixture names that hold ids (the others are fixed names or values).
const NOT_IDS: &[&str] = &[
    // A build hook's id is the trigger URL's credential (like a token), not a tenant's id:
    // whoever holds it may trigger; the rows under `/sites/{site}` still carry the site's id.
    "build_hook",
    "page",
    "file",
    "cert_body",
    "draft_sha",
    "uniq",
    "mail_kind",
];

/// The `{name}` placeholders in a template.
fn placeholders(text: &str) -> Vec<&str> {
    text.match_indices('{')
        .filter_map(|(i, _)| {
            let rest = &text[i + 1..];
            let name = &rest[..rest.find('}')?];
            (!name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                .then_some(name)
        })
        .collect()
}

/// True if the row's path or body names one of A's ids.
fn carries_ids(row: &Row) -> bool {
    let body = match row.body {
        Body::Json(t) => t,
        _ => "",
    };
    placeholders(row.path)
        .into_iter()
        .chain(placeholders(body))
        .any(|n| !NOT_IDS.contains(&n))
}

/// A DNS server on 127.0.0.1 that answers every query with NXDOMAIN, so a verification check
/// misses at once instead of timing out.
async fn nxdomain_server() -> String {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            if n < 12 {
                continue;
            }
            // The question: its name's labels up to the root, then type and class.
            let mut end = 12;
            while end < n && buf[end] != 0 {
                end += 1 + buf[end] as usize;
            }
            end += 5;
            if end > n {
                continue;
            }
            let mut answer = buf[..end].to_vec();
            answer[2] = 0x80 | (buf[2] & 0x01); // a response, recursion as asked
            answer[3] = 0x80 | 3; // recursion available, NXDOMAIN
            answer[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
            let _ = sock.send_to(&answer, peer).await;
        }
    });
    addr
}

struct Matrix {
    app: TestApp,
    fx: HashMap<&'static str, String>,
    a_key: String,
    creds: HashMap<String, String>,
    /// Every id of A's: no foreign 2xx body may contain one.
    a_ids: Vec<String>,
    /// The ids of what A's user owns: A's other user must not see them either.
    ann_ids: Vec<String>,
    /// A's callers as the audit log names them.
    a_actors: Vec<String>,
    /// B's own domain, for a body naming A's site.
    b_domain: String,
    uniq: u32,
    failures: Vec<String>,
    checks: usize,
}

fn id_of(r: &Reply) -> String {
    r.body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {}", r.text))
        .to_string()
}

const FORM_PAGE: &[u8] = br#"<html><body><form name="contact" data-netlify="true">
    <input name="email"></form></body></html>"#;

impl Matrix {
    async fn setup() -> Matrix {
        let (registrar, _) = crate::registration::registrar().await;
        let dns = nxdomain_server().await;
        let app = TestApp::spawn_with(&[
            "--auth-failures-per-minute",
            "0",
            "--dns-server",
            &dns,
            "--verify-interval",
            "3600",
            "--registrar-webhook-url",
            &registrar,
            "--registrar-webhook-secret",
            crate::registration::SECRET,
            // Webhook rows point at a closed loopback port.
            "--allow-private-targets",
        ])
        .await;
        let a = app.reseller("Iso A").await;
        let b = app.reseller("Iso B").await;
        let ann = a.access_token(&app, "ann@a.test").await;
        let amy = a.access_token(&app, "amy@a.test").await;
        let ben = b.access_token(&app, "ben@b.test").await;
        let mut fx: HashMap<&'static str, String> = HashMap::new();

        // A's user owns a published site with a form and a submission, a draft deploy and a domain.
        let site = app
            .post("/api/v1/sites", &ann.token, json!({"name": "iso-a-shop"}))
            .await
            .expect(201);
        let site = id_of(&site);
        let deploy = zip_deploy(
            &app,
            &ann.token,
            &site,
            zip_of(&[("index.html", FORM_PAGE)]),
        )
        .await
        .expect(200);
        assert_eq!(deploy.body["state"], "ready", "{}", deploy.text);
        let draft = app
            .post(
                &format!("/api/v1/sites/{site}/deploys"),
                &ann.token,
                json!({"files": {"draft.html": sha1(b"draft")}, "draft": true}),
            )
            .await
            .expect(200);
        let forms = app
            .get(&format!("/api/v1/sites/{site}/forms"), &ann.token)
            .await
            .expect(200);
        fx.insert("form", forms.body[0]["id"].as_str().unwrap().to_string());
        fx.insert("site", site);
        fx.insert("deploy", id_of(&deploy));
        fx.insert("draft", id_of(&draft));
        fx.insert("file", "draft.html".into());
        fx.insert("draft_sha", sha1(b"draft"));
        fx.insert("user", ann.user_id.clone());
        fx.insert("token", a.access_token(&app, "ann@a.test").await.id);
        fx.insert(
            "spare_user",
            a.access_token(&app, "spare@a.test").await.user_id,
        );
        fx.insert(
            "held_user",
            a.access_token(&app, "held@a.test").await.user_id,
        );
        let plan = app
            .post(
                "/api/v1/plans",
                &a.key,
                json!({"name": "Iso plan", "max_sites": 50}),
            )
            .await
            .expect(201);
        fx.insert("plan", id_of(&plan));
        let profile = app
            .post(
                "/api/v1/proxy_profiles",
                &a.key,
                json!({"name": "Iso proxy", "origin": "http://127.0.0.1:9", "headers": {"X-Key": "iso-secret"}}),
            )
            .await
            .expect(201);
        fx.insert("proxy_profile", id_of(&profile));
        fx.insert("page", "not_found".into());
        let built = id_of(
            &app.post("/api/v1/sites", &ann.token, json!({"name": "iso-built"}))
                .await
                .expect(201),
        );
        app.patch(
            &format!("/api/v1/sites/{built}"),
            &ann.token,
            json!({"repo": {"repo_url": "https://127.0.0.1:9/none.git", "cmd": "true"}}),
        )
        .await
        .expect(200);
        let build = app
            .post(
                &format!("/api/v1/sites/{built}/builds"),
                &ann.token,
                json!({}),
            )
            .await
            .expect(200);
        fx.insert("build", id_of(&build));
        fx.insert(
            "build_deploy",
            build.body["deploy_id"].as_str().unwrap().to_string(),
        );
        fx.insert("built", built);
        let key = app
            .post("/api/v1/deploy_keys", &ann.token, json!({}))
            .await
            .expect(201);
        fx.insert("deploy_key", id_of(&key));
        let hook = app
            .post(
                &format!("/api/v1/sites/{}/build_hooks", fx["site"]),
                &ann.token,
                json!({"title": "iso"}),
            )
            .await
            .expect(201);
        fx.insert("build_hook", id_of(&hook));
        app.post(
            &format!("/api/v1/accounts/{}/env", ann.user_id),
            &ann.token,
            json!([{"key": "ISO", "values": [{"value": "v"}]}]),
        )
        .await
        .expect(201);
        fx.insert("env_key", "ISO".into());
        fx.insert("mail_kind", "deploy_ready".into());
        app.patch(
            "/api/v1/reseller",
            &a.key,
            json!({"notification_email": "noreply@own.test"}),
        )
        .await
        .expect(200);
        fx.insert("reseller", a.id.clone());
        let domain = app
            .post(
                "/api/v1/domains",
                &a.key,
                json!({"domain": "shop.a-client.test", "email": "ann@a.test", "site_id": fx["site"]}),
            )
            .await
            .expect(201);
        let wp = domain.body["wordpress_api_key"]
            .as_str()
            .unwrap()
            .to_string();
        fx.insert("domain", id_of(&domain));
        let key = app
            .post(
                "/api/v1/keys",
                &a.key,
                json!({"name": "spare", "permissions": ["sites:read"]}),
            )
            .await
            .expect(201);
        fx.insert("key", id_of(&key));
        let pm = app
            .post(
                "/api/v1/payment_methods",
                &a.key,
                json!({"label": "card", "type": "card", "reference": "4242"}),
            )
            .await
            .expect(201);
        fx.insert("pm", id_of(&pm));
        let signing_key = app
            .post("/api/v1/signing_keys", &a.key, json!({"alg": "EdDSA"}))
            .await
            .expect(201);
        fx.insert("signing_key", id_of(&signing_key));
        let webhook = app
            .post(
                "/api/v1/webhooks",
                &a.key,
                json!({"url": "http://127.0.0.1:9/hook", "events": ["key.created"]}),
            )
            .await
            .expect(201);
        let webhook = id_of(&webhook);
        app.post(
            "/api/v1/keys",
            &a.key,
            json!({"name": "for a delivery", "permissions": ["sites:read"]}),
        )
        .await
        .expect(201);
        let mut delivery = Value::Null;
        for _ in 0..100 {
            delivery = app
                .get(&format!("/api/v1/webhooks/{webhook}/deliveries"), &a.key)
                .await
                .expect(200)
                .body[0]["id"]
                .clone();
            if !delivery.is_null() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        fx.insert("webhook", webhook);
        fx.insert(
            "delivery",
            delivery.as_str().expect("a delivery").to_string(),
        );
        let page = app
            .client
            .put(app.url("/api/v1/reseller/pages/not_found"))
            .bearer_auth(&a.key)
            .header("content-type", "text/html")
            .body("<p>A-ONLY-PAGE</p>")
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 204);

        // Operator fixtures: a spare reseller, and one with a preview domain for a wildcard.
        fx.insert("spare_reseller", app.reseller("Iso Spare").await.id);
        let c = app.reseller("Iso C").await;
        app.set_preview_domain(&c, "sites.c.test").await;
        let cert_key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["*.sites.c.test".to_string()])
            .unwrap()
            .self_signed(&cert_key)
            .unwrap();
        fx.insert(
            "cert_body",
            json!({"certificate": cert.pem(), "private_key": cert_key.serialize_pem()}).to_string(),
        );
        fx.insert("cert_reseller", c.id);

        // B has data of its own, so its lists are not trivially empty.
        let b_site = app
            .post("/api/v1/sites", &ben.token, json!({"name": "iso-b-shop"}))
            .await
            .expect(201);
        let b_domain = app
            .post(
                "/api/v1/domains",
                &b.key,
                json!({"domain": "shop.b-client.test", "email": "ben@b.test", "site_id": id_of(&b_site)}),
            )
            .await
            .expect(201);

        let mut creds = HashMap::new();
        creds.insert(Who::Operator.name(), app.operator.clone());
        creds.insert(Who::AFull.name(), a.key.clone());
        creds.insert(Who::AUser.name(), ann.token.clone());
        creds.insert(Who::AUser2.name(), amy.token.clone());
        creds.insert(Who::BFull.name(), b.key.clone());
        creds.insert(Who::BUser.name(), ben.token.clone());
        creds.insert(Who::Plugin.name(), wp);

        let mut m = Matrix {
            app,
            fx,
            a_key: a.key,
            creds,
            a_ids: Vec::new(),
            ann_ids: Vec::new(),
            a_actors: vec![a.key_id.clone()],
            b_domain: id_of(&b_domain),
            uniq: 0,
            failures: Vec::new(),
            checks: 0,
        };
        // The submission is posted to the site like a browser would.
        let submission = m.fresh_submission().await;
        m.fx.insert("submission", submission);
        m.ann_ids = [
            "user",
            "token",
            "site",
            "deploy",
            "draft",
            "form",
            "submission",
            "domain",
        ]
        .iter()
        .map(|k| m.fx[k].clone())
        .collect();
        m.a_ids = m.ann_ids.clone();
        m.a_ids.extend(
            [
                "reseller",
                "spare_user",
                "held_user",
                "plan",
                "proxy_profile",
                "key",
                "pm",
                "signing_key",
                "webhook",
                "delivery",
            ]
            .iter()
            .map(|k| m.fx[k].clone()),
        );
        m.a_ids
            .extend([a.id, a.key_id, amy.user_id, amy.id, ann.id]);
        m.a_ids.push("A-ONLY-PAGE".into());
        m.a_ids.push("iso-secret".into());
        m
    }

    fn next_uniq(&mut self) -> u32 {
        self.uniq += 1;
        self.uniq
    }

    async fn fresh_submission(&mut self) -> String {
        let n = self.next_uniq();
        let r = self
            .app
            .client
            .post(self.app.url("/"))
            .header("host", "iso-a-shop.localhost")
            .form(&[("form-name", "contact"), ("email", &format!("v{n}@x.test"))])
            .send()
            .await
            .unwrap();
        assert!(r.status().as_u16() < 400, "form post: {}", r.status());
        let subs = self
            .app
            .get(
                &format!("/api/v1/forms/{}/submissions", self.fx["form"]),
                &self.a_key,
            )
            .await
            .expect(200);
        assert_eq!(subs.body[0]["data"]["email"], format!("v{n}@x.test"));
        subs.body[0]["id"].as_str().unwrap().to_string()
    }

    /// A throwaway fixture for a call expected to succeed. `cred` is the caller's credential
    /// (custom pages belong to whoever calls).
    async fn fresh(&mut self, name: &str, cred: &str) -> String {
        let n = self.next_uniq();
        let (app, a) = (&self.app, self.a_key.as_str());
        let ann = self.fx["user"].as_str();
        match name {
            "site" => id_of(
                &app.post("/api/v1/sites", a, json!({"user_id": ann}))
                    .await
                    .expect(201),
            ),
            "deploy" => id_of(
                &app.post(
                    &format!("/api/v1/sites/{}/deploys", self.fx["site"]),
                    a,
                    json!({"draft": true}),
                )
                .await
                .expect(200),
            ),
            "domain" => id_of(
                &app.post(
                    "/api/v1/domains",
                    a,
                    json!({"domain": format!("tmp{n}.a-client.test"), "email": "ann@a.test"}),
                )
                .await
                .expect(201),
            ),
            "key" => id_of(
                &app.post(
                    "/api/v1/keys",
                    a,
                    json!({"name": "tmp", "permissions": ["sites:read"]}),
                )
                .await
                .expect(201),
            ),
            "proxy_profile" => id_of(
                &app.post(
                    "/api/v1/proxy_profiles",
                    a,
                    json!({"name": "Fresh proxy", "origin": format!("http://127.0.0.3:{}", 1000 + n)}),
                )
                .await
                .expect(201),
            ),
            "plan" => id_of(
                &app.post("/api/v1/plans", a, json!({"name": "Fresh plan"}))
                    .await
                    .expect(201),
            ),
            "webhook" => id_of(
                &app.post(
                    "/api/v1/webhooks",
                    a,
                    json!({"url": "http://127.0.0.1:9/fresh", "events": ["*"]}),
                )
                .await
                .expect(201),
            ),
            "signing_key" => id_of(
                &app.post("/api/v1/signing_keys", a, json!({"alg": "EdDSA"}))
                    .await
                    .expect(201),
            ),
            "pm" => id_of(
                &app.post(
                    "/api/v1/payment_methods",
                    a,
                    json!({"label": "tmp", "type": "invoice", "reference": "x"}),
                )
                .await
                .expect(201),
            ),
            "token" => id_of(
                &app.post(
                    "/api/v1/access_tokens",
                    a,
                    json!({"user": {"email": "ann@a.test"}}),
                )
                .await
                .expect(201),
            ),
            "spare_user" => app
                .post(
                    "/api/v1/access_tokens",
                    a,
                    json!({"user": {"email": format!("tmp{n}@a.test")}}),
                )
                .await
                .expect(201)
                .body["user_id"]
                .as_str()
                .unwrap()
                .to_string(),
            "spare_reseller" => app.reseller(&format!("Tmp {n}")).await.id,
            "cert_reseller" => {
                let path = format!(
                    "/api/v1/admin/resellers/{}/certificate",
                    self.fx["cert_reseller"]
                );
                let body: Value = serde_json::from_str(&self.fx["cert_body"]).unwrap();
                app.call(PUT, &path, Some(&app.operator), Some(body))
                    .await
                    .expect(200);
                self.fx["cert_reseller"].clone()
            }
            "page" => {
                let r = app
                    .client
                    .put(app.url("/api/v1/reseller/pages/form_success"))
                    .bearer_auth(cred)
                    .header("content-type", "text/html")
                    .body(format!("<p>thanks {n}</p>"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 204, "page fixture");
                "form_success".into()
            }
            "submission" => self.fresh_submission().await,
            // A deploy key belongs to whoever made it (a user's is its own).
            "deploy_key" => id_of(
                &app.post("/api/v1/deploy_keys", cred, json!({}))
                    .await
                    .expect(201),
            ),
            "build_hook" => id_of(
                &app.post(
                    &format!("/api/v1/sites/{}/build_hooks", self.fx["site"]),
                    a,
                    json!({"title": format!("h{n}")}),
                )
                .await
                .expect(201),
            ),
            "env_key" => {
                let key = format!("FRESH{n}");
                app.post(
                    &format!("/api/v1/accounts/{ann}/env"),
                    a,
                    json!([{"key": key, "values": [{"value": "v"}]}]),
                )
                .await
                .expect(201);
                key
            }
            other => panic!("no fresh fixture named {other}"),
        }
    }

    /// Fills `{name}` placeholders; `unknown` swaps every id for one that does not exist.
    fn fill(
        &mut self,
        template: &str,
        fx: &HashMap<&'static str, String>,
        unknown: bool,
    ) -> String {
        let mut out = template.to_string();
        if out.contains("{uniq}") {
            let n = self.next_uniq();
            out = out.replace("{uniq}", &n.to_string());
        }
        for (name, value) in fx {
            let value = if unknown && !NOT_IDS.contains(name) {
                "0unknown0id0"
            } else {
                value.as_str()
            };
            out = out.replace(&format!("{{{name}}}"), value);
        }
        assert!(
            placeholders(&out).is_empty(),
            "unfilled placeholder in {out}"
        );
        out
    }

    async fn send(
        &mut self,
        row: &Row,
        fx: &HashMap<&'static str, String>,
        cred: Option<&str>,
        unknown: bool,
    ) -> (String, Reply) {
        let path = self.fill(row.path, fx, unknown);
        let json = match row.body {
            Body::Json(t) => {
                let text = self.fill(t, fx, unknown);
                serde_json::from_str::<Value>(&text)
                    .unwrap_or_else(|e| panic!("{}: body template is not JSON: {e}", row.label()));
                Some(text)
            }
            _ => None,
        };
        let app = &self.app;
        let mut req = app
            .client
            .request(row.method.clone(), app.url(&format!("/api/v1{path}")));
        if let Some(c) = cred {
            req = req.bearer_auth(c);
        }
        req = match (row.body, json) {
            (Body::Json(_), Some(text)) => {
                req.header("content-type", "application/json").body(text)
            }
            (Body::Html(h), _) => req.header("content-type", "text/html").body(h),
            (Body::Bytes(b), _) => req
                .header("content-type", "application/octet-stream")
                .body(b),
            _ => req,
        };
        let r = reply(req.send().await.expect("request")).await;
        (path, r)
    }

    fn check(&mut self, row: &Row, who: Who, path: &str, want: Outcome, got: &Reply) {
        self.checks += 1;
        let status = got.status.as_u16();
        let fine = match want {
            Outcome::Success => got.status.is_success(),
            Outcome::Error(s, code) => {
                status == s && got.body["code"] == s && got.body["error"] == code
            }
        };
        if !fine {
            let mut text = got.text.clone();
            text.truncate(200);
            self.failures.push(format!(
                "{:<45} as {:<24} expected {}, got {status} {text}  [{} {path}]",
                row.label(),
                who.name(),
                match want {
                    Outcome::Success => "2xx".to_string(),
                    Outcome::Error(s, c) => format!("{s} {c}"),
                },
                row.method,
            ));
            return;
        }
        if got.status.is_success() && who.is_foreign() {
            let secrets = if row.echoes_requests {
                // Its own requests name A's ids; entries of A's callers must not show up.
                &self.a_actors
            } else if who == Who::AUser2 {
                &self.ann_ids
            } else {
                &self.a_ids
            };
            if let Some(leaked) = secrets.iter().find(|id| got.text.contains(id.as_str())) {
                self.failures.push(format!(
                    "{:<45} as {:<24} leaked A's id {leaked}: {}",
                    row.label(),
                    who.name(),
                    got.text
                ));
            }
        }
    }

    /// Runs every row as one caller.
    async fn run_as(&mut self, who: Who, mut cred: Option<String>, rows: &[Row]) {
        for row in rows {
            let want = expected(row, who);
            let mut fx = self.fx.clone();
            if want.is_success() {
                for name in row.fresh {
                    let value = self.fresh(name, cred.as_deref().unwrap_or("")).await;
                    fx.insert(name, value);
                }
            }
            let (path, got) = self.send(row, &fx, cred.as_deref(), false).await;
            self.check(row, who, &path, want, &got);
            if got.status.is_success() && row.logs_out {
                // A's user was logged out everywhere: it logs in again.
                let token = self
                    .app
                    .post(
                        "/api/v1/access_tokens",
                        &self.a_key,
                        json!({"user": {"email": "ann@a.test"}}),
                    )
                    .await
                    .expect(201)
                    .body["access_token"]
                    .as_str()
                    .unwrap()
                    .to_string();
                self.creds.insert(Who::AUser.name(), token.clone());
                if who == Who::AUser {
                    cred = Some(token);
                }
            }
            if got.status.is_success() {
                if let Some(cleanup) = row.cleanup {
                    let p = format!("/api/v1{}", cleanup.replace("{created}", &id_of(&got)));
                    self.app
                        .delete(&p, cred.as_deref().unwrap())
                        .await
                        .expect(204);
                }
            }
            // A foreign caller's answer about A's ids must be the answer about ids that do not
            // exist: nothing tells it A's resource is there.
            if who.is_foreign() && carries_ids(row) {
                let (upath, unknown) = self.send(row, &fx, cred.as_deref(), true).await;
                self.checks += 1;
                if unknown.status != got.status || unknown.body["error"] != got.body["error"] {
                    self.failures.push(format!(
                        "{:<45} as {:<24} tells A's ids from unknown ones: {} {} vs {} {}  [{path} vs {upath}]",
                        row.label(),
                        who.name(),
                        got.status,
                        got.body["error"],
                        unknown.status,
                        unknown.body["error"],
                    ));
                }
            }
        }
    }
}

#[tokio::test]
async fn tenant_isolation_matrix() {
    let rows = rows();
    let mut m = Matrix::setup().await;
    // Each one-permission key lives only for its own run: a reseller has at most 6 live keys.
    let mut order = vec![
        Who::Anonymous,
        Who::Operator,
        Who::Plugin,
        Who::BFull,
        Who::BUser,
        Who::AUser2,
    ];
    order.extend(PERMISSIONS.map(Who::AKey));
    order.extend([Who::AUser, Who::AFull]);
    for who in order {
        let (cred, temp_key) = match who {
            Who::Anonymous => (None, None),
            Who::AKey(p) => {
                let r = m
                    .app
                    .post(
                        "/api/v1/keys",
                        &m.a_key,
                        json!({"name": format!("only {p}"), "permissions": [p]}),
                    )
                    .await
                    .expect(201);
                (
                    Some(r.body["key"].as_str().unwrap().to_string()),
                    Some(id_of(&r)),
                )
            }
            other => (Some(m.creds[&other.name()].clone()), None),
        };
        m.run_as(who, cred, &rows).await;
        if let Some(id) = temp_key {
            m.app
                .delete(&format!("/api/v1/keys/{id}"), &m.a_key)
                .await
                .expect(204);
        }
    }
    // Not vacuous: every row was allowed for someone and refused to someone else.
    for r in &rows {
        assert!(
            [Who::Operator, Who::Plugin, Who::AFull]
                .iter()
                .any(|w| expected(r, *w) == r.ok),
            "{} is allowed to nobody",
            r.label()
        );
    }
    // B's own domain cannot be pointed at A's site either.
    let b_key = m.creds[&Who::BFull.name()].clone();
    m.app
        .patch(
            &format!("/api/v1/domains/{}", m.b_domain),
            &b_key,
            json!({"site_id": m.fx["site"]}),
        )
        .await
        .expect_error(404, "not_found");
    // A refused create leaves nothing behind: B's domain creates naming A's site (for the
    // client ann@a.test) made no user in B.
    let b_users = m
        .app
        .get("/api/v1/users", &m.creds[&Who::BFull.name()])
        .await
        .expect(200);
    let leftovers: Vec<&Value> = b_users
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["email"] == "ann@a.test")
        .collect();
    assert!(
        leftovers.is_empty(),
        "refused domain creates left users behind in B: {leftovers:?}"
    );
    assert!(m.checks > 1000, "only {} checks ran", m.checks);
    assert!(
        m.failures.is_empty(),
        "{} of {} isolation checks failed:\n{}",
        m.failures.len(),
        m.checks,
        m.failures.join("\n")
    );
    eprintln!(
        "isolation matrix: {} rows, {} checks passed",
        rows.len(),
        m.checks
    );
}

/// Every (method, path) registered under `/api/v1`: the table the route registration is made from
/// (`api::ENDPOINTS`), so nothing registered can be missing from it.
pub(crate) fn registered_routes() -> BTreeSet<(String, String)> {
    resellerd::api::routes()
        .map(|r| (r.method.to_ascii_uppercase(), shape(r.path)))
        .collect()
}

/// A path with every `{placeholder}` (and `{tail:.*}`) reduced to `{}`.
pub(crate) fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    out.push_str("{}");
                }
            }
            '}' => depth -= 1,
            _ if depth > 0 => {}
            _ => out.push(c),
        }
    }
    out
}

#[test]
fn every_route_has_an_isolation_row() {
    let routes = registered_routes();
    assert!(
        routes.len() >= 60,
        "the route table has only {} routes",
        routes.len()
    );
    let covered: BTreeSet<(String, String)> = rows()
        .iter()
        .map(|r| (r.method.to_string(), shape(r.path)))
        .collect();
    let missing: Vec<String> = routes
        .difference(&covered)
        .map(|(m, p)| format!("  {m} /api/v1{p}"))
        .collect();
    assert!(
        missing.is_empty(),
        "these endpoints have no row in the isolation matrix (tests/api/isolation.rs, rows()); \
         add one saying who may call them:\n{}",
        missing.join("\n")
    );
    let stale: Vec<String> = covered
        .difference(&routes)
        .map(|(m, p)| format!("  {m} /api/v1{p}"))
        .collect();
    assert!(
        stale.is_empty(),
        "these isolation rows match no registered route:\n{}",
        stale.join("\n")
    );
}
