// Sites: create one for a client, deploy a folder or a zip by dropping it (through the same deploy
// API as the CLI, with a progress bar), deploys with state and rollback, forms, submissions.
import { api, page, upload, follow, ApiError } from "../api.js";
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

/** Every file under a dropped entry, as [path, File]. */
async function entryFiles(entry, path) {
  if (entry.isFile) return [[path, await new Promise((ok, no) => entry.file(ok, no))]];
  const reader = entry.createReader();
  const out = [];
  for (;;) {
    const batch = await new Promise((ok, no) => reader.readEntries(ok, no));
    if (!batch.length) return out;
    for (const e of batch) out.push(...await entryFiles(e, path ? `${path}/${e.name}` : e.name));
  }
}

/** What was dropped or chosen, as [path, File]: a dropped folder's files by their path inside it. */
async function collect(dataTransfer, fileList) {
  const entries = [...(dataTransfer?.items ?? [])].map(i => i.webkitGetAsEntry?.()).filter(Boolean);
  if (entries.length === 1 && entries[0].isDirectory) return entryFiles(entries[0], "");
  if (entries.length) {
    const out = [];
    for (const e of entries) out.push(...await entryFiles(e, e.name));
    return out;
  }
  return [...fileList].map(f => [f.webkitRelativePath ? f.webkitRelativePath.split("/").slice(1).join("/") : f.name, f]);
}

async function sha1(file) {
  const digest = await crypto.subtle.digest("SHA-1", await file.arrayBuffer());
  return [...new Uint8Array(digest)].map(b => b.toString(16).padStart(2, "0")).join("");
}

/** Deploys a zip in one call, or files by their digests (uploading only what the server lacks),
 * reporting `progress(sentBytes, totalBytes)`. Resolves to the deploy. */
async function deployFiles(site, files, progress) {
  if (files.length === 1 && /\.zip$/i.test(files[0][0])) {
    const zip = files[0][1];
    return upload("POST", `/sites/${site.id}/deploys`, zip, "application/zip", sent => progress(sent, zip.size));
  }
  if (!crypto.subtle) throw new Error("Deploying a folder needs the panel over HTTPS (or on localhost); drop a zip instead.");
  const map = {}, byPath = {};
  for (const [path, file] of files) { map[path] = await sha1(file); byPath[path] = file; }
  const deploy = await api("POST", `/sites/${site.id}/deploys`, { files: map });
  const needed = new Set(deploy.required), todo = [];
  for (const [path, digest] of Object.entries(map)) if (needed.delete(digest)) todo.push(path);
  const total = todo.reduce((n, p) => n + byPath[p].size, 0) || 1;
  let done = 0;
  for (const path of todo) {
    const at = path.split("/").map(encodeURIComponent).join("/");
    await upload("PUT", `/deploys/${deploy.id}/files/${at}`, byPath[path], "application/octet-stream",
      sent => progress(done + sent, total));
    done += byPath[path].size;
  }
  progress(total, total);
  return api("GET", `/deploys/${deploy.id}`);
}

/** The drop zone: a folder, files or a zip dropped (or chosen) become a deploy of `site`. */
function dropZone(site, box) {
  const bar = h("progress", { id: "deploy-progress", max: 1, value: 0, hidden: true });
  const status = h("p", { role: "status", id: "deploy-status" });
  const input = h("input", { type: "file", id: "deploy-files", multiple: true });
  const zone = h("div", { class: "dropzone", id: "deploy-drop" },
    h("p", {}, "Drop a folder or a .zip here to deploy it, or ", h("label", {}, "choose files: ", input)), bar, status);
  const deploy = async files => {
    if (!files.length) return;
    bar.hidden = false;
    status.replaceChildren(`Deploying ${files.length} file${files.length === 1 ? "" : "s"}…`);
    try {
      const d = await deployFiles(site, files, (sent, total) => { bar.max = total; bar.value = sent; });
      if (d.state === "ready") site.published_deploy = { id: d.id };
      await details(site, box);
      box.querySelector("#deploy-status")?.replaceChildren(`Deployed: ${d.state}${d.state === "ready" ? ", published" : ""}.`);
    } catch (e) {
      bar.hidden = true;
      status.replaceChildren(errorText(e));
    }
  };
  zone.addEventListener("dragover", e => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async e => {
    e.preventDefault();
    zone.classList.remove("over");
    deploy(await collect(e.dataTransfer, e.dataTransfer.files));
  });
  input.addEventListener("change", async () => deploy(await collect(null, input.files)));
  return zone;
}

/** Builds from git: link a repository, build now, the site's builds, and a build's log followed
 * live while it runs. */
