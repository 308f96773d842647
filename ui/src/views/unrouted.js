// Unrouted inboxes: inbox ids that sent webhooks without a route; one click opens the add-route form.

import { api } from "../api/api.js";
import { h, inboxLabel, replace, reportError, table } from "../dom.js";
import { formatNumber, formatTime, t } from "../i18n.js";
import { eventLabel } from "./deliveries.js";

export function render(main) {
  const listArea = h("div", {}, h("p", {}, t("common.loading")));
  replace(main, h("h1", {}, t("unrouted.title")), h("p", { class: "hint" }, t("meaning.unrouted")), listArea);

  const load = () => api.listUnrouted().then(({ unrouted }) => {
    if (unrouted.length === 0) {
      replace(listArea, h("p", { class: "empty" }, t("unrouted.empty")));
      return;
    }
    replace(listArea, table(
      [t("unrouted.inbox"), t("unrouted.count"), t("unrouted.firstSeen"), t("unrouted.lastSeen"),
        t("unrouted.lastEvent"), ""],
      unrouted.map((u) => h("tr", { "data-inbox-id": u.inboxId },
        h("td", {}, inboxLabel(u)),
        h("td", { class: "num" }, formatNumber(u.count)),
        h("td", {}, formatTime(u.firstSeen)),
        h("td", {}, formatTime(u.lastSeen)),
        h("td", {}, eventLabel(u.lastEvent)),
        h("td", { class: "actions" }, h("a", { class: "button add-route", href: `#/routes?new=${u.inboxId}`,
          "aria-label": t("unrouted.addRouteFor", { inbox: inboxLabel(u) }) }, t("unrouted.addRoute")))))));
  }).catch(reportError);

  load();
  return { onChange: (types) => (types.has("unrouted") || types.has("routes") || types.has("resync")) && load() };
}
