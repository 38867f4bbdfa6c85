// Payment methods and the charges ledger of paid actions.
import { api } from "../api.js";
import { h, field, submitting, table, when } from "../ui.js";

export async function render(main) {
  const methods = h("div", {});
  const charges = h("div", {});
  async function refresh() {
    const [pms, ledger] = await Promise.all([api("GET", "/payment_methods"), api("GET", "/charges")]);
    methods.replaceChildren(table([
      { title: "Label", cell: p => p.label }, { title: "Type", cell: p => p.type }, { title: "Reference", cell: p => p.reference },
      { title: "ID", cell: p => h("code", {}, p.id) },
      { title: "", actions: true, cell: p => h("button", { class: "danger", onclick: async () => {
        if (!confirm(`Delete the payment method “${p.label}”?`)) return;
        await api("DELETE", `/payment_methods/${p.id}`);
        refresh();
      } }, "Delete") },
    ], pms, "No payment methods yet."));
    charges.replaceChildren(table([
      { title: "When", cell: c => when(c.created_at) }, { title: "Action", cell: c => c.action },
      { title: "For", cell: c => c.subject },
      { title: "Amount", cell: c => `${(c.amount_cents / 100).toFixed(2)} ${c.currency}` },
    ], ledger, "No charges yet."));
  }
  const form = submitting(h("form", { class: "inline", id: "create-payment-method" },
    field("Label", h("input", { name: "label", required: true })),
    field("Type", h("select", { name: "type" }, h("option", { value: "card" }, "Card"), h("option", { value: "invoice" }, "Invoice"))),
    field("Reference", h("input", { name: "reference", required: true, placeholder: "card last 4 or PO number" })),
    h("button", { type: "submit" }, "Add")), async data => {
    await api("POST", "/payment_methods", { label: data.get("label"), type: data.get("type"), reference: data.get("reference") });
    form.reset();
    await refresh();
  });
  main.append(h("h1", {}, "Billing"), h("section", {}, h("h2", {}, "Payment methods"), methods, form),
    h("section", {}, h("h2", {}, "Charges"), charges));
  await refresh();
}
