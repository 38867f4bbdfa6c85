// Client domains: onboarding (TXT record + WordPress key shown once), status, check now, metrics chart, key rotation.
import { api, page } from "../api.js";
import { h, field, pagedTable, submitting, showOnce, showDialog, badge, when } from "../ui.js";

const SVG = "http://www.w3.org/2000/svg";

/** Bars of the daily request counts. */
function chart(daily) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 300 60");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Requests per day over ${daily.length} days`);
  const max = Math.max(1, ...daily.map(d => d.requests));
  const w = 300 / Math.max(daily.length, 1);
  daily.forEach((d, i) => {
    const r = document.createElementNS(SVG, "rect");
    const height = Math.max(1, (d.requests / max) * 56);
    r.setAttribute("x", String(i * w + 1));
    r.setAttribute("y", String(60 - height));
    r.setAttribute("width", String(Math.max(1, w - 2)));
    r.setAttribute("height", String(height));
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${d.date}: ${d.requests} requests`;
    r.append(title);
    svg.append(r);
  });
  return svg;
}

function record(d) {
  return h("div", {}, h("p", {}, "Ask the client to add this DNS record:"),
    h("code", { class: "secret" }, `${d.verification.name}. TXT "${d.verification.value}"`));
}

export async function render(main) {
  const list = h("div", {});
  let refresh;
  const create = submitting(h("form", { class: "inline", id: "create-domain" },
    field("Domain", h("input", { name: "domain", required: true, placeholder: "client.example" })),
    field("Client email", h("input", { name: "email", type: "email", required: true })),
    field("Site (optional)", h("input", { name: "site_id", placeholder: "site name or id" })),
    h("button", { type: "submit" }, "Add domain")), async data => {
    const body = { domain: data.get("domain"), email: data.get("email") };
    if (data.get("site_id")) body.site_id = data.get("site_id");
    const d = await api("POST", "/domains", body);
    create.reset();
    showOnce(`${d.domain} added`, "WordPress plugin key:", d.wordpress_api_key, record(d));
    await refresh();
  });
  main.append(h("h1", {}, "Domains"), h("section", {}, h("h2", {}, "Onboard a client domain"), create), h("section", {}, list));
  refresh = await pagedTable(list, (n, per) => page("/domains", n, per), [
    { title: "Domain", cell: d => d.domain },
    { title: "Status", cell: d => h("div", {}, badge(d.verification_status),
      d.verification_error && d.verification_status !== "verified" ? h("p", { class: "hint" }, d.verification_error) : "") },
    { title: "Client", cell: d => d.email },
    { title: "Checked", cell: d => when(d.last_checked_at) },
    { title: "Requests", cell: d => h("div", {}, String(d.metrics.requests), chart(d.metrics.daily)) },
    { title: "", actions: true, cell: d => [
      h("button", { class: "secondary", onclick: async () => { await api("POST", `/domains/${d.id}/verify`); refresh(); } }, "Check now"),
      h("button", { class: "secondary", onclick: () => showDialog(`DNS record for ${d.domain}`, record(d)) }, "TXT record"),
      h("button", { class: "secondary", onclick: async () => {
        if (!confirm(`Replace the WordPress key of ${d.domain}? The old key stops working at once.`)) return;
        const k = await api("POST", `/domains/${d.id}/wordpress_key`);
        showOnce(`New WordPress key for ${d.domain}`, "WordPress plugin key:", k.wordpress_api_key);
      } }, "New WordPress key"),
      h("button", { class: "danger", onclick: async () => {
        if (!confirm(`Remove ${d.domain}? The site stops being served on it at once.`)) return;
        await api("DELETE", `/domains/${d.id}`);
        refresh();
      } }, "Remove")] },
  ], 20, "No domains yet.");
}
