// The panel's CSV export: a submitted value a spreadsheet would run as a formula is neutralised.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";

const src = await readFile(new URL("../../static/csv.js", import.meta.url), "utf8");
const { cell, submissionsCsv } = await import(`data:text/javascript,${encodeURIComponent(src)}`);

test("cells that start a formula are prefixed, quotes doubled", () => {
  for (const bad of ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]) {
    assert.ok(cell(bad).startsWith(`"'`), `${bad} -> ${cell(bad)}`);
  }
  assert.equal(cell("plain"), '"plain"');
  assert.equal(cell('say "hi"'), '"say ""hi"""');
  assert.equal(cell(null), '""');
  const text = submissionsCsv([{ created_at: "2026-01-01", data: { name: "=cmd|' /C calc'!A0" } }]);
  assert.equal(text, `"created_at","name"\n"2026-01-01","'=cmd|' /C calc'!A0"`);
});
