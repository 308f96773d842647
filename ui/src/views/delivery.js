// One delivery: summary, payload (pretty-printed, collapsible), every attempt; retry (dead), send again
// (delivered, after a confirmation), discard.

import { api } from "../api/api.js";
import { h, inboxLabel, replace, reportError, table, toast } from "../dom.js";
import { formatNumber, formatTime, t } from "../i18n.js";
import { lastResult, statusBadge } from "./deliveries.js";

export function render(main, params) {
  const id = params.id;
  let payloadOpen = true;
  replace(main, h("p", {}, t("common.loading")));

  const load = () => api.delivery(id).then(({ delivery }) => draw(delivery)).catch((err) => {
    if (err.status === 404 || err.code === "not_found") {
      replace(main, h("p", { class: "empty" }, t("deliveries.notFound", { id })),
        h("a", { href: "#/deliveries" }, t("common.back")));
    } else {
      reportError(err);
    }
  });

  function pretty(payload) {
    try {
      return JSON.stringify(JSON.parse(payload), null, 2);
    } catch {
      return payload;
    }
  }

  function draw(d) {
    const details = h("details", { class: "payload", open: payloadOpen },
      h("summary", {}, t("deliveries.payload")),
      h("pre", {}, pretty(d.payload)));
    details.addEventListener("toggle", () => { payloadOpen = details.open; });
    replace(main,
      h("div", { class: "title-row" },
        h("h1", {}, t("deliveries.detailTitle", { id: d.id })),
        h("a", { href: "#/deliveries", class: "button" }, t("common.back"))),
      h("dl", { class: "summary" },
        h("dt", {}, t("deliveries.status")), h("dd", { id: "delivery-status" }, statusBadge(d.status)),
        h("dt", {}, t("deliveries.event")), h("dd", {}, d.event, d.recovered
          ? [" ", h("span", { class: "badge pending recovered", id: "recovered" }, t("deliveries.recovered"))] : null),
        d.messageId != null ? [h("dt", {}, t("deliveries.message")), h("dd", {}, d.messageId)] : null,
        d.duplicates > 0
          ? [h("dt", {}, t("deliveries.duplicates")), h("dd", { id: "delivery-duplicates" }, d.duplicates)] : null,
        h("dt", {}, t("deliveries.inbox")), h("dd", {}, inboxLabel(d)),
        h("dt", {}, t("deliveries.conversation")), h("dd", {}, d.conversationId ?? t("common.none")),
        h("dt", {}, t("deliveries.received")), h("dd", {}, formatTime(d.receivedAt)),
        h("dt", {}, t("deliveries.attempts")), h("dd", {}, d.attempts),
        d.nextAttemptAt ? [h("dt", {}, t("deliveries.nextAttempt")), h("dd", {}, formatTime(d.nextAttemptAt))] : null,
        h("dt", {}, t("deliveries.last")), h("dd", {}, lastResult(d)),
        h("dt", {}, t("deliveries.size")), h("dd", {}, t("deliveries.bytes", { n: formatNumber(d.size) }))),
      h("div", { class: "buttons" },
        // A dead reply never reached the customer: one click. A delivered one did: sending it again is a
        // second WhatsApp message, so it is a secondary action that asks first.
        d.status === "dead"
          ? h("button", { type: "button", id: "retry", class: "primary", onclick: retry }, t("deliveries.retry"))
          : null,
        d.status === "delivered"
          ? h("button", { type: "button", id: "send-again", onclick: sendAgain }, t("deliveries.sendAgain"))
          : null,
        h("button", { type: "button", id: "discard", class: "danger", onclick: discard }, t("deliveries.discard"))),
      d.recovered ? h("p", { class: "hint", id: "recovered-note" }, t("deliveries.recoveredNote")) : null,
      details,
      h("h2", {}, t("deliveries.attemptLog")),
      d.attemptLog.length === 0 ? h("p", { class: "empty" }, t("deliveries.noAttempts")) : table(
        [t("attempts.number"), t("attempts.trigger"), t("attempts.started"), t("attempts.status"),
          t("attempts.duration"), t("attempts.error"), t("attempts.response")],
        d.attemptLog.map((a) => h("tr", {},
          h("td", { class: "num" }, a.attempt),
          h("td", {}, t(`trigger.${a.trigger}`)),
          h("td", {}, formatTime(a.startedAt)),
          h("td", { class: "num" }, a.statusCode ?? t("common.none")),
          h("td", { class: "num" }, t("attempts.durationMs", { ms: a.durationMs })),
          h("td", {}, a.ambiguous ? h("span", { class: "badge failing ambiguous" }, t("attempts.ambiguous")) : null,
            " ", a.error ?? t("common.none")),
          h("td", {}, a.responseSnippet ? h("code", {}, a.responseSnippet) : t("common.none"))))),
      d.chatwoot?.length ? h("section", { id: "told-chatwoot" },
        h("h2", {}, t("told.title")),
        h("ul", { class: "told" }, d.chatwoot.map((f) => h("li", { "data-kind": f.kind, "data-status": f.status },
          t(`told.${f.kind}`), " · ", t(`told.status.${f.status}`), " · ", formatTime(f.at),
          f.lastError ? h("span", { class: "hint" }, ` (${f.lastError})`) : null)))) : null);
  }

  async function retry() {
    try {
      await api.retryDelivery(id);
      toast(t("deliveries.retried", { id }));
      load();
    } catch (err) {
      reportError(err);
    }
  }

  function sendAgain() {
    if (!window.confirm(t("deliveries.confirmSendAgain", { id }))) return;
    retry();
  }

  async function discard() {
    if (!window.confirm(t("deliveries.confirmDiscard", { id }))) return;
    try {
      await api.discardDelivery(id);
      toast(t("deliveries.discarded", { id }));
      window.location.hash = "#/deliveries";
    } catch (err) {
      reportError(err);
    }
  }

  load();
  return { onChange: (types) => (types.has("deliveries") || types.has("resync")) && load() };
}
