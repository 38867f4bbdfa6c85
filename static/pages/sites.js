// Sites: list, deploys with state and rollback, forms, submissions with CSV export.
import { api, page, ApiError } from "../api.js";
import { submissionsCsv } from "../csv.js";
import { h, field, pagedTable, table, badge, when, errorText, submitting } from "../ui.js";

/** The site's certificate, and ordering one (a paid action) for its verified custom domain. */
async function certificate(site) {
  const box = h("div", { id: "certificate" });
  let cert = null;
  try {
    cert = await api("GET", `/sites/${site.id}/ssl`);
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 404)) throw e;
  }
  const methods = await api("GET", "/payment_methods").catch(() => []);
  const order = submitting(h("form", { class: "inline", id: "order-certificate" },
    field("Payment method", h("select", { name: "payment_method_id", required: true },
      methods.map(m => h("option", { value: m.id }, `${m.label} (${m.type})`)))),
    h("button", { type: "submit", disabled: !methods.length }, cert ? "Renew now" : "Order certificate")), async data => {
    await api("POST", `/sites/${site.id}/ssl`, { payment_method_id: data.get("payment_method_id") });
    box.replaceWith(await certificate(site));
  });
  box.append(h("h2", {}, "Certificate"),
    cert ? h("p", {}, badge(cert.state), ` ${cert.domains.join(", ")} · issuer ${cert.issuer ?? "—"} · expires ${when(cert.expires_at)}`,
      cert.error ? h("span", { class: "error" }, ` ${cert.error}`) : "")
      : h("p", { class: "notice" }, "No certificate yet. The site needs a verified custom domain (see Domains)."),
    methods.length ? order : h("p", { class: "notice" }, "Add a payment method under Billing to order one."));
  return box;
}

async function details(site, box) {
  box.replaceChildren(h("p", { class: "loading" }, "Loading…"));
  try {
    const [deploys, forms, submissions] = await Promise.all([
      api("GET", `/sites/${site.id}/deploys`), api("GET", `/sites/${site.id}/forms`), api("GET", `/sites/${site.id}/submissions`)]);
    const download = h("button", { class: "secondary", disabled: !submissions.length, onclick: () => {
      const url = URL.createObjectURL(new Blob([submissionsCsv(submissions)], { type: "text/csv" }));
      h("a", { href: url, download: `${site.name}-submissions.csv` }).click();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } }, "Export CSV");
    box.replaceChildren(
      h("h2", {}, `Deploys of ${site.name}`),
      table([
        { title: "Deploy", cell: d => h("code", {}, d.id) },
        { title: "State", cell: d => badge(d.state) },
        { title: "Created", cell: d => when(d.created_at) },
        { title: "", actions: true, cell: d => d.id === site.published_deploy?.id ? "published"
          : d.state === "ready" ? h("button", { class: "secondary", onclick: async () => {
            await api("POST", `/sites/${site.id}/deploys/${d.id}/restore`);
            site.published_deploy = { id: d.id };
            details(site, box);
          } }, "Roll back to this") : null },
      ], deploys, "No deploys yet."),
      await certificate(site),
      h("h2", {}, "Forms"),
      table([{ title: "Name", cell: f => f.name }, { title: "Submissions", cell: f => String(f.submission_count ?? "") }], forms, "No forms detected."),
      h("h2", {}, "Submissions"), h("p", {}, download),
      table([
        { title: "Received", cell: s => when(s.created_at) },
        { title: "Form", cell: s => s.form_name || s.form_id },
        { title: "Data", cell: s => Object.entries(s.data || {}).map(([k, v]) => `${k}: ${v}`).join("; ") },
      ], submissions, "No submissions yet."));
  } catch (e) {
    box.replaceChildren(errorText(e));
  }
}

export async function render(main) {
  const list = h("div", {});
  const box = h("section", { id: "site-details", hidden: true });
  main.append(h("h1", {}, "Sites"), h("section", {}, list), box);
  await pagedTable(list, (n, per) => page("/sites", n, per), [
    { title: "Name", cell: s => s.name },
    { title: "URL", cell: s => h("a", { href: s.url, rel: "noopener" }, s.url) },
    { title: "Custom domain", cell: s => s.custom_domain },
    { title: "Updated", cell: s => when(s.updated_at) },
    { title: "", actions: true, cell: s => h("button", { class: "secondary", onclick: () => { box.hidden = false; details(s, box); } }, "Deploys & forms") },
  ], 20, "No sites yet. Create one with the API or the netlify CLI.");
}
