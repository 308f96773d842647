// One message: who and what first (customer, phone, route, the message), what happened in plain words, the
// actions — send again (a dead one at once; a delivered one after a confirmation, since the customer would get
// it twice) and discard —, what Chatwoot was told, every attempt, and the technical details and raw JSON
// behind toggles.

import { api } from "../api/api.js";
import { failureText, h, inboxLabel, replace, reportError, routeLabel, targetOf, toast } from "../dom.js";
import { formatNumber, formatTime, t } from "../i18n.js";
import { eventLabel, statusBadge } from "./deliveries.js";

export function render(main, params) {
  const id = params.id;
  const open = { payload: false, technical: false };
  let routes = [];
  replace(main, h("p", {}, t("common.loading")));

  const load = () => Promise.all([api.delivery(id), api.listRoutes().catch(() => ({ routes: [] }))])
    .then(([{ delivery }, answer]) => {
      routes = answer.routes;
      draw(delivery);
    }).catch((err) => {
      if (err.status === 404 || err.code === "not_found") {
        replace(main, h("h1", {}, t("deliveries.gone")), h("p", { class: "empty" }, t("deliveries.notFound", { id })),
          h("a", { href: "#/deliveries" }, t("common.back")));
      } else {
        reportError(err);
      }
    });

  function parsed(payload) {
    try {
      return JSON.parse(payload);
    } catch {
      return null;
    }
  }

  /** A toggle that stays as the user left it when the page redraws. */
  function toggle(name, id, summary, ...content) {
    const details = h("details", { class: name === "payload" ? "payload" : "technical", id, open: open[name] },
      h("summary", {}, summary), ...content);
    details.addEventListener("toggle", () => { open[name] = details.open; });
    return details;
  }

  function draw(d) {
    const payload = parsed(d.payload);
    const route = routes.find((r) => r.inboxId === d.inboxId);
    const text = typeof payload?.content === "string" ? payload.content : null;
    const who = d.customerName ?? d.customerPhone;
    const title = !who ? t("deliveries.detailTitle", { id: d.id })
      : d.messageType === "incoming" ? t("deliveries.titleFrom", { who })
        : d.private ? t("deliveries.titleNote", { who })
          : d.messageType === "outgoing" ? t("deliveries.titleReply", { who })
            : `${eventLabel(d.event)} · ${who}`;
    replace(main,
      h("div", { class: "title-row" },
        h("h1", {}, title),
        h("a", { href: "#/deliveries", class: "button" }, t("common.back"))),
      h("div", { class: "lead", id: "delivery-lead" },
        h("p", {}, d.customerName && d.customerPhone ? [h("span", { class: "phone" }, d.customerPhone), " · "] : null,
          route
          ? h("a", { href: `#/deliveries?routeId=${route.id}` }, routeLabel(route)) : d.routeName ?? inboxLabel(d)),
        h("p", { class: "kind" }, d.messageType === "incoming" ? t("message.fromCustomer")
          : d.private ? t("message.note") : d.messageType === "outgoing" ? t("message.reply") : eventLabel(d.event),
        " · ", formatTime(d.receivedAt)),
        text ? h("blockquote", { id: "delivery-text" }, text)
          : d.attachment ? h("p", {}, t("message.attachment", { kind: d.attachment })) : null),
      h("dl", { class: "summary" },
        h("dt", {}, t("deliveries.status")),
        h("dd", { id: "delivery-status" }, statusBadge(d.status), h("span", { class: "explain" }, t(`meaning.${d.status}`))),
        d.status !== "delivered" || d.problem ? [h("dt", {}, t("deliveries.last")), h("dd", { id: "delivery-problem" },
          failureText(d, targetOf(route?.webhookUrl)) ?? t("deliveries.notTried"))] : null,
        d.nextAttemptAt ? [h("dt", {}, t("deliveries.nextAttempt")), h("dd", {}, formatTime(d.nextAttemptAt))] : null,
        h("dt", {}, t("deliveries.attempts")), h("dd", {}, d.attempts)),
      h("div", { class: "buttons" },
        d.status === "dead"
          ? h("button", { type: "button", id: "retry", class: "primary", onclick: retry }, t("deliveries.retry"))
          : null,
        d.status === "delivered"
          ? h("button", { type: "button", id: "send-again", onclick: sendAgain }, t("deliveries.sendAgain"))
          : null,
        h("button", { type: "button", id: "discard", class: "danger", onclick: discard }, t("deliveries.discard"))),
      d.recovered ? [h("p", {}, h("span", { class: "badge pending recovered", id: "recovered" }, t("deliveries.recovered"))),
        h("p", { class: "hint", id: "recovered-note" }, t("deliveries.recoveredNote"))] : null,
      d.chatwoot?.length ? h("section", { id: "told-chatwoot" },
        h("h2", {}, t("told.title")),
        h("ul", { class: "told" }, d.chatwoot.map((f) => h("li", { "data-kind": f.kind, "data-status": f.status },
          t(`told.${f.kind}`), " · ", t(`told.status.${f.status}`), " · ", formatTime(f.at),
          f.lastError ? h("span", { class: "hint" }, ` (${f.lastError})`) : null)))) : null,
      h("h2", {}, t("deliveries.attemptLog")),
      d.attemptLog.length === 0 ? h("p", { class: "empty" }, t("deliveries.noAttempts")) : h("ol", { class: "attempt-list", id: "attempts" },
        d.attemptLog.map((a) => h("li", { "data-trigger": a.trigger },
          h("strong", {}, t("attempts.line", { n: a.attempt, time: formatTime(a.startedAt), ms: a.durationMs })),
          " · ", t(`trigger.${a.trigger}`), " · ",
          a.statusCode && a.statusCode < 300 ? t("attempts.accepted", { status: a.statusCode })
            : failureText(a, targetOf(route?.webhookUrl)) ?? t("common.none"),
          a.ambiguous ? h("span", { class: "badge failing ambiguous", title: t("attempts.ambiguousNote") },
            t("attempts.ambiguous")) : null,
          a.responseSnippet ? h("details", { class: "raw" }, h("summary", {}, t("attempts.response")),
            h("code", {}, a.responseSnippet)) : null))),
      toggle("technical", "technical", t("deliveries.technical"),
        h("dl", { class: "summary" },
          h("dt", {}, t("deliveries.id")), h("dd", {}, d.id),
          h("dt", {}, t("deliveries.event")), h("dd", {}, h("code", {}, d.event)),
          d.messageId != null ? [h("dt", {}, t("deliveries.messageId")), h("dd", {}, d.messageId)] : null,
          h("dt", {}, t("deliveries.inbox")), h("dd", {}, inboxLabel(d)),
          h("dt", {}, t("deliveries.conversation")), h("dd", {}, d.conversationId ?? t("common.none")),
          d.duplicates > 0
            ? [h("dt", {}, t("deliveries.duplicates")), h("dd", { id: "delivery-duplicates" }, d.duplicates)] : null,
          h("dt", {}, t("deliveries.size")), h("dd", {}, t("deliveries.bytes", { n: formatNumber(d.size) })))),
      toggle("payload", "payload", t("deliveries.payload"),
        h("pre", {}, payload ? JSON.stringify(payload, null, 2) : d.payload)));
  }

  async function retry() {
    try {
      await api.retryDelivery(id);
      toast(t("deliveries.retried"));
      load();
    } catch (err) {
      reportError(err);
    }
  }

  function sendAgain() {
    if (!window.confirm(t("deliveries.confirmSendAgain"))) return;
    retry();
  }

  async function discard() {
    if (!window.confirm(t("deliveries.confirmDiscard"))) return;
    try {
      await api.discardDelivery(id);
      toast(t("deliveries.discarded"));
      window.location.hash = "#/deliveries";
    } catch (err) {
      reportError(err);
    }
  }

  load();
  return { onChange: (types) => (types.has("deliveries") || types.has("resync")) && load() };
}
