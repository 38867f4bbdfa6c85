//! A form submission.

use crate::model::Timestamp;
use crate::store::forms::Submission;
use std::collections::BTreeMap;

/// A form submission, Netlify's shape: `data` holds every field, and the well-known ones are
/// lifted.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SubmissionView {
    pub id: String,
    number: u64,
    form_id: String,
    form_name: String,
    site_id: String,
    email: Option<String>,
    name: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    company: Option<String>,
    summary: String,
    body: Option<String>,
    /// Every submitted field
    data: BTreeMap<String, String>,
    site_url: String,
    created_at: Timestamp,
}

pub fn submission_view(s: &Submission) -> SubmissionView {
    let data: BTreeMap<String, String> = s.data.iter().cloned().collect();
    let field = |k: &str| data.get(k).cloned();
    let summary: Vec<String> = s.data.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    SubmissionView {
        id: s.id.clone(),
        number: s.number,
        form_id: s.form_id.clone(),
        form_name: s.form_name.clone(),
        site_id: s.site_id.clone(),
        email: field("email"),
        name: field("name"),
        first_name: field("first_name"),
        last_name: field("last_name"),
        company: field("company"),
        summary: summary.join(", "),
        body: field("body"),
        site_url: s.site_url.clone(),
        created_at: s.created_at,
        data,
    }
}
