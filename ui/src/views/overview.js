// Overview: totals, queue, the webhook URL to paste into Chatwoot, and the setup steps.

import { api } from "../api/api.js";
import { copyRow, h, replace, reportError } from "../dom.js";
import { formatAge, formatNumber, t } from "../i18n.js";

export function render(main) {
  replace(main, h("h1", {}, t("overview.title")), h("p", {}, t("common.loading")));
  const load = () => api.stats()
    .then(async (stats) => draw(main, stats, await webhookAddress(stats), await api.listenProblem()))
    .catch(reportError);
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

function card(label, value, kind = "") {
  return h("div", { class: `card ${kind}` }, h("div", { class: "card-label" }, label),
    h("div", { class: "card-value", "data-testid": `stat-${kind || label}` }, value));
}

function draw(main, stats, url, problem) {
  replace(main,
    h("h1", {}, t("overview.title")),
    problem ? h("p", { class: "alert", role: "alert", id: "listen-problem" }, t("overview.notListening", { problem })) : null,
    h("div", { class: "cards" },
      card(t("overview.pending"), formatNumber(stats.totals.pending), "pending"),
      card(t("overview.delivered"), formatNumber(stats.totals.delivered), "delivered"),
      card(t("overview.dead"), formatNumber(stats.totals.dead), "dead"),
      card(t("overview.oldestPending"),
        stats.oldestPendingAgeMs == null ? t("common.none") : formatAge(stats.oldestPendingAgeMs), "oldest"),
      card(t("overview.routes"), formatNumber(stats.routes), "routes"),
      card(t("overview.unrouted"), formatNumber(stats.unroutedInboxes), "unrouted"),
      card(t("overview.duplicates"), formatNumber(stats.duplicatesDropped), "duplicates")),
    h("section", { class: "panel" },
      h("h2", {}, t("overview.webhookTitle")),
      copyRow("webhook-url", url, t("overview.webhookTitle")),
      h("p", { class: "hint" }, t("overview.webhookHelp"))),
    h("section", { class: "panel" },
      h("h2", {}, t("overview.setupTitle")),
      h("a", { class: "button primary", href: "#/chatwoot", id: "open-chatwoot" }, t("chatwoot.title")),
      h("ol", { class: "steps" },
        ["overview.step1", "overview.step2", "overview.step3", "overview.step4", "overview.step5"].map((k) => h("li", {}, t(k))))),
    h("p", { class: "hint" }, t("overview.version", { version: stats.version })));
}
