// Operator: resellers — list, create (first key shown once), details (limits, preview domain,
// set at once by the operator), suspend, delete.
import { api, page } from "../api.js";
import { h, field, pagedTable, submitting, showOnce, showDialog, badge, when } from "../ui.js";

const LIMITS = [["max_users", "Users"], ["max_sites", "Sites per user"], ["max_storage_mb", "Storage per user (MB)"],
  ["max_bandwidth_mb_month", "Bandwidth per user and month (MB)"], ["max_domains", "Domains per user"],
  ["max_submissions_month", "Form submissions per user and month"]];

/** One reseller's details in a dialog: who it is, its preview domain and its limits. */
async function details(id, refresh) {
  const r = await api("GET", `/admin/resellers/${id}`);
  const pending = r.preview_domain_pending;
  const preview = submitting(h("form", { class: "inline", id: "reseller-preview" },
    field("Preview domain (takes effect at once)", h("input", { name: "preview_domain", value: r.preview_domain || "",
      placeholder: "acme.hosting.example" })),
    h("button", { type: "submit" }, "Set")), async data => {
    await api("PATCH", `/admin/resellers/${id}`, { preview_domain: data.get("preview_domain").trim() || null });
    await refresh();
    details(id, refresh);
  });
  showDialog(r.name,
    h("dl", { id: "reseller-details" },
      h("dt", {}, "Id"), h("dd", {}, h("code", {}, r.id)),
      h("dt", {}, "Email"), h("dd", {}, r.email),
      h("dt", {}, "Status"), h("dd", {}, badge(r.suspended ? "suspended" : "active")),
      h("dt", {}, "Created"), h("dd", {}, when(r.created_at)),
      h("dt", {}, "Preview domain"), h("dd", {}, r.preview_domain || "the server's default",
        pending ? h("span", { class: "hint" }, ` (asked for ${pending.domain}: ${pending.status})`) : ""),
      h("dt", {}, "Allowed IPs"), h("dd", {}, r.allowed_ips.length ? r.allowed_ips.join(", ") : "any"),
      ...LIMITS.flatMap(([k, label]) => [h("dt", {}, label), h("dd", {}, r.limits[k] == null ? "unlimited" : String(r.limits[k]))])),
    preview);
}

export async function render(main) {
  const list = h("div", {});
  let refresh;
  const create = submitting(h("form", { class: "inline", id: "create-reseller" },
    field("Name", h("input", { name: "name", required: true, maxlength: 200 })),
    field("Email", h("input", { name: "email", type: "email", required: true })),
    h("button", { type: "submit" }, "Create reseller")), async data => {
    const r = await api("POST", "/admin/resellers", { name: data.get("name"), email: data.get("email") });
    create.reset();
    showOnce(`${r.reseller.name} created`, "Its first API key (full access):", r.key.key,
      h("p", {}, "Key ID: ", h("code", { "data-key-id": "" }, r.key.id)));
    await refresh();
  });
  main.append(h("h1", {}, "Resellers"), h("section", {}, h("h2", {}, "New reseller"), create), h("section", {}, list));
  refresh = await pagedTable(list, (n, per) => page("/admin/resellers", n, per), [
    { title: "Name", cell: r => r.name },
    { title: "Email", cell: r => r.email },
    { title: "Preview domain", cell: r => r.preview_domain },
    { title: "Status", cell: r => badge(r.suspended ? "suspended" : "active") },
    { title: "Created", cell: r => when(r.created_at) },
    { title: "", actions: true, cell: r => [
      h("button", { class: "secondary", onclick: () => details(r.id, refresh) }, "Details"),
      h("button", { class: "secondary", onclick: async () => {
        await api("PATCH", `/admin/resellers/${r.id}`, { suspended: !r.suspended });
        refresh();
      } }, r.suspended ? "Reactivate" : "Suspend"),
      h("button", { class: "danger", onclick: async () => {
        if (!confirm(`Delete ${r.name} and everything it owns? This cannot be undone.`)) return;
        await api("DELETE", `/admin/resellers/${r.id}`);
        refresh();
      } }, "Delete")] },
  ], 20, "No resellers yet.");
}
