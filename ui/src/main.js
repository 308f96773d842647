// Boot: language, navigation between screens (hash routes), and live updates from the relay's event stream.

import { api } from "./api/api.js";
import { h, replace, reportError } from "./dom.js";
import { language, setLanguage, t } from "./i18n.js";
import * as overview from "./views/overview.js";
import * as routes from "./views/routes.js";
import * as deliveries from "./views/deliveries.js";
import * as delivery from "./views/delivery.js";
import * as unrouted from "./views/unrouted.js";
import * as settings from "./views/settings.js";
import * as setup from "./views/setup.js";
import * as chatwoot from "./views/chatwoot.js";

const SCREENS = [
  { hash: "#/", label: "nav.overview", view: overview },
  { hash: "#/chatwoot", label: "nav.chatwoot", view: chatwoot },
  { hash: "#/routes", label: "nav.routes", view: routes },
  { hash: "#/deliveries", label: "nav.deliveries", view: deliveries },
  { hash: "#/unrouted", label: "nav.unrouted", view: unrouted },
  ...(api.isDesktop ? [{ hash: "#/settings", label: "nav.settings", view: settings }] : []),
];

let current = null; // {view, controller}
let live = false;

/** Which screen the address names, and its parameters. */
function resolve() {
  const [path, queryString] = (window.location.hash || "#/").split("?");
  const params = Object.fromEntries(new URLSearchParams(queryString ?? ""));
  if (path === "#/setup") return { view: setup, params, nav: null };
  const detail = path.match(/^#\/deliveries\/(\d+)$/);
  if (detail) return { view: delivery, params: { ...params, id: detail[1] }, nav: "#/deliveries" };
  const screen = SCREENS.find((s) => s.hash === path) ?? SCREENS[0];
  return { view: screen.view, params, nav: screen.hash };
}

function renderChrome(activeHash) {
  document.getElementById("skip").textContent = t("skip");
  document.getElementById("lang-label").textContent = t("language");
  document.getElementById("lang").value = language();
  document.getElementById("lang").setAttribute("aria-label", t("language"));
  const active = SCREENS.find((s) => s.hash === activeHash);
  const menu = document.getElementById("menu");
  replace(menu, h("span", { "aria-hidden": "true" }, "☰"), active ? t(active.label) : t("nav.menu"));
  menu.setAttribute("aria-label", t("nav.menu"));
  replace(document.getElementById("nav"),
    SCREENS.map((s) => h("a", {
      href: s.hash,
      class: s.hash === activeHash ? "active" : null,
      "aria-current": s.hash === activeHash ? "page" : null,
    }, t(s.label))),
    h("span", { class: `live ${live ? "on" : "off"}`, title: t(live ? "live.connected" : "live.disconnected"),
      id: "live", role: "status" },
      h("span", { class: "dot", "aria-hidden": "true" }),
      h("span", { class: "live-text", "aria-hidden": "true" }, t(live ? "live.on" : "live.off")),
      h("span", { class: "visually-hidden" }, t(live ? "live.connected" : "live.disconnected"))));
}

function setMenu(open) {
  document.querySelector(".bar").classList.toggle("open", open);
  document.getElementById("menu").setAttribute("aria-expanded", String(open));
}

/** Moves focus to the new screen's heading (when it appears), unless the screen put it somewhere already. */
function focusHeading(screen) {
  const focus = () => {
    const heading = screen.querySelector("h1");
    if (!heading || !screen.isConnected) return Boolean(heading);
    if (!screen.contains(document.activeElement)) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
    }
    return true;
  };
  if (focus()) return;
  const watch = new MutationObserver(() => focus() && watch.disconnect());
  watch.observe(screen, { childList: true, subtree: true });
}

function show() {
  const { view, params, nav } = resolve();
  renderChrome(nav);
  // Each screen draws into a container of its own: an answer that arrives after the user has moved on lands in
  // a detached element instead of drawing the old screen over the new one.
  const screen = h("div", { class: "screen" });
  replace(document.getElementById("main"), screen);
  setMenu(false);
  current = { view, controller: view.render(screen, params) };
  focusHeading(screen);
}

// Many changes can arrive at once (one per commit): refresh at most once per frame burst.
let pending = new Set();
let scheduled = false;
function onChange(event) {
  pending.add(event.type);
  if (scheduled) return;
  scheduled = true;
  setTimeout(() => {
    const types = pending;
    pending = new Set();
    scheduled = false;
    current?.controller?.onChange?.(types);
  }, 150);
}

document.getElementById("lang").addEventListener("change", (e) => {
  setLanguage(e.target.value);
  // The desktop's tray menu follows the window's language.
  if (api.isDesktop) api.setLanguage(e.target.value).catch(reportError);
  show();
});
document.getElementById("menu").addEventListener("click", () =>
  setMenu(document.getElementById("menu").getAttribute("aria-expanded") !== "true"));
window.addEventListener("hashchange", show);
window.addEventListener("unhandledrejection", (e) => reportError(e.reason));

setLanguage(language());
api.subscribe(onChange, (connected) => {
  if (connected === live) return;
  live = connected;
  renderChrome(resolve().nav);
  // After a reconnect anything may have changed.
  if (connected) onChange({ type: "resync" });
});

/** A relay with no route and no Chatwoot account yet opens at the Chatwoot step. */
async function firstScreen() {
  if (window.location.hash) return;
  try {
    const [stats, link] = await Promise.all([api.stats(), api.chatwoot()]);
    if (stats.routes === 0 && link.links.length === 0) window.history.replaceState(null, "", "#/chatwoot");
  } catch {
    // The overview says what is wrong.
  }
}
firstScreen().then(show);
