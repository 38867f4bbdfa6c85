// Reseller dashboard: counts of users, sites, domains by status, submissions and today's requests.
import { api } from "../api.js";
import { h, errorText } from "../ui.js";

export async function render(main) {
  main.append(h("h1", {}, "Dashboard"));
  const stat = (label, value) => h("div", { class: "stat" }, h("strong", {}, String(value)), label);
  try {
    const [users, sites, domains, submissions] = await Promise.all([
      api("GET", "/users?per_page=1", undefined, { withHeaders: true }),
      api("GET", "/sites?per_page=100", undefined, { withHeaders: true }),
      api("GET", "/domains?per_page=100"),
      api("GET", "/submissions?per_page=100", undefined, { withHeaders: true }),
    ]);
    const count = r => Number(r.headers.get("x-total-count") ?? r.data.length);
    const by = s => domains.filter(d => d.verification_status === s).length;
    const today = new Date().toISOString().slice(0, 10);
    const requests = domains.reduce((sum, d) =>
      sum + (d.metrics?.daily || []).filter(x => x.date === today).reduce((a, x) => a + x.requests, 0), 0);
    main.append(h("div", { class: "stats" },
      stat("users", count(users)), stat("sites", count(sites)),
      stat("domains verified", by("verified")), stat("domains pending", by("pending")), stat("domains failed", by("failed")),
      stat("form submissions", count(submissions)), stat("requests today", requests)));
  } catch (e) {
    main.append(errorText(e));
  }
}
