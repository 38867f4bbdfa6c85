// Client users: search by email or uid, token counts, issue an access token (shown once), list
// and revoke a user's tokens, delete.
import { api, page } from "../api.js";
import { h, field, pagedTable, submitting, showDialog, showOnce, when, errorText, badge } from "../ui.js";

/** A user's live tokens (masked) in the dialog, each revocable, plus "revoke all". */
/** Bytes for people: B, kB, MB, GB (powers of 1000, as plans count). */
function bytes(n) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

/** A user's usage this month: a bar per day of the bytes its sites sent, and a row per site. */
async function showUsage(user) {
  const body = h("div", { id: "user-usage" }, h("p", { class: "loading" }, "Loading…"));
  showDialog(`Usage of ${user.email} this month`, body);
  try {
    const rows = await api("GET", `/users/${user.id}/usage`);
    const perDay = new Map();
    for (const r of rows) for (const d of r.daily) perDay.set(d.date, (perDay.get(d.date) || 0) + d.bytes_sent);
    const days = [...perDay.entries()].sort(([a], [b]) => a.localeCompare(b));
    const max = Math.max(1, ...days.map(([, v]) => v));
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    const width = Math.max(days.length * 24, 240);
    svg.setAttribute("viewBox", `0 0 ${width} 120`);
    svg.setAttribute("class", "chart");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "Bytes sent per day");
    days.forEach(([date, v], i) => {
      const bar = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      const height = Math.max(1, Math.round((v / max) * 100));
      bar.setAttribute("x", String(i * 24 + 4));
      bar.setAttribute("y", String(110 - height));
      bar.setAttribute("width", "16");
      bar.setAttribute("height", String(height));
      const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
      title.textContent = `${date}: ${bytes(v)}`;
      bar.append(title);
      svg.append(bar);
    });
    const stored = rows.length ? rows[0].user_storage_bytes : 0;
    body.replaceChildren(
      days.length ? svg : h("p", { class: "notice" }, "No traffic this month yet."),
      h("p", { class: "storage" }, `Storage: ${bytes(stored)} (each distinct file of the user's deploys once)`),
      h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Site", "Requests", "Sent", "Submissions", "Deploys", "Stored"].map(t => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows.map(r => h("tr", {},
          h("td", {}, r.site_name || r.site_id),
          h("td", {}, String(r.requests)),
          h("td", {}, bytes(r.bytes_sent)),
          h("td", {}, String(r.submissions)),
          h("td", {}, String(r.deploys)),
          h("td", {}, bytes(r.storage_bytes))))))));
  } catch (e) {
    body.replaceChildren(errorText(e));
  }
}

async function showTokens(user, changed) {
  const body = h("div", { id: "user-tokens" }, h("p", { class: "loading" }, "Loading…"));
  showDialog(`Access tokens of ${user.email}`, body);
  const revoke = async path => {
    try {
      await api("DELETE", path);
      changed();
      await load();
    } catch (e) {
      body.append(errorText(e));
    }
  };
  async function load() {
    const tokens = await api("GET", `/users/${user.id}/access_tokens`);
    if (!tokens.length) {
      body.replaceChildren(h("p", { class: "notice" }, "No live tokens: the user is signed out everywhere."));
      return;
    }
    body.replaceChildren(
      h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Token", "Created", "Last used", "Expires", ""].map(t => h("th", { scope: "col" }, t)))),
        h("tbody", {}, tokens.map(t => h("tr", {},
          h("td", {}, h("code", {}, t.masked)),
          h("td", {}, when(t.created_at)),
          h("td", {}, when(t.last_used_at)),
          h("td", {}, t.expires_at ? when(t.expires_at) : "never"),
          h("td", {}, h("button", { class: "danger", onclick: () => revoke(`/access_tokens/${t.id}`) }, "Revoke"))))))),
      h("p", {}, h("button", { class: "danger", id: "revoke-all", onclick: () => {
        if (confirm(`Sign ${user.email} out everywhere?`)) revoke(`/users/${user.id}/access_tokens`);
      } }, "Revoke all")));
  }
  try {
    await load();
  } catch (e) {
    body.replaceChildren(errorText(e));
  }
}

