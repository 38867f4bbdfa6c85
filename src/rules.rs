//! Redirect and header rules of a deploy: `[[redirects]]`/`[[headers]]` from `netlify.toml`
//! (where netlify-cli puts them) and the `_redirects`/`_headers` files (zip and API deploys).

use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// The files of a deploy that hold rules (never served).
pub const RULE_FILES: [&str; 3] = ["_redirects", "_headers", "netlify.toml"];
/// Most rules (redirects plus header blocks) one rules file may hold.
pub const MAX_RULES: usize = 10_000;
/// Largest rules file, in bytes.
pub const MAX_RULES_FILE: usize = 1 << 20;

/// Checks one rules file of a deploy against `MAX_RULES_FILE` and `MAX_RULES`; the error says
/// which limit and by how much.
pub fn check_limits(name: &str, data: &[u8]) -> Result<(), String> {
    if data.len() > MAX_RULES_FILE {
        return Err(format!(
            "{name} is larger than the limit of {MAX_RULES_FILE} bytes"
        ));
    }
    let text = String::from_utf8_lossy(data);
    let count = match name {
        "_redirects" => parse_redirects_file(&text).len(),
        "_headers" => parse_headers_file(&text).len(),
        _ => {
            let (r, h) = parse_netlify_toml(&text);
            r.len() + h.len()
        }
    };
    if count > MAX_RULES {
        return Err(format!(
            "{name} has {count} rules; a deploy's rules file may have at most {MAX_RULES}"
        ));
    }
    Ok(())
}

/// Rules indexed by the first segment of their pattern, built once per deploy, so a request
/// looks only at the rules that could match its path (plus those starting with a placeholder
/// or splat), in their original order.
pub struct RuleSet<T> {
    rules: Vec<T>,
    by_first: HashMap<String, Vec<usize>>,
    any: Vec<usize>,
}

impl<T> Default for RuleSet<T> {
    fn default() -> Self {
        RuleSet {
            rules: Vec::new(),
            by_first: HashMap::new(),
            any: Vec::new(),
        }
    }
}

/// The segment a pattern or path is indexed by (as `match_pattern` splits them), or None for a
/// pattern that can match any first segment.
fn first_segment(pattern: &str) -> Option<&str> {
    let mut segs = pattern.trim_end_matches('/').split('/');
    if segs.next() != Some("") {
        return None;
    }
    match segs.next() {
        None => Some(""),
        Some(s) if s == "*" || s.starts_with(':') => None,
        Some(s) => Some(s),
    }
}

