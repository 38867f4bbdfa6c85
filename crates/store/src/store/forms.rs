//! Forms detected in a site's HTML at deploy time (`<form netlify>` / `data-netlify="true"`)
//! and the submissions the edge stores for them.

use super::events::{emit, Subject};
pub use super::records::Submission;
use super::{decode, encode, get, ids_under, Store};
use crate::error::{StoreError, StoreResult};
use crate::kv::Transactional;
use crate::model::{new_id, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Form {
    pub id: String,
    pub site_id: String,
    pub reseller_id: String,
    pub user_id: String,
    pub name: String,
    pub paths: Vec<String>,
    pub fields: Vec<String>,
    pub action: Option<String>,
    pub honeypot: Option<String>,
    pub submission_count: u64,
    pub created_at: Timestamp,
}

/// A form as found in one HTML file.
#[derive(Debug, PartialEq)]
pub struct FoundForm {
    pub name: String,
    pub fields: Vec<String>,
    pub action: Option<String>,
    pub honeypot: Option<String>,
}

/// The Netlify forms in an HTML document, named by `name` (or `form-N` by position).
pub fn detect_forms(html: &str) -> Vec<FoundForm> {
    let doc = scraper::Html::parse_document(html);
    let (Ok(forms), Ok(inputs)) = (
        scraper::Selector::parse("form"),
        scraper::Selector::parse("input[name], textarea[name], select[name], button[name]"),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, form) in doc.select(&forms).enumerate() {
        let el = form.value();
        let netlify = el.attr("netlify").is_some()
            || el
                .attr("data-netlify")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if !netlify {
            continue;
        }
        let mut fields: Vec<String> = Vec::new();
        for input in form.select(&inputs) {
            if let Some(n) = input.value().attr("name") {
                if n != "form-name" && !fields.iter().any(|f| f == n) {
                    fields.push(n.to_string());
                }
            }
        }
        let honeypot = el
            .attr("netlify-honeypot")
            .or_else(|| el.attr("data-netlify-honeypot"))
            .map(str::to_string);
        out.push(FoundForm {
            name: el
                .attr("name")
                .map(str::to_string)
                .unwrap_or_else(|| format!("form-{}", i + 1)),
            fields,
            action: el
                .attr("action")
                .filter(|a| !a.is_empty())
                .map(str::to_string),
            honeypot,
        });
    }
    out
}

pub struct Forms<'a>(&'a Store);

impl Store {
    pub fn forms(&self) -> Forms<'_> {
        Forms(self)
    }
}

fn site_key(site_id: &str, id: &str) -> String {
    format!("{site_id}/{id}")
}

/// Longest value kept of one submitted field.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;

/// A user's submissions in the month of `at` (kept with each submission; never decremented:
/// deleting a submission does not give the month's quota back).
pub fn monthly_count_key(user_id: &str, at: Timestamp) -> String {
    let month = at.to_rfc3339().get(..7).unwrap_or_default().to_string();
    format!("submissions/{user_id}/{month}")
}

fn live_count_key(form_id: &str) -> String {
    format!("submissions/{form_id}")
}

