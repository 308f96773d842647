// Deliveries: the log, newest first, with filters and cursor paging; it refreshes itself when webhooks arrive.

import { api } from "../api/api.js";
import { h, inboxLabel, replace, reportError, table } from "../dom.js";
import { formatTime, t } from "../i18n.js";

const PAGE = 50;

export function statusBadge(status) {
  return h("span", { class: `badge ${status}`, "data-status": status }, t(`status.${status}`));
}

export function lastResult(d) {
  if (d.lastStatusCode) return d.lastError ? `${d.lastStatusCode} · ${d.lastError}` : String(d.lastStatusCode);
  return d.lastError ?? t("common.none");
}

export function render(main, params) {
  const filters = {
    status: params.status ?? "",
    routeId: params.routeId ?? "",
    inboxId: params.inboxId ?? "",
    conversationId: params.conversationId ?? "",
  };
  let shown = [];
  let nextCursor = null;
  const listArea = h("div", { id: "deliveries-list" }, h("p", {}, t("common.loading")));
  const routeSelect = h("select", { id: "filter-route", name: "routeId" }, h("option", { value: "" }, t("deliveries.all")));

  const statusSelect = h("select", { id: "filter-status", name: "status" },
    ["", "pending", "delivered", "dead"].map((s) =>
      h("option", { value: s }, s ? t(`status.${s}`) : t("deliveries.all"))));
  statusSelect.value = filters.status;
  const inbox = h("input", { id: "filter-inbox", name: "inboxId", inputmode: "numeric", size: 6, value: filters.inboxId });
  const conversation = h("input", {
    id: "filter-conversation", name: "conversationId", inputmode: "numeric", size: 8, value: filters.conversationId,
  });
  const form = h("form", { class: "filters" },
    h("label", {}, t("deliveries.filterStatus"), statusSelect),
    h("label", {}, t("deliveries.filterRoute"), routeSelect),
    h("label", {}, t("deliveries.filterInbox"), inbox),
    h("label", {}, t("deliveries.filterConversation"), conversation));
  const apply = () => {
    Object.assign(filters, {
      status: statusSelect.value, routeId: routeSelect.value,
      inboxId: inbox.value.trim(), conversationId: conversation.value.trim(),
    });
    const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    history.replaceState(null, "", `#/deliveries${query.size ? `?${query}` : ""}`);
    load();
  };
  form.addEventListener("change", apply);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    apply();
  });

  replace(main, h("h1", {}, t("deliveries.title")), form, listArea);

  api.listRoutes().then(({ routes }) => {
    for (const r of routes) {
      routeSelect.append(h("option", { value: r.id }, r.name ? `${r.name} (${r.inboxId})` : String(r.inboxId)));
    }
    routeSelect.value = filters.routeId;
  }).catch(reportError);

  /** Loads the newest page again, as long as what is on screen (so a refresh keeps "load older" pages). */
  async function load() {
    try {
      const limit = Math.min(Math.max(PAGE, shown.length), 500);
      const page = await api.listDeliveries({ ...filters, limit });
      shown = page.deliveries;
      nextCursor = page.nextCursor ?? null;
      draw();
    } catch (err) {
      reportError(err);
    }
  }

  async function more() {
    try {
      const page = await api.listDeliveries({ ...filters, cursor: nextCursor, limit: PAGE });
      shown = shown.concat(page.deliveries);
      nextCursor = page.nextCursor ?? null;
      draw();
    } catch (err) {
      reportError(err);
    }
  }

  function draw() {
    if (shown.length === 0) {
      replace(listArea, h("p", { class: "empty" }, t("deliveries.empty")));
      return;
    }
    replace(listArea,
      table([t("deliveries.id"), t("deliveries.received"), t("deliveries.event"), t("deliveries.inbox"),
        t("deliveries.conversation"), t("deliveries.status"), t("deliveries.attempts"), t("deliveries.last")],
      shown.map((d) => h("tr", { "data-delivery-id": d.id },
        h("td", { class: "num" }, h("a", { href: `#/deliveries/${d.id}` }, d.id)),
        h("td", {}, formatTime(d.receivedAt)),
        h("td", {}, d.event, d.recovered
          ? [" ", h("span", { class: "badge pending recovered" }, t("deliveries.recovered"))] : null),
        h("td", {}, inboxLabel(d)),
        h("td", { class: "num" }, d.conversationId ?? t("common.none")),
        h("td", {}, statusBadge(d.status)),
        h("td", { class: "num" }, d.attempts),
        h("td", { class: "last" }, lastResult(d))))),
      nextCursor ? h("button", { type: "button", id: "more", onclick: more }, t("deliveries.more")) : null);
  }

  load();
  return { onChange: (types) => (types.has("deliveries") || types.has("resync")) && load() };
}
