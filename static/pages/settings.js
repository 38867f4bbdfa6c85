// Reseller settings: name, preview domain (with the wildcard CNAME to create, and while a new one
// waits for DNS the TXT record that proves it), notification email, allowed IPs, and the access
// token lifetime and per-user cap.
import { api } from "../api.js";
import { h, field, submitting, lines } from "../ui.js";

export async function render(main) {
  const me = await api("GET", "/reseller");
  const cname = h("p", { class: "notice", id: "cname" });
  const preview = h("input", { name: "preview_domain", value: me.preview_domain || "", placeholder: "sites.example.com",
    pattern: "([a-zA-Z0-9\\-]+\\.)+[a-zA-Z0-9\\-]+" });
  const explain = () => {
    const d = preview.value.trim().toLowerCase();
    cname.replaceChildren(d
      ? h("span", {}, "Create this DNS record: ", h("code", {}, `*.${d}. CNAME ${location.hostname}.`),
        " Sites are then served at ", h("code", {}, `NAME.${d}`), ".")
      : "Without a preview domain, sites use the server's default preview domain.");
  };
  preview.addEventListener("input", explain);
  explain();
  const pending = h("div", { id: "preview-pending" });
  const showPending = r => {
    const p = r.preview_domain_pending;
    if (!p) { pending.replaceChildren(); return; }
    const check = h("button", { type: "button" }, "Check now");
    check.addEventListener("click", async () => {
      check.disabled = true;
      try { showPending(await api("POST", "/reseller/preview_domain/verify")); }
      catch (e) { pending.append(h("p", { class: "error" }, e.message)); }
      finally { check.disabled = false; }
    });
    pending.replaceChildren(h("p", { class: "notice" },
      `${p.domain} is ${p.status === "failed" ? "not verified: the deadline passed; save it again to retry" : "waiting for DNS"}. `,
      "Publish this record: ", h("code", {}, `${p.txt_record.name}. TXT "${p.txt_record.value}"`),
      `. Until it is found, sites stay at ${r.preview_domain ? "NAME." + r.preview_domain : "the default preview domain"}.`,
      p.verification_error ? h("span", {}, ` Last check: ${p.verification_error}`) : ""), check);
  };
  showPending(me);
  const saved = h("p", { role: "status", class: "notice" });
  const form = submitting(h("form", { class: "stack", id: "settings" },
    field("Name", h("input", { name: "name", value: me.name, required: true, maxlength: 200 })),
    field("Preview domain", preview), cname, pending,
    field("Notification email", h("input", { name: "notification_email", type: "email", value: me.notification_email || "" })),
    field("Allowed IPs (CIDR, one per line; empty allows any)", h("textarea", { name: "allowed_ips", rows: 3 }, me.allowed_ips.join("\n"))),
    field("Access token lifetime in days (empty: tokens never expire)", h("input", { name: "token_days", type: "number",
      min: 1, max: 3650, step: "any", value: me.access_token_ttl === null ? "" : String(me.access_token_ttl / 86400) })),
    field("Live access tokens per user (issuing one more revokes the oldest)", h("input", { name: "max_tokens_per_user",
      type: "number", min: 1, max: 1000, required: true, value: String(me.max_tokens_per_user) })),
    h("button", { type: "submit" }, "Save settings"), saved), async data => {
    const body = {
      name: data.get("name"),
      preview_domain: data.get("preview_domain").trim() || null,
      notification_email: data.get("notification_email").trim() || null,
      allowed_ips: lines(data.get("allowed_ips")),
      access_token_ttl: data.get("token_days").trim() ? Math.round(Number(data.get("token_days")) * 86400) : null,
      max_tokens_per_user: Number(data.get("max_tokens_per_user")),
    };
    showPending(await api("PATCH", "/reseller", body));
    saved.textContent = "Saved.";
  });
  main.append(h("h1", {}, "Settings"), h("section", {}, form));
}
