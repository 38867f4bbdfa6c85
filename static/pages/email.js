// Notification email: the reseller's sender (the DKIM and SPF records to publish, their status,
// check now) and the mail templates, edited with a preview.
import { api, ApiError } from "../api.js";
import { h, field, submitting, table, when, badge, errorText } from "../ui.js";

export async function render(main) {
  const me = await api("GET", "/reseller");
  const status = h("div", { id: "sender-status" });
  const senderForm = submitting(h("form", { class: "stack", id: "sender" },
    field("Send from", h("input", { name: "from", type: "email", required: true, value: me.notification_email || "", placeholder: "noreply@agency.example" })),
    field("Sender name", h("input", { name: "name", maxlength: 100, placeholder: "Agency" })),
    field("DKIM key", h("select", { name: "dkim" },
      h("option", { value: "rsa" }, "RSA 2048 (checked by every receiver)"),
      h("option", { value: "ed25519" }, "Ed25519 (short record; not every receiver checks it)"))),
    h("button", { type: "submit" }, "Save sender")), async data => {
    await api("PATCH", "/reseller", { notification_email: {
      from: data.get("from"), name: data.get("name") || null, dkim: data.get("dkim") } });
    await showSender();
  });

  async function showSender(check = false) {
    let s;
    try {
      s = await api(check ? "POST" : "GET", check ? "/reseller/notification_email/verify" : "/reseller/notification_email", check ? {} : undefined);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        status.replaceChildren(h("p", { class: "notice" }, "No sender yet: mail goes from the instance's address."));
        return;
      }
      status.replaceChildren(errorText(e));
      return;
    }
    senderForm.querySelector("input[name=name]").value = s.name || "";
    status.replaceChildren(...[
      h("p", {}, "Status: ", badge(s.status), " — mail goes from ", h("code", {}, s.sending_from)),
      s.error ? h("p", { class: "notice" }, s.error) : null,
      table([
        { title: "Type", cell: r => r.type },
        { title: "Name", cell: r => h("code", {}, r.name) },
        { title: "Value", cell: r => h("code", { class: "wrap" }, r.value) },
        { title: "Found", cell: r => r.found ? "yes" : "not yet" },
      ], [s.dkim, s.spf]),
      h("p", {}, "Last checked: ", when(s.last_checked_at), " ",
        h("button", { class: "secondary", id: "check-sender", onclick: () => showSender(true) }, "Check now")),
    ].filter(Boolean));
  }

  const kinds = await api("GET", "/reseller/emails");
  const kindSelect = h("select", { id: "template-kind" }, kinds.map(k => h("option", { value: k.kind }, k.kind.replaceAll("_", " "))));
  const editor = h("textarea", { id: "template-html", rows: 10, spellcheck: false });
  const placeholders = h("p", { class: "notice" });
  const preview = h("div", { id: "template-preview" });
  const source = h("p", { class: "notice" });
  async function load() {
    const t = await api("GET", `/reseller/emails/${kindSelect.value}`);
    editor.value = t.html;
    source.textContent = t.custom ? "Your template." : "The built-in template.";
    placeholders.textContent = "Placeholders: " + t.placeholders.map(p => `{{${p}}}`).join(" ") + ". The <title> is the subject.";
    preview.replaceChildren();
  }
  async function showPreview() {
    const r = await api("POST", `/reseller/emails/${kindSelect.value}/preview`, editor.value, { contentType: "text/html" });
    preview.replaceChildren(
      h("p", {}, "Subject: ", h("strong", { id: "preview-subject" }, r.subject)),
      h("iframe", { sandbox: "", srcdoc: r.html, title: "HTML part", class: "preview" }),
      h("pre", { id: "preview-text" }, r.text));
  }
  kindSelect.addEventListener("change", load);
  const templates = h("section", {},
    h("h2", {}, "Templates"),
    field("Mail", kindSelect), source, editor, placeholders,
    h("div", { class: "actions-cell" },
      h("button", { class: "secondary", id: "preview-template", onclick: () => showPreview().catch(e => preview.replaceChildren(errorText(e))) }, "Preview"),
      h("button", { id: "save-template", onclick: async () => {
        try {
          await api("PUT", `/reseller/emails/${kindSelect.value}`, editor.value, { contentType: "text/html" });
          await load();
          source.textContent = "Saved: your template.";
        } catch (e) { preview.replaceChildren(errorText(e)); }
      } }, "Save"),
      h("button", { class: "danger", onclick: async () => {
        await api("DELETE", `/reseller/emails/${kindSelect.value}`);
        await load();
      } }, "Use the built-in one")),
    preview);

  main.append(h("h1", {}, "Notification email"),
    h("section", {}, h("h2", {}, "Sender"),
      h("p", { class: "notice" }, "Mail to your clients goes from this address once DNS holds its DKIM and SPF records."),
      senderForm, status),
    templates);
  await showSender();
  await load();
}
