//! A notification message in MIME: multipart/alternative with a text and an HTML part, both
//! UTF-8 in base64, header values that are not plain ASCII as RFC 2047 encoded words. Lines end
//! in CRLF and stay under 78 characters, so DKIM's relaxed canonicalization finds nothing to
//! change in transit.

use crate::model::Timestamp;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

pub struct Message<'a> {
    pub from_name: Option<&'a str>,
    pub from: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub html: &'a str,
    /// `<id@domain>`.
    pub message_id: String,
    pub date: Timestamp,
}

/// The header fields, in order, and the body.
pub fn render(m: &Message) -> (Vec<(&'static str, String)>, Vec<u8>) {
    let boundary = format!("=_resellerd_{}", crate::model::new_id());
    let from = match m.from_name {
        Some(name) if !name.trim().is_empty() => format!("{} <{}>", phrase(name), m.from),
        _ => m.from.to_string(),
    };
    let date = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(m.date.0)
        .unwrap_or_default()
        .to_rfc2822();
    let headers = vec![
        ("From", from),
        ("To", m.to.to_string()),
        ("Subject", encoded(m.subject)),
        ("Date", date),
        ("Message-ID", m.message_id.clone()),
        ("MIME-Version", "1.0".to_string()),
        (
            "Content-Type",
            format!("multipart/alternative;\r\n boundary=\"{boundary}\""),
        ),
    ];
    let mut body = String::new();
    for (kind, content) in [("text/plain", m.text), ("text/html", m.html)] {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Type: {kind}; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        ));
        let encoded = STANDARD.encode(content.as_bytes());
        for line in encoded.as_bytes().chunks(76) {
            body.push_str(&String::from_utf8_lossy(line));
            body.push_str("\r\n");
        }
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (headers, body.into_bytes())
}

/// The whole message: header fields (each `Name: value` CRLF), a blank line, the body.
pub fn assemble(headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 1024);
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// A header value as is when it is short printable ASCII, else as encoded words (each under
/// 75 characters, folded onto continuation lines).
pub fn encoded(value: &str) -> String {
    let value: String = value.chars().filter(|c| !c.is_control()).collect();
    if value.is_ascii() && value.len() <= 60 {
        return value;
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in value.chars() {
        // 39 bytes of UTF-8 make 52 of base64: with `=?utf-8?b?` and `?=` a word is 64, short
        // enough for a line with the field name.
        if chunk.len() + c.len_utf8() > 39 {
            words.push(format!("=?utf-8?b?{}?=", STANDARD.encode(&chunk)));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?utf-8?b?{}?=", STANDARD.encode(&chunk)));
    }
    words.join("\r\n ")
}

/// A display name: quoted if it is plain ASCII, else encoded words.
fn phrase(name: &str) -> String {
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    if name.is_ascii() && name.len() <= 60 {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        encoded(&name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_two_parts_and_short_lines() {
        let m = Message {
            from_name: Some("Agence Été"),
            from: "noreply@agency.test",
            to: "client@x.test",
            subject: "Votre site « été » est en ligne — merci d'avoir choisi notre agence",
            text: "Bonjour",
            html: "<p>Bonjour</p>",
            message_id: "<1@agency.test>".into(),
            date: Timestamp(1_700_000_000_000),
        };
        let (headers, body) = render(&m);
        let whole = String::from_utf8(assemble(&headers, &body)).unwrap();
        assert!(whole.contains("Content-Type: text/plain; charset=utf-8"));
        assert!(whole.contains("Content-Type: text/html; charset=utf-8"));
        assert!(whole.contains("=?utf-8?b?"));
        for line in whole.split("\r\n") {
            assert!(line.len() <= 78, "{line}");
            assert!(!line.contains('\n'), "bare LF in {line:?}");
        }
    }
}
