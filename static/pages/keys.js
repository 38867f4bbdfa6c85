// API keys: masked list with last use, create with permissions/IPs/expiry (shown once), delete, the 6-key limit.
import { api } from "../api.js";
import { h, field, submitting, showOnce, table, when, lines } from "../ui.js";

const PERMISSIONS = ["users:read", "users:write", "sites:read", "sites:write", "domains:read", "domains:write",
  "keys:manage", "settings:write", "submissions:read", "billing:write"];
const MAX = 6;

export async function render(main) {
  const list = h("div", {});
  const count = h("p", { class: "notice", id: "key-count" });
  const submit = h("button", { type: "submit" }, "Create key");
  const all = h("input", { type: "checkbox", name: "all", checked: "checked" });
  const boxes = PERMISSIONS.map(p => h("label", { class: "check" }, h("input", { type: "checkbox", name: "perm", value: p }), p));
  const form = submitting(h("form", { class: "stack", id: "create-key" },
    field("Name", h("input", { name: "name", required: true, maxlength: 200, placeholder: "Production CRM" })),
    h("fieldset", {}, h("legend", {}, "Permissions"), h("label", { class: "check" }, all, "* (everything)"), ...boxes),
    field("Allowed IPs (CIDR, one per line; empty allows any)", h("textarea", { name: "allowed_ips", rows: 2 })),
    field("Expires (optional)", h("input", { name: "expires_at", type: "datetime-local" })),
    submit), async data => {
    const perms = all.checked ? ["*"] : data.getAll("perm");
    if (!perms.length) throw new Error("Choose at least one permission.");
    const expires = data.get("expires_at");
    const k = await api("POST", "/keys", {
      name: data.get("name"), permissions: perms, allowed_ips: lines(data.get("allowed_ips")),
      expires_at: expires ? new Date(expires).toISOString() : null,
    });
    form.reset();
    showOnce(`Key “${k.name}” created`, "The API key:", k.key, h("p", {}, "Key ID (for Basic auth): ", h("code", {}, k.id)));
    await refresh();
  });
  async function refresh() {
    const keys = await api("GET", "/keys");
    count.textContent = `${keys.length} of ${MAX} keys in use.` + (keys.length >= MAX ? " Delete one to create another." : "");
    submit.disabled = keys.length >= MAX;
    list.replaceChildren(table([
      { title: "Name", cell: k => k.name },
      { title: "Key", cell: k => h("code", {}, k.masked) },
      { title: "Permissions", cell: k => k.permissions.join(", ") },
      { title: "Allowed IPs", cell: k => k.allowed_ips.join(", ") || "any" },
      { title: "Last used", cell: k => when(k.last_used_at) },
      { title: "Expires", cell: k => when(k.expires_at) },
      { title: "", actions: true, cell: k => h("button", { class: "danger", onclick: async () => {
        if (!confirm(`Delete the key “${k.name}”? Anything using it stops working at once.`)) return;
        await api("DELETE", `/keys/${k.id}`);
        refresh();
      } }, "Delete") },
    ], keys));
  }
  main.append(h("h1", {}, "API keys"), h("section", {}, count, list), h("section", {}, h("h2", {}, "New key"), form));
  await refresh();
}
