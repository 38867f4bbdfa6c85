// Custom pages: the 404, form-success, password and suspended pages, with a live sandboxed preview.
import { api, ApiError } from "../api.js";
import { h, field, submitting } from "../ui.js";

const KINDS = { not_found: "Not found (404)", form_success: "Form success", password: "Password",
  suspended: "Suspended user's sites (503)", quota_exceeded: "Over the plan's bandwidth (503)" };

function hasPasswordInput(html) {
  const doc = new DOMParser().parseFromString(html, "text/html");
  return !!doc.querySelector('form input[name="password"]');
}

export async function render(main) {
  const kind = h("select", { name: "kind", id: "page-kind" }, Object.entries(KINDS).map(([k, v]) => h("option", { value: k }, v)));
  const html = h("textarea", { name: "html", id: "page-html", rows: 14, spellcheck: "false" });
  const preview = h("iframe", { class: "preview", sandbox: "", title: "Preview" });
  const status = h("p", { role: "status", class: "notice", id: "page-status" });
  const rule = h("p", { class: "notice" });
  const update = () => { preview.srcdoc = html.value; };
  html.addEventListener("input", update);
  async function load() {
    status.textContent = "";
    rule.textContent = kind.value === "password"
      ? "The password page must contain a form with an input named “password”; visitors post it to unlock the site."
      : "A self-contained HTML page (inline CSS, or links to external files).";
    try {
      html.value = await api("GET", `/reseller/pages/${kind.value}`);
      status.textContent = "Your custom page is active.";
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e;
      html.value = "";
      status.textContent = "The built-in page is used.";
    }
    update();
  }
  kind.addEventListener("change", load);
  const form = submitting(h("form", { class: "stack", id: "page-form" }, field("Page", kind), rule, field("HTML", html),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "danger", onclick: async () => {
        await api("DELETE", `/reseller/pages/${kind.value}`).catch(() => {});
        await load();
      } }, "Back to built-in"),
      h("button", { type: "submit" }, "Save page"))), async data => {
    const text = data.get("html");
    if (kind.value === "password" && !hasPasswordInput(text)) {
      throw new Error("The password page needs a form with an input named “password”.");
    }
    await api("PUT", `/reseller/pages/${kind.value}`, text, { contentType: "text/html; charset=utf-8" });
    status.textContent = "Saved.";
  });
  main.append(h("h1", {}, "Custom pages"), h("section", {}, form, status), h("section", {}, h("h2", {}, "Preview"), preview));
  await load();
}
