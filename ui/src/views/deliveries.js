// The message log, newest first: who (customer, phone), what (a preview), which route, and what happened, in
// plain words. Search (phone, name, text), filters, events GoWA ignores hidden by default, bulk retry and
// discard, cursor paging; it refreshes itself when webhooks arrive.

import { api } from "../api/api.js";
import {
  failureText, h, inboxLabel, meanings, replace, reportError, routeLabel, table, targetOf, toast,
} from "../dom.js";
import { formatNumber, formatTime, t } from "../i18n.js";

const PAGE = 50;
const EVENTS = ["message_created", "message_updated", "conversation_created", "conversation_status_changed",
  "conversation_updated", "conversation_typing_on", "conversation_typing_off", "contact_created", "contact_updated",
  "webwidget_triggered"];

export function statusBadge(status) {
  return h("span", { class: `badge ${status}`, "data-status": status, title: t(`meaning.${status}`) },
    t(`status.${status}`));
}

/** An event's name for people ("New message"), or Chatwoot's own name for one this panel does not know. */
export function eventLabel(event) {
  const key = `event.${event}`;
  return t(key) === key ? event : t(key);
}

/** Who a delivery is about: the customer's name and phone. */
function customer(d) {
  if (!d.customerName && !d.customerPhone) return h("span", { class: "kind" }, t("common.none"));
  return [d.customerName ? h("span", { class: "customer" }, d.customerName) : null,
    d.customerPhone ? [" ", h("span", { class: "phone" }, d.customerPhone)] : null];
}

/** What a delivery is: the message's first line (or its attachment), or the event for other events. */
export function messageLine(d) {
  const who = d.messageType === "incoming" ? t("message.fromCustomer")
    : d.private ? t("message.note") : d.messageType === "outgoing" ? t("message.reply") : null;
  const text = d.preview ?? (d.attachment ? t("message.attachment", { kind: d.attachment }) : null);
  return [
    h("span", { class: "kind" }, [who ?? eventLabel(d.event), d.event === "message_updated" ? ` · ${eventLabel(d.event)}` : ""]),
    text ? h("span", { class: `preview${d.private ? " note" : ""}` }, text) : null,
    d.recovered ? h("span", { class: "badge pending recovered", title: t("deliveries.recoveredNote") },
      t("deliveries.recovered")) : null,
  ];
}

