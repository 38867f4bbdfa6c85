// Small DOM helpers shared by the pages: element builder, tables, pagers, dialogs, errors.

/** h("button", {class: "x", onclick: fn}, "text", child) — listeners via addEventListener, never inline. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function when(ts) {
  return ts ? new Date(ts).toLocaleString() : "—";
}

export function badge(status) {
  const known = ["pending", "verified", "failed", "ready", "error", "issued", "suspended", "delivered", "enabled", "disabled"];
  return h("span", { class: `badge ${known.includes(status) ? status : "other"}` }, status);
}

/** A table from column specs [{title, cell: row => node|string}]. */
export function table(columns, rows, empty = "Nothing yet.") {
  if (!rows.length) return h("p", { class: "notice" }, empty);
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("thead", {}, h("tr", {}, columns.map(c => h("th", { scope: "col" }, c.title)))),
      h("tbody", {}, rows.map(r => h("tr", {}, columns.map(c => {
        const v = c.cell(r);
        return h("td", {}, c.actions ? h("div", { class: "actions-cell" }, v ?? "") : v ?? "—");
      }))))));
}

/** A list with previous/next paging over `load(page) -> {items, total}`. */
export async function pagedTable(container, load, columns, perPage = 20, empty) {
  let current = 1;
  async function show() {
    container.replaceChildren(h("p", { class: "loading" }, "Loading…"));
    try {
      const { items, total } = await load(current, perPage);
      const pages = Math.max(1, Math.ceil(total / perPage));
      container.replaceChildren(...[
        table(columns, items, empty),
        pages > 1 ? h("div", { class: "pager" },
          h("button", { class: "secondary", disabled: current <= 1, onclick: () => { current--; show(); } }, "Previous"),
          h("span", {}, `Page ${current} of ${pages} (${total})`),
          h("button", { class: "secondary", disabled: current >= pages, onclick: () => { current++; show(); } }, "Next")) : null,
      ].filter(Boolean));
    } catch (e) {
      container.replaceChildren(errorText(e));
    }
  }
  await show();
  return show;
}

export function errorText(e) {
  return h("p", { class: "error", role: "alert" }, e.message || String(e));
}

/** Runs `action` for a form, showing the API's message on failure. */
export function submitting(form, action) {
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    form.querySelector(".error")?.remove();
    if (!form.reportValidity()) return;
    const button = form.querySelector("button[type=submit], button:not([type])");
    if (button) button.disabled = true;
    try {
      await action(new FormData(form));
    } catch (e) {
      form.append(errorText(e));
    } finally {
      if (button) button.disabled = false;
    }
  });
  return form;
}

/** The modal dialog with a title and content. */
export function showDialog(title, ...content) {
  const dialog = document.getElementById("dialog");
  document.getElementById("dialog-title").textContent = title;
  document.getElementById("dialog-body").replaceChildren(...content);
  dialog.showModal();
  return dialog;
}

/** A secret shown exactly once, with a copy button and the warning that it will not come back. */
export function showOnce(title, label, secret, ...extra) {
  const copy = h("button", { type: "button", class: "secondary", onclick: async () => {
    try {
      await navigator.clipboard.writeText(secret);
      copy.textContent = "Copied";
    } catch {
      const range = document.createRange();
      range.selectNodeContents(value);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      copy.textContent = "Selected: press Ctrl+C";
    }
  } }, "Copy to clipboard");
  const value = h("code", { class: "secret", "data-secret": "" }, secret);
  return showDialog(title,
    h("p", {}, label),
    value,
    h("p", {}, copy),
    h("p", { class: "error" }, "This is the only time it is shown. Store it now: it cannot be displayed again."),
    ...extra);
}

export function field(label, input) {
  return h("label", {}, label, input);
}

export function lines(text) {
  return text.split(/[\n,]/).map(s => s.trim()).filter(Boolean);
}