async function builds(site) {
  const box = h("div", { id: "builds" });
  const log = h("pre", { id: "build-log", hidden: true });
  let following = null;
  const show = async deployId => {
    following?.abort();
    following = new AbortController();
    log.hidden = false;
    log.replaceChildren();
    try {
      await follow(`/deploys/${deployId}/log`, (type, line) => {
        if (type === "log") log.append(`[${line.section}] ${line.message}\n`);
        if (type === "done") refresh();
      }, following.signal);
    } catch (e) {
      if (e.name !== "AbortError") log.append(errorText(e));
    }
  };
  const list = h("div", {});
  const refresh = async () => {
    const rows = await api("GET", `/sites/${site.id}/builds`);
    list.replaceChildren(table([
      { title: "Build", cell: b => h("code", {}, b.id) },
      { title: "Branch", cell: b => b.branch },
      { title: "State", cell: b => badge(b.state) },
      { title: "Commit", cell: b => b.sha ? h("code", {}, b.sha.slice(0, 10)) : "—" },
      { title: "Started", cell: b => when(b.created_at) },
      { title: "", actions: true, cell: b => h("button", { class: "secondary", onclick: () => show(b.deploy_id) }, "Log") },
    ], rows, "No builds yet."));
  };
  const settings = site.build_settings || {};
  if (!settings.repo_url) {
    const link = submitting(h("form", { class: "inline", id: "link-repo" },
      field("Repository URL", h("input", { name: "repo_url", required: true, placeholder: "https://x-access-token:TOKEN@git.example.com/me/site.git" })),
      field("Branch", h("input", { name: "repo_branch", value: "main", required: true })),
      field("Build command", h("input", { name: "cmd", placeholder: "npm ci && npm run build" })),
      field("Publish directory", h("input", { name: "dir", placeholder: "dist" })),
      h("button", { type: "submit" }, "Link repository")), async data => {
      const linked = await api("PATCH", `/sites/${site.id}`, { repo: {
        repo_url: data.get("repo_url").trim(), repo_branch: data.get("repo_branch").trim(),
        cmd: data.get("cmd").trim() || null, dir: data.get("dir").trim() || null } });
      Object.assign(site, linked);
      const fresh = await builds(site);
      fresh.prepend(h("p", { class: "notice", id: "push-webhook" }, "Give your git host this push webhook: ",
        h("code", {}, linked.deploy_hook), " with the secret ", h("code", {}, linked.deploy_hook_secret),
        " (shown once)."));
      box.replaceWith(fresh);
    });
    box.append(h("h2", {}, "Builds from git"), h("p", {}, "Link a repository: every push to its branch builds and deploys the site."), link);
    return box;
  }
  box.append(h("h2", {}, "Builds from git"),
    h("p", {}, h("code", {}, settings.repo_url), ` · branch ${settings.repo_branch}`,
      settings.cmd ? [" · ", h("code", {}, settings.cmd)] : "", settings.dir ? ` · publishes ${settings.dir}` : ""),
    h("p", {}, h("button", { id: "build-now", onclick: async () => {
      try {
        const b = await api("POST", `/sites/${site.id}/builds`);
        await refresh();
        show(b.deploy_id);
      } catch (e) {
        log.hidden = false;
        log.replaceChildren(errorText(e));
      }
    } }, "Build now"), " ", h("button", { class: "secondary", onclick: async () => {
      Object.assign(site, await api("PUT", `/sites/${site.id}/unlink_repo`));
      site.build_settings = {};
      box.replaceWith(await builds(site));
    } }, "Unlink")),
    list, log);
  await refresh();
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
      h("h2", {}, `Deploy ${site.name}`), dropZone(site, box),
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
      await builds(site),
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
  const users = await api("GET", "/users?per_page=100").catch(() => null);
  let refresh;
  const create = users && submitting(h("form", { class: "inline", id: "create-site" },
    field("Name", h("input", { name: "name", required: true, pattern: "[a-z0-9]([a-z0-9\\-]{0,61}[a-z0-9])?",
      title: "lowercase letters, digits and hyphens" })),
    field("Client", h("select", { name: "user_id", required: true },
      users.map(u => h("option", { value: u.id }, u.email)))),
    h("button", { type: "submit", disabled: !users.length }, "Create site")), async data => {
    const site = await api("POST", "/sites", { name: data.get("name").trim(), user_id: data.get("user_id") });
    create.reset();
    await refresh();
    box.hidden = false;
    details(site, box);
  });
  main.append(h("h1", {}, "Sites"),
    create ? h("section", {}, h("h2", {}, "New site"),
      users.length ? create : h("p", { class: "notice" }, "Add a client first (Users), then create its sites here.")) : "",
    h("section", {}, list), box);
  refresh = await pagedTable(list, (n, per) => page("/sites", n, per), [
    { title: "Name", cell: s => s.name },
    { title: "URL", cell: s => h("a", { href: s.url, rel: "noopener" }, s.url) },
    { title: "Custom domain", cell: s => s.custom_domain },
    { title: "Updated", cell: s => when(s.updated_at) },
    { title: "", actions: true, cell: s => h("button", { class: "secondary", onclick: () => { box.hidden = false; details(s, box); } }, "Deploy, deploys & forms") },
  ], 20, "No sites yet. Create one above, with the API or the netlify CLI.");
}
