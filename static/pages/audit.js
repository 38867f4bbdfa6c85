// The audit log: every mutating API call, newest first.
import { page } from "../api.js";
import { h, pagedTable, when } from "../ui.js";

export async function render(main, { cred }) {
  const list = h("div", {});
  main.append(h("h1", {}, "Audit log"), h("section", {}, list));
  const path = cred.role === "operator" ? "/admin/audit" : "/audit";
  await pagedTable(list, (n, per) => page(path, n, per), [
    { title: "When", cell: e => when(e.at) },
    { title: "Who", cell: e => `${e.actor_kind} ${e.actor_id}` },
    { title: "Call", cell: e => h("code", {}, `${e.method} ${e.path}`) },
    { title: "Status", cell: e => String(e.status) },
    { title: "From", cell: e => e.ip },
  ], 50, "No calls recorded yet.");
}