export function render(main, params) {
  const filters = {
    q: params.q ?? "",
    status: params.status ?? "",
    routeId: params.routeId ?? "",
    event: params.event ?? "",
    inboxId: params.inboxId ?? "",
    conversationId: params.conversationId ?? "",
    all: params.all ?? "",
  };
  let shown = [];
  let nextCursor = null;
  // Each request's number: an answer to an older one (other filters, a page already replaced) is dropped.
  let generation = 0;
  let routes = [];
  const picked = new Set();
  const listArea = h("div", { id: "deliveries-list" }, h("p", {}, t("common.loading")));
  const routeHead = h("div", { id: "route-head" });
  const bulkBar = h("div", { class: "bulk", id: "bulk", role: "region", "aria-label": t("bulk.title") });

  const search = h("input", { id: "search", name: "q", type: "search", value: filters.q, autocomplete: "off",
    placeholder: t("search.placeholder") });
  const routeSelect = h("select", { id: "filter-route", name: "routeId" }, h("option", { value: "" }, t("deliveries.all")));
  const statusSelect = h("select", { id: "filter-status", name: "status" },
    ["", "pending", "delivered", "dead"].map((s) =>
      h("option", { value: s }, s ? t(`status.${s}`) : t("deliveries.all"))));
  statusSelect.value = filters.status;
  const eventSelect = h("select", { id: "filter-event", name: "event" },
    h("option", { value: "" }, t("deliveries.all")),
    EVENTS.map((e) => h("option", { value: e }, eventLabel(e))));
  eventSelect.value = filters.event;
  const showAll = h("input", { type: "checkbox", id: "show-ignored", checked: filters.all === "1" });
  const inbox = h("input", { id: "filter-inbox", name: "inboxId", inputmode: "numeric", size: 6, value: filters.inboxId });
  const conversation = h("input", {
    id: "filter-conversation", name: "conversationId", inputmode: "numeric", size: 8, value: filters.conversationId,
  });
  const form = h("form", { class: "filters", role: "search" },
    h("div", { class: "search-row" },
      h("label", {}, t("search.label"), search),
      h("button", { type: "submit" }, t("search.button"))),
    h("label", {}, t("deliveries.filterStatus"), statusSelect),
    h("label", {}, t("deliveries.filterRoute"), routeSelect),
    h("label", {}, t("deliveries.filterEvent"), eventSelect),
    h("details", { class: "more-filters", open: Boolean(filters.inboxId || filters.conversationId) },
      h("summary", {}, t("deliveries.moreFilters")),
      h("label", {}, t("deliveries.filterInbox"), inbox),
      h("label", {}, t("deliveries.filterConversation"), conversation)),
    h("label", { class: "check" }, showAll, t("events.showIgnored")));
  const apply = () => {
    Object.assign(filters, {
      q: search.value.trim(), status: statusSelect.value, routeId: routeSelect.value, event: eventSelect.value,
      inboxId: inbox.value.trim(), conversationId: conversation.value.trim(), all: showAll.checked ? "1" : "",
    });
    const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    history.replaceState(null, "", `#/deliveries${query.size ? `?${query}` : ""}`);
    picked.clear();
    shown = [];
    drawRouteHead();
    load();
  };
  form.addEventListener("change", (e) => e.target !== search && apply());
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    apply();
  });

  replace(main, h("h1", {}, t("deliveries.title")), routeHead, form,
    meanings(["pending", "delivered", "dead", "ignored"]), bulkBar, listArea);

  api.listRoutes().then((answer) => {
    routes = answer.routes;
    for (const r of routes) routeSelect.append(h("option", { value: r.id }, routeLabel(r)));
    routeSelect.value = filters.routeId;
    drawRouteHead();
    if (shown.length) draw();
  }).catch(reportError);

  /** Filtered by a route: its name, and a link back to it. */
  function drawRouteHead() {
    const route = routes.find((r) => String(r.id) === filters.routeId);
    replace(routeHead, route ? h("p", { class: "route-head" },
      t("deliveries.ofRoute", { route: routeLabel(route) }),
      h("a", { href: `#/routes?route=${route.id}`, id: "to-route" }, t("deliveries.toRoute"))) : null);
  }

  function query(extra) {
    const { all, ...rest } = filters;
    return { ...rest, hideIgnored: all || rest.event ? undefined : "true", ...extra };
  }

  /** Loads the newest page again, as long as what is on screen (so a refresh keeps "load older" pages). */
  async function load() {
    const mine = ++generation;
    try {
      const limit = Math.min(Math.max(PAGE, shown.length), 500);
      const page = await api.listDeliveries(query({ limit }));
      if (mine !== generation) return;
      shown = page.deliveries;
      nextCursor = page.nextCursor ?? null;
      // What is chosen stays chosen only while it is on screen.
      const onScreen = new Set(shown.map((d) => d.id));
      for (const id of picked) if (!onScreen.has(id)) picked.delete(id);
      draw();
    } catch (err) {
      if (mine === generation) reportError(err);
    }
  }

  async function more(event) {
    const mine = ++generation;
    event.target.disabled = true;
    try {
      const page = await api.listDeliveries(query({ cursor: nextCursor, limit: PAGE }));
      if (mine !== generation) return;
      shown = shown.concat(page.deliveries);
      nextCursor = page.nextCursor ?? null;
      draw();
    } catch (err) {
      event.target.disabled = false;
      if (mine === generation) reportError(err);
    }
  }

  function drawBulk() {
    const chosen = shown.filter((d) => picked.has(d.id));
    const dead = chosen.filter((d) => d.status === "dead").length;
    const all = h("input", { type: "checkbox", id: "pick-all",
      checked: shown.length > 0 && shown.every((d) => picked.has(d.id)),
      onchange: (e) => {
        for (const d of shown) if (e.target.checked) picked.add(d.id); else picked.delete(d.id);
        draw();
      } });
    replace(bulkBar, shown.length ? h("label", { class: "check" }, all, t("bulk.pickAll")) : null,
      chosen.length === 0 ? h("span", { class: "hint" }, t("bulk.hint")) : [
      h("span", { class: "count", id: "bulk-count" }, t("bulk.selected", { count: chosen.length })),
      h("button", { type: "button", id: "bulk-retry", class: "primary", disabled: dead === 0, onclick: bulkRetry },
        t("bulk.retry", { count: dead })),
      h("button", { type: "button", id: "bulk-discard", class: "danger", onclick: bulkDiscard },
        t("bulk.discard", { count: chosen.length })),
      h("button", { type: "button", id: "bulk-clear", onclick: () => { picked.clear(); draw(); } }, t("bulk.clear")),
    ]);
  }

  /** Asks first (with the count), then `action(ids)`, which answers how many it did. */
  async function bulk(ids, { confirm, done }, action) {
    if (!window.confirm(t(confirm, { count: ids.length }))) return;
    try {
      toast(t(done, { count: await action(ids) }));
      picked.clear();
      load();
    } catch (err) {
      reportError(err);
    }
  }

  // Only the dead ones are sent again: a delivered reply sent again reaches the customer twice.
  const bulkRetry = () => bulk(shown.filter((d) => picked.has(d.id) && d.status === "dead").map((d) => d.id),
    { confirm: "bulk.confirmRetry", done: "bulk.retried" }, async (ids) => (await api.retryDeliveries(ids)).retried);
  const bulkDiscard = () => bulk(shown.filter((d) => picked.has(d.id)).map((d) => d.id),
    { confirm: "bulk.confirmDiscard", done: "bulk.discarded" },
    async (ids) => (await api.discardDeliveries(ids)).discarded);

  function row(d) {
    const route = routes.find((r) => r.inboxId === d.inboxId);
    const who = [d.customerName, d.customerPhone].filter(Boolean).join(" ") || `#${d.id}`;
    return h("tr", { "data-delivery-id": d.id, class: picked.has(d.id) ? "picked" : null },
      h("td", { class: "pick" }, h("input", {
        type: "checkbox", class: "pick-box", checked: picked.has(d.id), "aria-label": t("bulk.pick", { who }),
        onchange: (e) => {
          if (e.target.checked) picked.add(d.id); else picked.delete(d.id);
          drawBulk();
        },
      })),
      h("td", { class: "status-cell" }, statusBadge(d.status),
        h("a", { href: `#/deliveries/${d.id}`, class: "open", "aria-label": t("deliveries.openFor", { who }) },
          t("deliveries.open"))),
      h("td", {}, formatTime(d.receivedAt)),
      h("td", { class: "title-cell" }, customer(d)),
      h("td", { class: "message" }, messageLine(d)),
      h("td", {}, d.routeName ?? inboxLabel(d)),
      h("td", { class: d.status === "delivered" && !d.problem ? "last empty-cell" : "last" },
        d.status === "delivered" && !d.problem ? t("common.none")
          : failureText(d, targetOf(route?.webhookUrl)) ?? t("deliveries.notTried"),
        d.attempts > 1 ? h("span", { class: "explain" }, t("deliveries.tries", { count: d.attempts })) : null));
  }

  function draw() {
    drawBulk();
    if (shown.length === 0) {
      replace(listArea, h("p", { class: "empty" }, filters.q ? t("search.none", { q: filters.q }) : t("deliveries.empty")));
      return;
    }
    const view = table([t("bulk.pickShort"), t("deliveries.status"), t("deliveries.received"), t("deliveries.customer"),
      t("deliveries.message"), t("deliveries.route"), t("deliveries.last")], shown.map(row));
    view.querySelector("th").classList.add("pick");
    replace(listArea, view,
      h("p", { class: "hint" }, t("deliveries.showing", { count: formatNumber(shown.length) })),
      nextCursor ? h("button", { type: "button", id: "more", onclick: more }, t("deliveries.more")) : null);
  }

  load();
  return { onChange: (types) => (types.has("deliveries") || types.has("resync")) && load() };
}
