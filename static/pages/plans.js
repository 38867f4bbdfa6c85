// Plans: the packages a reseller sells its clients (limits per user), the default plan, and
// which plan each user is on (set on the Users page or here).
import { api } from "../api.js";
import { h, field, submitting, table, showDialog } from "../ui.js";

const LIMITS = [
  ["max_sites", "Sites"], ["max_storage_mb", "Storage (MB)"], ["max_bandwidth_mb_month", "Bandwidth (MB/month)"],
  ["max_domains", "Domains"], ["max_submissions_month", "Form submissions/month"],
];

const limit = v => (v === null || v === undefined ? "unlimited" : String(v));

export async function render(main) {
  const list = h("div", {});
  const form = submitting(h("form", { class: "stack", id: "create-plan" },
    field("Name", h("input", { name: "name", required: true, maxlength: 200, placeholder: "Starter" })),
    ...LIMITS.map(([name, label]) => field(`${label} (empty: unlimited)`, h("input", { name, type: "number", min: 0 }))),
    field("Over the bandwidth limit", h("select", { name: "overuse" },
      h("option", { value: "block" }, "Block: show the quota page"),
      h("option", { value: "notify" }, "Notify: keep serving, tell me"))),
    h("button", { type: "submit" }, "Create plan")), async data => {
    const body = { name: data.get("name"), overuse: data.get("overuse") };
    for (const [name] of LIMITS) {
      const v = data.get(name);
      body[name] = v === "" ? null : Number(v);
    }
    await api("POST", "/plans", body);
    form.reset();
    await refresh();
  });
  async function refresh() {
    const plans = await api("GET", "/plans");
    list.replaceChildren(table([
      { title: "Name", cell: p => p.default ? h("span", {}, p.name, " (default)") : p.name },
      ...LIMITS.map(([name, label]) => ({ title: label, cell: p => limit(p[name]) })),
      { title: "Overuse", cell: p => p.overuse },
      { title: "", actions: true, cell: p => [
        h("button", { class: "secondary", onclick: () => edit(p) }, "Edit"),
        p.default ? null : h("button", { class: "secondary", onclick: async () => {
          await api("PATCH", "/reseller", { default_plan_id: p.id });
          refresh();
        } }, "Make default"),
        h("button", { class: "danger", onclick: async () => {
          if (!confirm(`Delete the plan “${p.name}”? Its users fall back to the default plan.`)) return;
          await api("DELETE", `/plans/${p.id}`);
          refresh();
        } }, "Delete"),
      ] },
    ], plans, "No plans yet: clients are unlimited unless the operator set limits."));
  }
  /** Changes a plan's name, limits and overuse policy in a dialog. */
  function edit(p) {
    const dialog = submitting(h("form", { class: "stack", id: "edit-plan" },
      field("Name", h("input", { name: "name", required: true, maxlength: 200, value: p.name })),
      ...LIMITS.map(([name, label]) => field(`${label} (empty: unlimited)`,
        h("input", { name, type: "number", min: 0, value: p[name] === null ? "" : String(p[name]) }))),
      field("Over the bandwidth limit", h("select", { name: "overuse" },
        h("option", { value: "block", selected: p.overuse === "block" }, "Block: show the quota page"),
        h("option", { value: "notify", selected: p.overuse === "notify" }, "Notify: keep serving, tell me"))),
      h("button", { type: "submit" }, "Save")), async data => {
      const body = { name: data.get("name"), overuse: data.get("overuse") };
      for (const [name] of LIMITS) {
        const v = data.get(name);
        body[name] = v === "" ? null : Number(v);
      }
      await api("PATCH", `/plans/${p.id}`, body);
      document.getElementById("dialog").close();
      await refresh();
    });
    showDialog(`Edit the plan “${p.name}”`, dialog);
  }
  main.append(h("h1", {}, "Plans"), h("section", { id: "plans" }, list),
    h("section", {}, h("h2", {}, "New plan"), form));
  await refresh();
}
