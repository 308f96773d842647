// Overview: what needs attention first (a sentence per route in trouble, with a link to fix it), the counts
// with the period each covers, each route's last successful delivery, the webhook URL, and the setup steps
// (folded away once routes exist).

import { api } from "../api/api.js";
import { copyRow, failureText, h, replace, reportError, routeLabel, targetOf } from "../dom.js";
import { formatAge, formatNumber, formatPeriod, formatTime, t } from "../i18n.js";
import { healthBadge } from "./routes.js";

export function render(main) {
  replace(main, h("h1", {}, t("overview.title")), h("p", {}, t("common.loading")));
  const load = async () => {
    try {
      const [stats, { routes }, held] = await Promise.all([
        api.stats(), api.listRoutes(), api.heldReplies().catch(() => ({ held: [] }))]);
      draw(main, { stats, routes, held: held.held.length, url: await webhookAddress(stats),
        problem: await api.listenProblem() });
    } catch (err) {
      reportError(err);
    }
  };
  load();
  return { onChange: load };
}

/** The public URL once chosen, else what the relay suggests from where it listens. */
async function webhookAddress(stats) {
  try {
    const link = await api.chatwoot();
    return link.publicUrl ?? link.suggestedUrl;
  } catch {
    return api.webhookUrl(stats.webhookPath, stats.webhookPort);
  }
}

/** What the admin should look at now, most urgent first: a sentence and where to fix it. */
function attention({ stats, routes, held }) {
  const items = [];
  if (stats.webhooksSigned === false) {
    items.push({ kind: "bad", what: t("attention.unsigned"), href: "#/chatwoot", why: t("attention.unsignedWhy") });
  }
  if (stats.clockSkewSeconds) {
    const minutes = Math.max(1, Math.round(Math.abs(stats.clockSkewSeconds) / 60));
    const key = stats.clockSkewSeconds < 0 ? "attention.clockAhead" : "attention.clockBehind";
    const why = stats.clockReckoned === false ? "attention.clockWhyUnsure" : "attention.clockWhy";
    items.push({ kind: stats.clockReckoned === false && Math.abs(stats.clockSkewSeconds) > 300 ? "bad" : "warn",
      what: t(key, { minutes }), why: t(why) });
  }
  for (const route of routes) {
    const name = routeLabel(route);
    if (route.dead > 0) {
      items.push({ kind: "bad", id: route.id, what: t("attention.failing", { route: name, count: route.dead }),
        href: `#/deliveries?routeId=${route.id}&status=dead`, why: route.health });
    }
    if (!route.enabled && route.pending > 0) {
      items.push({ kind: "warn", id: route.id, what: t("attention.paused", { route: name, count: route.pending }),
        href: `#/routes?route=${route.id}` });
    } else if (route.health?.state === "failing" && route.pending > 0) {
      items.push({ kind: "warn", id: route.id, what: t("attention.waiting", { route: name, count: route.pending }),
        href: `#/deliveries?routeId=${route.id}&status=pending`, why: route.health });
    }
  }
  if (held > 0) items.push({ kind: "warn", what: t("attention.held", { count: held }), href: "#/chatwoot" });
  if (stats.unroutedInboxes > 0) {
    items.push({ kind: "warn", what: t("attention.unrouted", { count: stats.unroutedInboxes }), href: "#/unrouted" });
  }
  return items.map((item) => {
    const route = routes.find((r) => r.id === item.id);
    return h("li", { class: item.kind, "data-route-id": item.id ?? null },
      h("span", { class: "what" }, item.what),
      item.href ? h("a", { href: item.href, class: "fix" }, t("attention.fix")) : null,
      item.why ? h("span", { class: "why" },
        typeof item.why === "string" ? item.why : failureText(item.why, targetOf(route?.webhookUrl))) : null);
  });
}

function card(label, value, kind, href) {
  return h("a", { class: `card ${kind}`, href },
    h("div", { class: "card-label" }, label),
    h("div", { class: "card-value", "data-testid": `stat-${kind}` }, value));
}

function draw(main, data) {
  const { stats, routes, url, problem } = data;
  const items = attention(data);
  const kept = formatPeriod(stats.retentionSeconds);
  replace(main,
    h("h1", {}, t("overview.title")),
    problem ? h("p", { class: "alert", role: "alert", id: "listen-problem" }, t("overview.notListening", { problem })) : null,
    items.length ? h("section", { "aria-labelledby": "attention-title" },
      h("h2", { id: "attention-title" }, t("attention.title")),
      h("ul", { class: "attention", id: "attention" }, items)) : null,
    h("div", { class: "cards" },
      card(t("overview.waitingNow"), formatNumber(stats.totals.pending), "pending", "#/deliveries?status=pending"),
      card(t("overview.sentDay"), formatNumber(stats.deliveredLastDay), "delivered", "#/deliveries?status=delivered"),
      card(t("overview.deadKept", { period: formatPeriod(stats.deadRetentionSeconds) }),
        formatNumber(stats.totals.dead), "dead", "#/deliveries?status=dead"),
      card(t("overview.oldestPending"),
        stats.oldestPendingAgeMs == null ? t("common.none") : formatAge(stats.oldestPendingAgeMs), "oldest",
        "#/deliveries?status=pending"),
      card(t("overview.sentKept", { period: kept }), formatNumber(stats.totals.delivered), "kept",
        "#/deliveries?status=delivered"),
      card(t("overview.routes"), formatNumber(stats.routes), "routes", "#/routes"),
      card(t("overview.unrouted"), formatNumber(stats.unroutedInboxes), "unrouted", "#/unrouted"),
      card(t("overview.duplicatesKept", { period: kept }), formatNumber(stats.duplicatesDropped), "duplicates",
        "#/deliveries")),
    routes.length ? h("section", { class: "panel" },
      h("h2", {}, t("overview.routesTitle")),
      h("ul", { class: "route-list", id: "route-list" }, routes.map((route) => h("li", { "data-route-id": route.id },
        h("a", { class: "route-name", href: `#/deliveries?routeId=${route.id}` }, routeLabel(route)),
        healthBadge(route),
        route.health ? h("span", { class: "last-sent" }, route.lastDeliveredAt
          ? t("routes.lastSent", { time: formatTime(route.lastDeliveredAt) }) : t("routes.neverSent")) : null)))) : null,
    h("section", { class: "panel" },
      h("h2", {}, t("overview.webhookTitle")),
      copyRow("webhook-url", url, t("overview.webhookTitle")),
      h("p", { class: "hint" }, t("overview.webhookHelp"))),
    h("details", { class: "panel setup", id: "setup-steps",
      open: main.querySelector("#setup-steps")?.open ?? routes.length === 0 },
      h("summary", {}, t("overview.setupTitle")),
      h("a", { class: "button primary", href: "#/chatwoot", id: "open-chatwoot" }, t("chatwoot.title")),
      h("ol", { class: "steps" },
        ["overview.step1", "overview.step2", "overview.step3", "overview.step4", "overview.step5"].map((k) => h("li", {}, t(k))))),
    h("p", { class: "hint" }, t("overview.version", { version: stats.version })));
}
