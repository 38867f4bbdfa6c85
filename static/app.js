// The panel's shell: sign-in state, navigation by role, and a hash router loading one module per page.
import { credential, forget } from "./api.js";
import { h } from "./ui.js";

const NAV = {
  operator: [["resellers", "Resellers"], ["audit", "Audit log"]],
  reseller: [["dashboard", "Dashboard"], ["settings", "Settings"], ["keys", "API keys"], ["signing", "Signing keys"], ["webhooks", "Webhooks"], ["email", "Email"],
    ["pages", "Custom pages"],
    ["users", "Users"], ["plans", "Plans"], ["proxies", "Proxy profiles"], ["sites", "Sites"], ["domains", "Domains"], ["billing", "Billing"], ["audit", "Audit log"]],
};

let notice = "";

async function render() {
  const main = document.getElementById("main");
  const nav = document.getElementById("nav");
  const cred = credential();
  document.getElementById("signout").hidden = !cred;
  document.getElementById("who").textContent = cred ? cred.label : "";
  let name = location.hash.replace(/^#\/?/, "").split("/")[0];
  if (!cred) {
    nav.replaceChildren();
    name = "login";
  } else {
    const items = NAV[cred.role] || [];
    if (!items.some(([n]) => n === name)) name = items[0][0];
    nav.replaceChildren(...items.map(([n, label]) =>
      h("a", { href: `#${n}`, "aria-current": n === name ? "page" : null }, label)));
  }
  main.replaceChildren(h("p", { class: "loading" }, "Loading…"));
  const module = await import(`./pages/${name}.js`);
  main.replaceChildren();
  await module.render(main, { cred, notice, go: target => { notice = ""; navigate(target); } });
  main.focus({ preventScroll: true });
}

/** Shows `target`: changing the hash renders through the hashchange listener, else render now. */
function navigate(target) {
  if (location.hash.replace(/^#\/?/, "") === target) render();
  else location.hash = target;
}

window.addEventListener("hashchange", render);
window.addEventListener("signed-out", ev => {
  notice = `You were signed out: ${ev.detail}`;
  navigate("");
});
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("signout").addEventListener("click", () => {
    forget();
    notice = "Signed out.";
    navigate("");
  });
  render();
});
