// Submissions as CSV, safe to open in a spreadsheet.

/** A cell, quoted; one a spreadsheet would run as a formula (=, +, -, @, tab, CR) is prefixed with '. */
export function cell(v) {
  let s = String(v ?? "");
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return `"${s.replaceAll('"', '""')}"`;
}

/** One row per submission: created_at, then every field any submission has. */
export function submissionsCsv(rows) {
  const keys = [...new Set(rows.flatMap(r => Object.keys(r.data || {})))];
  return [["created_at", ...keys].map(cell).join(","),
    ...rows.map(r => [r.created_at, ...keys.map(k => r.data?.[k])].map(cell).join(","))].join("\n");
}
