// Operator: resellers — list, create (first key shown once), suspend, delete.
import { api, page } from "../api.js";
import { h, field, pagedTable, submitting, showOnce, badge, when } from "../ui.js";

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
