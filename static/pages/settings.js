// Reseller settings: name, preview domain (with the wildcard CNAME to create), notification email, allowed IPs.
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
  const saved = h("p", { role: "status", class: "notice" });
  const form = submitting(h("form", { class: "stack", id: "settings" },
    field("Name", h("input", { name: "name", value: me.name, required: true, maxlength: 200 })),
    field("Preview domain", preview), cname,
    field("Notification email", h("input", { name: "notification_email", type: "email", value: me.notification_email || "" })),
    field("Allowed IPs (CIDR, one per line; empty allows any)", h("textarea", { name: "allowed_ips", rows: 3 }, me.allowed_ips.join("\n"))),
    h("button", { type: "submit" }, "Save settings"), saved), async data => {
    const body = {
      name: data.get("name"),
      preview_domain: data.get("preview_domain").trim() || null,
      notification_email: data.get("notification_email").trim() || null,
      allowed_ips: lines(data.get("allowed_ips")),
    };
    await api("PATCH", "/reseller", body);
    saved.textContent = "Saved.";
  });
  main.append(h("h1", {}, "Settings"), h("section", {}, form));
}