impl<T> RuleSet<T> {
    pub fn new(rules: Vec<T>, pattern: impl Fn(&T) -> &str) -> RuleSet<T> {
        let mut set = RuleSet::default();
        for (i, rule) in rules.iter().enumerate() {
            match first_segment(pattern(rule)) {
                Some(first) => set.by_first.entry(first.to_string()).or_default().push(i),
                None => set.any.push(i),
            }
        }
        set.rules = rules;
        set
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules that may match `path`, in their original order.
    pub fn candidates<'a>(&'a self, path: &str) -> impl Iterator<Item = &'a T> + 'a {
        let first = path.trim_end_matches('/').split('/').nth(1).unwrap_or("");
        let exact: &[usize] = self.by_first.get(first).map_or(&[], Vec::as_slice);
        let (mut a, mut b) = (exact.iter().peekable(), self.any.iter().peekable());
        std::iter::from_fn(move || {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x < y => a.next(),
                (Some(_), None) => a.next(),
                _ => b.next(),
            }?;
            self.rules.get(*next)
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Redirect {
    pub from: String,
    pub to: String,
    pub status: u16,
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeaderRule {
    pub pattern: String,
    pub values: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct TomlRedirect {
    from: String,
    to: String,
    status: Option<u16>,
    #[serde(default)]
    force: bool,
}

#[derive(Deserialize)]
struct TomlHeaders {
    #[serde(rename = "for")]
    pattern: String,
    #[serde(default)]
    values: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize, Default)]
struct NetlifyToml {
    #[serde(default)]
    redirects: Vec<TomlRedirect>,
    #[serde(default)]
    headers: Vec<TomlHeaders>,
}

/// The rules of a `netlify.toml`; a file that does not parse contributes none.
pub fn parse_netlify_toml(text: &str) -> (Vec<Redirect>, Vec<HeaderRule>) {
    let Ok(cfg) = toml::from_str::<NetlifyToml>(text) else {
        return (Vec::new(), Vec::new());
    };
    let redirects = cfg
        .redirects
        .into_iter()
        .map(|r| Redirect {
            from: r.from,
            to: r.to,
            status: r.status.unwrap_or(301),
            force: r.force,
        })
        .collect();
    let headers = cfg
        .headers
        .into_iter()
        .map(|h| HeaderRule {
            pattern: h.pattern,
            values: h
                .values
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        toml::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect(),
        })
        .collect();
    (redirects, headers)
}

/// `_redirects`: `FROM TO [STATUS[!]]` per line, `#` comments.
pub fn parse_redirects_file(text: &str) -> Vec<Redirect> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("").trim();
            let mut parts = line.split_whitespace();
            let from = parts.next()?;
            let to = parts.next()?;
            let (status, force) = match parts.next() {
                Some(s) => {
                    let force = s.ends_with('!');
                    (s.trim_end_matches('!').parse().ok()?, force)
                }
                None => (301, false),
            };
            Some(Redirect {
                from: from.to_string(),
                to: to.to_string(),
                status,
                force,
            })
        })
        .collect()
}

/// `_headers`: a path pattern on its own line, then indented `Name: value` lines.
pub fn parse_headers_file(text: &str) -> Vec<HeaderRule> {
    let mut rules: Vec<HeaderRule> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            rules.push(HeaderRule {
                pattern: line.trim().to_string(),
                values: Vec::new(),
            });
        } else if let (Some(rule), Some((k, v))) = (rules.last_mut(), line.split_once(':')) {
            rule.values
                .push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    rules
}

/// Matches a path against a pattern with `:name` segments and a trailing `*` splat; returns
/// the captured placeholders (`splat` for the star).
pub fn match_pattern(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
    let pat: Vec<&str> = pattern.trim_end_matches('/').split('/').collect();
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut caps = Vec::new();
    for (i, p) in pat.iter().enumerate() {
        if *p == "*" {
            caps.push(("splat".to_string(), segs.get(i..).unwrap_or(&[]).join("/")));
            return Some(caps);
        }
        let s = segs.get(i)?;
        if let Some(name) = p.strip_prefix(':') {
            caps.push((name.to_string(), s.to_string()));
        } else if p != s {
            return None;
        }
    }
    (pat.len() == segs.len()).then_some(caps)
}

/// The target of a matched rule with its placeholders filled in.
pub fn expand(to: &str, caps: &[(String, String)]) -> String {
    let mut out = to.to_string();
    for (name, value) in caps {
        out = out.replace(&format!(":{name}"), value);
    }
    out
}

/// What a placeholder's value may not carry into a URL's path unencoded: what would end the path
/// (`?`, `#`), a `%` (the value is already decoded), a `\` (read as `/` in http URLs), spaces and
/// controls.
const IN_PATH: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// The absolute URL of a matched rule, its placeholders percent-encoded so a value stays inside
/// the path; None if a value has a `.` or `..` segment (it would climb out of the rule's path
/// once the URL is resolved: `/api/..%2fadmin` must not reach the origin's `/admin`).
pub fn expand_url(to: &str, caps: &[(String, String)]) -> Option<String> {
    let mut out = to.to_string();
    for (name, value) in caps {
        if value.split('/').any(|seg| seg == "." || seg == "..") {
            return None;
        }
        let encoded = percent_encoding::utf8_percent_encode(value, IN_PATH).to_string();
        out = out.replace(&format!(":{name}"), &encoded);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_targets_keep_placeholders_inside_the_path() {
        let caps = match_pattern("/api/*", "/api/../../admin/x").unwrap();
        assert_eq!(expand_url("https://o.test/public/:splat", &caps), None);
        let caps = match_pattern("/api/*", "/api/a/./b").unwrap();
        assert_eq!(expand_url("https://o.test/public/:splat", &caps), None);
        let caps = match_pattern("/api/*", "/api/x?admin=1#frag %\\y").unwrap();
        assert_eq!(
            expand_url("https://o.test/public/:splat?k=v", &caps).as_deref(),
            Some("https://o.test/public/x%3Fadmin=1%23frag%20%25%5Cy?k=v")
        );
        let caps = match_pattern("/api/*", "/api/v1/items..json").unwrap();
        assert_eq!(
            expand_url("https://o.test/:splat", &caps).as_deref(),
            Some("https://o.test/v1/items..json")
        );
    }

    #[test]
    fn patterns_and_files() {
        assert_eq!(match_pattern("/old", "/old"), Some(vec![]));
        assert_eq!(match_pattern("/old", "/old/"), Some(vec![]));
        assert_eq!(match_pattern("/old", "/older"), None);
        let caps = match_pattern("/blog/:year/*", "/blog/2024/a/b").unwrap();
        assert_eq!(expand("/news/:year/:splat", &caps), "/news/2024/a/b");
        assert!(match_pattern("/*", "/anything/at/all").is_some());
        let set = RuleSet::new(
            parse_redirects_file("/a /1\n/:x /2\n/b/* /3\n/a/c /4\n/* /5\n"),
            |r| r.from.as_str(),
        );
        let to: Vec<&str> = set.candidates("/a/c").map(|r| r.to.as_str()).collect();
        assert_eq!(to, ["/1", "/2", "/4", "/5"]);
        assert!(check_limits("_redirects", "/a /b\n".repeat(MAX_RULES + 1).as_bytes()).is_err());
        assert!(check_limits("_redirects", "/a /b\n".repeat(10).as_bytes()).is_ok());
        let r = parse_redirects_file("# c\n/a /b\n/c /d 302!\n/spa/* /index.html 200\n");
        assert_eq!(r.len(), 3);
        assert_eq!((r[1].status, r[1].force), (302, true));
        let h = parse_headers_file("/*\n  X-Frame-Options: DENY\n  X-A: b\n");
        assert_eq!(h[0].values.len(), 2);
        let (r, h) = parse_netlify_toml(
            "[[redirects]]\nfrom='/x'\nto='/y'\nforce=false\n[[headers]]\nfor='/*'\n[headers.values]\nX-T='1'\n",
        );
        assert_eq!(r[0].status, 301);
        assert_eq!(h[0].values, [("X-T".to_string(), "1".to_string())]);
    }
}