impl Forms<'_> {
    /// Records the forms of a deploy's HTML files; a form keeps its id (and submissions) by name.
    pub fn scan_deploy(
        &self,
        deploy: &super::deploys::Deploy,
        files: &std::collections::BTreeMap<String, String>,
        now: Timestamp,
    ) -> StoreResult<()> {
        for (path, sha) in files {
            if !(path.ends_with(".html") || path.ends_with(".htm")) {
                continue;
            }
            let Ok(bytes) = self.0.blobs.read(sha) else {
                continue;
            };
            let html = String::from_utf8_lossy(&bytes);
            if !html.contains("netlify") {
                continue;
            }
            for found in detect_forms(&html) {
                self.upsert(deploy, &format!("/{path}"), found, now)?;
            }
        }
        Ok(())
    }

    fn upsert(
        &self,
        deploy: &super::deploys::Deploy,
        path: &str,
        found: FoundForm,
        now: Timestamp,
    ) -> StoreResult<()> {
        let t = &self.0.t;
        let name_key = site_key(&deploy.site_id, &found.name);
        let existing = match t.form_by_name.get(name_key.as_bytes())? {
            Some(id) => get::<Form>(&t.forms, &String::from_utf8_lossy(&id))?,
            None => None,
        };
        let mut form = existing.unwrap_or_else(|| Form {
            id: new_id(),
            site_id: deploy.site_id.clone(),
            reseller_id: deploy.reseller_id.clone(),
            user_id: deploy.user_id.clone(),
            name: found.name.clone(),
            paths: Vec::new(),
            fields: Vec::new(),
            action: None,
            honeypot: None,
            submission_count: 0,
            created_at: now,
        });
        if !form.paths.iter().any(|p| p == path) {
            form.paths.push(path.to_string());
        }
        form.fields = found.fields;
        form.action = found.action;
        form.honeypot = found.honeypot;
        (&t.forms, &t.form_by_name, &t.forms_by_site).transaction(|(f, by_name, by_site)| {
            f.insert(form.id.as_bytes(), encode(&form))?;
            by_name.insert(name_key.as_bytes(), form.id.as_bytes())?;
            by_site.insert(site_key(&form.site_id, &form.id).as_bytes(), &[])?;
            Ok(())
        })?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> StoreResult<Option<Form>> {
        get(&self.0.t.forms, id)
    }

    pub fn by_name(&self, site_id: &str, name: &str) -> StoreResult<Option<Form>> {
        match self
            .0
            .t
            .form_by_name
            .get(site_key(site_id, name).as_bytes())?
        {
            Some(id) => self.get(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    pub fn list(&self, site_id: &str) -> StoreResult<Vec<Form>> {
        let ids = ids_under(&self.0.t.forms_by_site, site_id)?;
        super::load_all(&self.0.t.forms, &ids)
    }

    /// Stores a submission and counts it on its form, unless the form already holds `max`
    /// submissions (409 `form_full`). Only the fields the form had when it was deployed are
    /// kept, each value at most `MAX_FIELD_BYTES`.
    pub fn submit(
        &self,
        form: &Form,
        data: Vec<(String, String)>,
        site_url: String,
        max: u64,
        now: Timestamp,
    ) -> StoreResult<Submission> {
        let t = &self.0.t;
        let id = new_id();
        let data: Vec<(String, String)> = data
            .into_iter()
            .filter(|(k, _)| form.fields.iter().any(|f| f == k))
            .map(|(k, mut v)| {
                if v.len() > MAX_FIELD_BYTES {
                    let mut cut = MAX_FIELD_BYTES;
                    while !v.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    v.truncate(cut);
                }
                (k, v)
            })
            .collect();
        let live_key = live_count_key(&form.id);
        self.ensure_live_count(&form.id)?;
        let subs = &self.0.subscriptions;
        // The user's submissions this month, counted with the write against its plan.
        let monthly_max = self
            .0
            .plans()
            .limits_of(&form.reseller_id, &form.user_id)?
            .0
            .max_submissions_month;
        let monthly_key = monthly_count_key(&form.user_id, now);
        let sub = (
            &t.forms,
            &t.submissions,
            &t.submissions_by_form,
            &t.counters,
            &t.events,
        )
            .transaction(|(f, s, by_form, counters, events)| {
                let Some(raw) = f.get(form.id.as_bytes())? else {
                    return super::abort(StoreError::NotFound("form"));
                };
                let live = super::count_of(counters.get(live_key.as_bytes())?);
                if live.max(0) as u64 >= max {
                    return super::abort(StoreError::Conflict(
                        crate::error::Conflict::FormFull,
                        format!("the form holds its limit of {max} submissions"),
                    ));
                }
                let this_month = super::count_of(counters.get(monthly_key.as_bytes())?);
                super::plans::check(
                    "max_submissions_month",
                    this_month.max(0) as u64,
                    monthly_max,
                )
                .or_else(super::abort)?;
                super::bump(counters, &monthly_key, 1)?;
                let month = super::usage::month_of(now);
                super::bump(
                    counters,
                    &super::usage::submissions_key(&form.site_id, &month),
                    1,
                )?;
                super::bump(counters, &live_key, 1)?;
                let mut rec: Form = decode(&raw).or_else(super::abort)?;
                rec.submission_count += 1;
                let sub = Submission {
                    id: id.clone(),
                    number: rec.submission_count,
                    form_id: rec.id.clone(),
                    form_name: rec.name.clone(),
                    site_id: rec.site_id.clone(),
                    reseller_id: rec.reseller_id.clone(),
                    user_id: rec.user_id.clone(),
                    data: data.clone(),
                    site_url: site_url.clone(),
                    created_at: now,
                };
                f.insert(rec.id.as_bytes(), encode(&rec))?;
                s.insert(id.as_bytes(), encode(&sub))?;
                by_form.insert(site_key(&rec.id, &id).as_bytes(), &[])?;
                emit(
                    events,
                    subs,
                    &sub.reseller_id,
                    "form.submission",
                    now,
                    || Subject::Submission(sub.clone()),
                )?;
                Ok(sub)
            })?;
        Ok(sub)
    }

    /// How many submissions a form holds now (kept in `counters`; counted once for forms from
    /// before the counter existed).
    pub fn live_count(&self, form_id: &str) -> StoreResult<u64> {
        self.ensure_live_count(form_id)?;
        let raw = self.0.t.counters.get(live_count_key(form_id).as_bytes())?;
        Ok(super::count_of(raw).max(0) as u64)
    }

    fn ensure_live_count(&self, form_id: &str) -> StoreResult<()> {
        let t = &self.0.t;
        let key = live_count_key(form_id);
        if t.counters.contains_key(key.as_bytes())? {
            return Ok(());
        }
        let n = t
            .submissions_by_form
            .scan_prefix(format!("{form_id}/").as_bytes())
            .count() as i64;
        // Only if still absent: a concurrent submit may have created it meanwhile.
        let _ = t.counters.compare_and_swap(
            key.as_bytes(),
            None as Option<&[u8]>,
            Some(&n.to_be_bytes()),
        )?;
        Ok(())
    }

    /// One page of the submissions to any of `forms`, newest first, by offset or from a
    /// cursor (a submission id). Merges the forms' indexes, reading only the keys up to the
    /// page, never every submission.
    pub fn window_of_forms(
        &self,
        forms: &[Form],
        want: &super::Want,
    ) -> StoreResult<super::Window<Submission>> {
        use super::{Seek, Want};
        use std::ops::Bound::{Excluded, Included};
        let t = &self.0.t;
        let limit = want.limit();
        // The page's direction of travel in key order (ids are time-ordered): newest first is
        // descending; a page before a cursor, or the last page, is read ascending, then turned.
        let (seek, skip) = match want {
            Want::Offset { offset, .. } => (Seek::First, *offset),
            Want::Keyset { seek, .. } => (seek.clone(), 0),
        };
        let ascending = matches!(seek, Seek::Before(_) | Seek::Last);
        let ranges = |f: &Form| {
            let prefix = format!("{}/", f.id).into_bytes();
            let mut end = prefix.clone();
            *end.last_mut().unwrap_or(&mut 0) += 1;
            let at = |k: &[u8]| [prefix.as_slice(), k].concat();
            let (lo, hi) = match &seek {
                Seek::First | Seek::Last => (Included(prefix.clone()), Excluded(end)),
                // Older than k.
                Seek::After(k) => (Included(prefix.clone()), Excluded(at(k))),
                // Newer than k.
                Seek::Before(k) => (Excluded(at(k)), Excluded(end)),
            };
            (prefix.len(), lo, hi)
        };
        let mut iters: Vec<_> = forms
            .iter()
            .map(|f| {
                let (len, lo, hi) = ranges(f);
                let keys = t.submissions_by_form.range::<Vec<u8>, _>((lo, hi)).keys();
                let keys: Box<dyn Iterator<Item = crate::kv::Result<crate::kv::IVec>>> =
                    if ascending {
                        Box::new(keys)
                    } else {
                        Box::new(keys.rev())
                    };
                keys.map(move |k| k.map(|k| String::from_utf8_lossy(&k[len..]).into_owned()))
                    .peekable()
            })
            .collect();
        let mut ids = Vec::with_capacity(limit + 1);
        let mut skipped = 0;
        while ids.len() <= limit {
            // The next head among the forms' iterators in the direction of travel.
            let mut best: Option<(usize, String)> = None;
            for (i, it) in iters.iter_mut().enumerate() {
                match it.peek() {
                    Some(Ok(id))
                        if best
                            .as_ref()
                            .is_none_or(|(_, b)| if ascending { id < b } else { id > b }) =>
                    {
                        best = Some((i, id.clone()));
                    }
                    Some(Err(_)) => {
                        if let Some(Err(e)) = it.next() {
                            return Err(e.into());
                        }
                    }
                    _ => {}
                }
            }
            let Some((i, id)) = best else { break };
            iters[i].next();
            if skipped < skip {
                skipped += 1;
            } else {
                ids.push(id);
            }
        }
        let more = ids.len() > limit;
        ids.truncate(limit);
        if ascending {
            ids.reverse();
        }
        // Whether anything lies on the other side of the cursor.
        let beyond = |k: &[u8], newer: bool| -> StoreResult<bool> {
            for f in forms {
                let prefix = format!("{}/", f.id).into_bytes();
                let mut end = prefix.clone();
                *end.last_mut().unwrap_or(&mut 0) += 1;
                let at = [prefix.as_slice(), k].concat();
                let range: (std::ops::Bound<Vec<u8>>, std::ops::Bound<Vec<u8>>) = if newer {
                    (Included(at), Excluded(end))
                } else {
                    (Included(prefix), Included(at))
                };
                if t.submissions_by_form.range(range).next().is_some() {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        let (before, after) = match &seek {
            Seek::First => (skip > 0, more),
            Seek::Last => (more, false),
            Seek::After(k) => (beyond(k, true)?, more),
            Seek::Before(k) => (more, beyond(k, false)?),
        };
        Ok(super::Window {
            items: super::load_all(&t.submissions, &ids)?,
            before,
            after,
        })
    }

    pub fn submission(&self, id: &str) -> StoreResult<Option<Submission>> {
        get(&self.0.t.submissions, id)
    }

    /// A form's submissions, newest first.
    pub fn submissions_of_form(&self, form_id: &str) -> StoreResult<Vec<Submission>> {
        let mut ids = ids_under(&self.0.t.submissions_by_form, form_id)?;
        ids.reverse();
        super::load_all(&self.0.t.submissions, &ids)
    }

    pub fn delete_submission(&self, sub: &Submission) -> StoreResult<()> {
        let t = &self.0.t;
        self.ensure_live_count(&sub.form_id)?;
        let live_key = live_count_key(&sub.form_id);
        (&t.submissions, &t.submissions_by_form, &t.counters).transaction(
            |(s, by_form, counters)| {
                if s.remove(sub.id.as_bytes())?.is_some() {
                    super::bump(counters, &live_key, -1)?;
                }
                by_form.remove(site_key(&sub.form_id, &sub.id).as_bytes())?;
                Ok(())
            },
        )?;
        Ok(())
    }

    pub fn delete_all_of_site(&self, site_id: &str) -> StoreResult<()> {
        for form in self.list(site_id)? {
            for sub in self.submissions_of_form(&form.id)? {
                self.delete_submission(&sub)?;
            }
            let t = &self.0.t;
            t.counters.remove(live_count_key(&form.id).as_bytes())?;
            t.forms.remove(form.id.as_bytes())?;
            t.form_by_name
                .remove(site_key(site_id, &form.name).as_bytes())?;
            t.forms_by_site
                .remove(site_key(site_id, &form.id).as_bytes())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_netlify_forms_only() {
        let html = r#"<form name="contact" netlify netlify-honeypot="bot" action="/thanks">
            <input name="email"><textarea name="msg"></textarea><input name="bot"></form>
            <form name="search"><input name="q"></form>
            <form data-netlify="true"><input name="x"></form>"#;
        let found = detect_forms(html);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].name, "contact");
        assert_eq!(found[0].fields, ["email", "msg", "bot"]);
        assert_eq!(found[0].action.as_deref(), Some("/thanks"));
        assert_eq!(found[0].honeypot.as_deref(), Some("bot"));
        assert_eq!(found[1].name, "form-3");
    }
}
