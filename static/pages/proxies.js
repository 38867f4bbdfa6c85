// Proxy profiles: origins a client's `_redirects` 200 rules may proxy to, with secret headers the
// edge adds. Header values are write-only: the API (and so this page) shows their names only.
import { api } from "../api.js";
import { h, field, submitting, table, showDialog } from "../ui.js";

/** "Name: value" lines -> {name: value}. */
function parseHeaders(text) {
  const headers = {};
  for (const line of text.split("\n").map(l => l.trim()).filter(Boolean)) {
    const at = line.indexOf(":");
    if (at < 1) throw new Error(`“${line}” is not “Header-Name: value”`);
    headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return headers;
}

const headersField = () => field("Headers added to each proxied request, one “Name: value” per line (values are secret: never shown again)",
  h("textarea", { name: "headers", rows: 3, placeholder: "X-Api-Key: …" }));

export async function render(main) {
  const list = h("div", {});
  const form = submitting(h("form", { class: "stack", id: "create-proxy" },
    field("Name", h("input", { name: "name", required: true, maxlength: 200, placeholder: "Payments API" })),
    field("Origin", h("input", { name: "origin", required: true, type: "url", placeholder: "https://api.example.com" })),
    headersField(),
    field("Timeout (ms)", h("input", { name: "timeout_ms", type: "number", min: 100, max: 120000, value: "10000" })),
    h("button", { type: "submit" }, "Create profile")), async data => {
    await api("POST", "/proxy_profiles", {
      name: data.get("name"),
      origin: data.get("origin"),
      headers: parseHeaders(data.get("headers")),
      timeout_ms: Number(data.get("timeout_ms")),
    });
    form.reset();
    await refresh();
  });
  function replaceHeaders(p) {
    const dialog = submitting(h("form", { class: "stack", id: "proxy-headers" },
      h("p", {}, `Now set: ${p.headers.length ? p.headers.join(", ") : "none"}. Saving replaces them all.`),
      headersField(),
      h("button", { type: "submit" }, "Save headers")), async data => {
      await api("PATCH", `/proxy_profiles/${p.id}`, { headers: parseHeaders(data.get("headers")) });
      document.getElementById("dialog").close();
      await refresh();
    });
    showDialog(`Headers of “${p.name}”`, dialog);
  }
  async function refresh() {
    const profiles = await api("GET", "/proxy_profiles");
    list.replaceChildren(table([
      { title: "Name", cell: p => p.name },
      { title: "Origin", cell: p => h("code", {}, p.origin) },
      { title: "Headers", cell: p => p.headers.join(", ") || "none" },
      { title: "Timeout", cell: p => `${p.timeout_ms} ms` },
      { title: "Clients", cell: p => p.user_ids === null ? "all" : `${p.user_ids.length} listed` },
      { title: "", actions: true, cell: p => [
        h("button", { class: "secondary", onclick: () => replaceHeaders(p) }, "Headers"),
        h("button", { class: "danger", onclick: async () => {
          if (!confirm(`Delete the profile “${p.name}”? Rules to ${p.origin} redirect again.`)) return;
          await api("DELETE", `/proxy_profiles/${p.id}`);
          refresh();
        } }, "Delete"),
      ] },
    ], profiles, "No proxy profiles yet."));
  }
  main.append(h("h1", {}, "Proxy profiles"),
    h("p", {}, "A client's site proxies a path to a profile's origin with a 200 rule in its ",
      h("code", {}, "_redirects"), ", e.g. ", h("code", {}, "/api/*  https://api.example.com/:splat  200"),
      ". Rules to any other origin redirect."),
    h("section", { id: "proxies" }, list),
    h("section", {}, h("h2", {}, "New profile"), form));
  await refresh();
}
