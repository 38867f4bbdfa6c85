// Sign-in with the operator token, a reseller API key (Bearer), or a key ID + key (Basic).
import { api, remember } from "../api.js";
import { h, field, submitting } from "../ui.js";

export async function render(main, { notice, go }) {
  const mode = h("select", { name: "mode", id: "mode" },
    h("option", { value: "bearer" }, "Operator token or API key"),
    h("option", { value: "basic" }, "Key ID + API key"));
  const token = h("input", { name: "token", id: "token", type: "password", autocomplete: "off", spellcheck: "false",
    required: true, placeholder: "op_… or sk_org_…" });
  const keyId = h("input", { name: "keyId", id: "key-id", autocomplete: "off", spellcheck: "false" });
  const key = h("input", { name: "key", id: "key", type: "password", autocomplete: "off" });
  const bearerFields = h("div", {}, field("Token", token));
  const basicFields = h("div", { hidden: true }, field("Key ID", keyId), field("API key", key));
  mode.addEventListener("change", () => {
    const basic = mode.value === "basic";
    basicFields.hidden = !basic;
    bearerFields.hidden = basic;
    token.required = !basic;
    keyId.required = key.required = basic;
  });
  const form = submitting(h("form", { class: "stack", id: "login" },
    field("Sign in with", mode), bearerFields, basicFields, h("button", { type: "submit" }, "Sign in")), async data => {
    const cred = data.get("mode") === "basic"
      ? { kind: "basic", keyId: data.get("keyId").trim(), key: data.get("key").trim() }
      : { kind: "bearer", token: data.get("token").trim() };
    if (cred.kind === "bearer" && cred.token.startsWith("op_")) {
      await api("GET", "/admin/resellers?per_page=1", undefined, { cred });
      remember({ ...cred, role: "operator", label: "Operator" });
      return go("resellers");
    }
    const me = await api("GET", "/reseller", undefined, { cred });
    remember({ ...cred, role: "reseller", label: me.name });
    go("dashboard");
  });
  main.append(h("h1", {}, "Sign in"),
    h("p", { class: "notice", role: "status", id: "login-notice", hidden: !notice }, notice || ""),
    h("section", {}, form,
      h("p", { class: "notice", id: "token-hint" }, "The operator token is in the file ", h("code", {}, "operator-token"),
        " in the server's data directory (", h("code", {}, "./data"), " by default); ",
        h("code", {}, "resellerd operator-token --data-dir DIR"), " makes a new one. Resellers sign in with an API key."),
      h("p", { class: "notice" }, "Your credential stays in this browser tab only and is forgotten when you sign out or close it.")));
}
