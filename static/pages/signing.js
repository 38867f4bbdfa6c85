// Signing keys: create EdDSA or RS256 (private part never leaves the server), activate one per
// algorithm, delete, and copy the public JWKS URL verifiers fetch.
import { api } from "../api.js";
import { h, field, submitting, table, when } from "../ui.js";

const MAX = 6;

export async function render(main) {
  const list = h("div", {});
  const count = h("p", { class: "notice", id: "signing-key-count" });
  const submit = h("button", { type: "submit" }, "Create key");
  const me = await api("GET", "/reseller");
  const jwksUrl = `${location.origin}/api/v1/resellers/${me.id}/jwks.json`;
  const copy = h("button", { type: "button", class: "secondary", onclick: async () => {
    try {
      await navigator.clipboard.writeText(jwksUrl);
      copy.textContent = "Copied";
    } catch {
      copy.textContent = "Select the URL and copy it";
    }
  } }, "Copy JWKS URL");
  const form = submitting(h("form", { class: "stack", id: "create-signing-key" },
    field("Algorithm", h("select", { name: "alg" },
      h("option", { value: "EdDSA" }, "EdDSA (Ed25519): signs webhooks"),
      h("option", { value: "RS256" }, "RS256 (RSA 2048): signs mail (DKIM)"))),
    submit), async data => {
    await api("POST", "/signing_keys", { alg: data.get("alg") });
    await refresh();
  });
  async function refresh() {
    const keys = await api("GET", "/signing_keys");
    count.textContent = `${keys.length} of ${MAX} signing keys.` + (keys.length >= MAX ? " Delete one to create another." : "");
    submit.disabled = keys.length >= MAX;
    list.replaceChildren(table([
      { title: "Key ID (kid)", cell: k => h("code", {}, k.kid) },
      { title: "Algorithm", cell: k => k.alg },
      { title: "Active", cell: k => k.active ? "active" : "—" },
      { title: "Created", cell: k => when(k.created_at) },
      { title: "", actions: true, cell: k => [
        k.active ? null : h("button", { class: "secondary", onclick: async () => {
          await api("POST", `/signing_keys/${k.id}/activate`, {});
          refresh();
        } }, "Activate"),
        h("button", { class: "danger", onclick: async () => {
          if (!confirm(`Delete the key ${k.kid}? It leaves the JWKS at once; signatures made with it no longer verify.`)) return;
          await api("DELETE", `/signing_keys/${k.id}`);
          refresh();
        } }, "Delete"),
      ] },
    ], keys, "No signing keys yet."));
  }
  main.append(h("h1", {}, "Signing keys"),
    h("section", {},
      h("p", {}, "Public keys are published, unauthenticated, at ", h("code", { id: "jwks-url" }, jwksUrl), " ", copy),
      h("p", { class: "notice" }, "One key per algorithm is active. An older key stays in the JWKS until you delete it, so rotating never breaks a verifier."),
      count, list),
    h("section", {}, h("h2", {}, "New key"), form));
  await refresh();
}