export async function render(main) {
  const list = h("div", {});
  let query = "";
  let refresh;
  const search = submitting(h("form", { class: "inline", id: "user-search", role: "search" },
    field("Email (exact)", h("input", { name: "email", type: "search" })),
    field("UID", h("input", { name: "uid", type: "search" })),
    h("button", { type: "submit", class: "secondary" }, "Search")), async data => {
    const q = new URLSearchParams();
    if (data.get("email")) q.set("email", data.get("email"));
    if (data.get("uid")) q.set("uid", data.get("uid"));
    query = q.toString();
    await refresh();
  });
  const create = submitting(h("form", { class: "inline", id: "create-token" },
    field("Email", h("input", { name: "email", type: "email", required: true })),
    field("UID (your CRM's id, optional)", h("input", { name: "uid" })),
    h("button", { type: "submit" }, "Issue access token")), async data => {
    const user = { email: data.get("email") };
    if (data.get("uid")) user.uid = data.get("uid");
    const t = await api("POST", "/access_tokens", { user });
    create.reset();
    showOnce(`Access token for ${t.email}`, "Give this token to the client's app or the netlify CLI:", t.access_token);
    await refresh();
  });
  main.append(h("h1", {}, "Users"), h("section", {}, h("h2", {}, "New user or token"), create),
    h("section", {}, search, list));
  // Each user's sites, from one listing of the reseller's sites.
  let sitesByUser = new Map();
  let plans = [];
  const load = async (n, per) => {
    let users, sites;
    [users, sites, plans] = await Promise.all([page(`/users${query ? `?${query}` : ""}`, n, per),
      api("GET", "/sites?per_page=100"), api("GET", "/plans").catch(() => [])]);
    sitesByUser = new Map();
    for (const s of sites) sitesByUser.set(s.user_id, [...(sitesByUser.get(s.user_id) || []), s.name]);
    return users;
  };
  refresh = await pagedTable(list, load, [
    { title: "Email", cell: u => u.suspension ? h("span", {}, u.email, " ", badge("suspended")) : u.email },
    { title: "UID", cell: u => u.uid },
    { title: "Tokens", cell: u => String(u.token_count) },
    { title: "Sites", cell: u => (sitesByUser.get(u.id) || []).join(", ") || "—" },
    { title: "Plan", cell: u => plans.length ? h("select", { class: "plan", "aria-label": `Plan of ${u.email}`, onchange: async ev => {
      await api("PATCH", `/users/${u.id}`, { plan_id: ev.target.value || null });
    } }, h("option", { value: "" }, "default"), plans.map(p => h("option", { value: p.id, selected: u.plan_id === p.id }, p.name))) : "—" },
    { title: "Created", cell: u => when(u.created_at) },
    { title: "", actions: true, cell: u => [
      h("button", { class: "secondary", onclick: () => showTokens(u, () => refresh()) }, "Tokens"),
      h("button", { class: "secondary", onclick: () => showUsage(u) }, "Usage"),
      u.suspension
        ? h("button", { class: "secondary", title: `Suspended: ${u.suspension.reason}`, onclick: async () => {
          await api("POST", `/users/${u.id}/unsuspend`, {});
          refresh();
        } }, "Unsuspend")
        : h("button", { class: "secondary", onclick: async () => {
          const reason = prompt(`Suspend ${u.email}? Its tokens stop working and its sites show your "suspended" page. Reason:`);
          if (!reason) return;
          await api("POST", `/users/${u.id}/suspend`, { reason });
          refresh();
        } }, "Suspend"),
      h("button", { class: "danger", onclick: async () => {
        if (!confirm(`Delete ${u.email}, revoke its tokens and delete its sites and domains?`)) return;
        await api("DELETE", `/users/${u.id}`);
        refresh();
      } }, "Delete")] },
  ], 20, "No users yet.");
}
