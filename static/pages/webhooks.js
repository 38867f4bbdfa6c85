// Webhooks: endpoints with their events (secret shown once), enable/disable, delete, and each
// endpoint's deliveries with every attempt and a retry button.
import { api } from "../api.js";
import { h, field, submitting, showOnce, table, when, badge, showDialog, errorText } from "../ui.js";

const EVENTS = ["user.created", "user.deleted", "user.suspended", "site.created", "site.deleted", "deploy.ready",
  "deploy.failed", "domain.created", "domain.verified", "domain.failed", "domain.deleted", "certificate.issued",
  "certificate.failed", "certificate.expiring", "form.submission", "charge.created", "key.created", "key.deleted",
  "quota.warning", "quota.exceeded"];

export async function render(main) {
  const list = h("div", {});
  const deliveries = h("section", { id: "deliveries" });
  const all = h("input", { type: "checkbox", name: "all", checked: "checked" });
  const boxes = EVENTS.map(e => h("label", { class: "check" }, h("input", { type: "checkbox", name: "event", value: e }), e));
  const form = submitting(h("form", { class: "stack", id: "create-webhook" },
    field("URL", h("input", { name: "url", type: "url", required: true, placeholder: "https://crm.example/hook" })),
    h("fieldset", {}, h("legend", {}, "Events"), h("label", { class: "check" }, all, "* (every event)"), ...boxes),
    h("button", { type: "submit" }, "Add endpoint")), async data => {
    const events = all.checked ? ["*"] : data.getAll("event");
    if (!events.length) throw new Error("Choose at least one event.");
    const w = await api("POST", "/webhooks", { url: data.get("url"), events });
    form.reset();
    showOnce("Webhook endpoint added", "Its signing secret (verify the webhook-signature header with it):", w.secret);
    await refresh();
  });
  async function refresh() {
    const hooks = await api("GET", "/webhooks");
    list.replaceChildren(table([
      { title: "URL", cell: w => h("code", {}, w.url) },
      { title: "Events", cell: w => w.events.join(", ") },
      { title: "State", cell: w => w.enabled ? badge("enabled") : h("span", {}, badge("disabled"), " ", w.disabled_reason || "") },
      { title: "Failing since", cell: w => when(w.failing_since) },
      { title: "", actions: true, cell: w => [
        h("button", { class: "secondary", onclick: () => showDeliveries(w) }, "Deliveries"),
        h("button", { class: "secondary", onclick: async () => {
          await api("PATCH", `/webhooks/${w.id}`, { enabled: !w.enabled });
          refresh();
        } }, w.enabled ? "Disable" : "Enable"),
        h("button", { class: "danger", onclick: async () => {
          if (!confirm(`Delete the endpoint ${w.url}? Its pending deliveries are dropped.`)) return;
          await api("DELETE", `/webhooks/${w.id}`);
          deliveries.replaceChildren();
          refresh();
        } }, "Delete"),
      ] },
    ], hooks, "No endpoints yet."));
  }
  async function showDeliveries(w) {
    deliveries.replaceChildren(h("h2", {}, `Deliveries to ${w.url}`), h("p", { class: "loading" }, "Loading…"));
    try {
      const items = await api("GET", `/webhooks/${w.id}/deliveries?per_page=50`);
      deliveries.replaceChildren(h("h2", {}, `Deliveries to ${w.url}`), table([
        { title: "Event", cell: d => d.event_type },
        { title: "State", cell: d => badge(d.state) },
        { title: "Attempts", cell: d => String(d.attempt_count) },
        { title: "Last answer", cell: d => {
          const last = d.attempts[d.attempts.length - 1];
          return last ? (last.status ? `${last.status} in ${last.latency_ms} ms` : last.error) : "—";
        } },
        { title: "Created", cell: d => when(d.created_at) },
        { title: "Next attempt", cell: d => when(d.next_attempt_at) },
        { title: "", actions: true, cell: d => [
          h("button", { class: "secondary", onclick: () => showDialog(`Delivery ${d.id}`,
            h("pre", {}, JSON.stringify(d.payload, null, 2)),
            table([
              { title: "At", cell: a => when(a.at) },
              { title: "Status", cell: a => a.status ? String(a.status) : "—" },
              { title: "Latency", cell: a => `${a.latency_ms} ms` },
              { title: "Error or answer", cell: a => a.error || a.response_excerpt },
            ], d.attempts, "No attempt yet.")) }, "Details"),
          h("button", { class: "secondary", onclick: async () => {
            await api("POST", `/webhooks/${w.id}/deliveries/${d.id}/retry`, {});
            showDeliveries(w);
          } }, "Retry"),
        ] },
      ], items, "No deliveries yet."));
    } catch (e) {
      deliveries.replaceChildren(errorText(e));
    }
  }
  main.append(h("h1", {}, "Webhooks"),
    h("section", {}, h("p", { class: "notice" },
      "Each delivery is signed (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature), retried with backoff for 3 days until a 2xx; an endpoint failing for 3 days is disabled."),
      list),
    deliveries,
    h("section", {}, h("h2", {}, "New endpoint"), form));
  await refresh();
}
