// Routes: the table with health, last successful delivery and queue; the add/edit form with every wrong field
// named under it in the user's language; enable toggle, test (with progress), retry of dead deliveries, delete.

import { api } from "../api/api.js";
import {
  clearFieldErrors, failureText, h, inboxLabel, meanings, replace, reportError, routeLabel, showFieldErrors, table,
  targetOf, toast,
} from "../dom.js";
import { formatTime, t } from "../i18n.js";

const LABELS = {
  inboxId: "routes.fieldInbox", name: "routes.fieldName", webhookUrl: "routes.fieldUrl",
  secret: "routes.fieldSecret", chatwootSecret: "routes.fieldChatwootSecret", enabled: "routes.fieldEnabled",
};

/** A route's health as a badge, with what it means as its tooltip and accessible description. */
export function healthBadge(route) {
  if (!route.enabled) {
    return h("span", { class: "badge paused", title: t("meaning.paused") },
      t("routes.pausedWaiting", { count: route.pending }));
  }
  if (!route.health) return h("span", { class: "badge none", title: t("meaning.none") }, t("health.none"));
  const state = t(`health.${route.health.state}`);
  return h("span", { class: `badge ${route.health.state}`, "data-health": route.health.state,
    title: t(`meaning.health.${route.health.state}`) },
  t("health.at", { state, time: formatTime(route.health.at) }));
}

export function render(main, params) {
  const state = { routes: [], editing: null, results: new Map(), testing: new Set() };
  const formArea = h("div", { id: "route-form-area" });
  const listArea = h("div", {}, h("p", {}, t("common.loading")));
  replace(main,
    h("div", { class: "title-row" },
      h("h1", {}, t("routes.title")),
      h("button", { type: "button", id: "add-route", onclick: () => openForm(null) }, t("routes.add"))),
    formArea,
    meanings(["health.ok", "health.failing", "health.dead", "paused"]),
    listArea);

  const load = () => api.listRoutes().then(({ routes }) => {
    state.routes = routes;
    drawList();
  }).catch(reportError);

  function drawList() {
    if (state.routes.length === 0) {
      replace(listArea, h("p", { class: "empty" }, t("routes.empty")));
      return;
    }
    replace(listArea, table(
      [t("routes.name"), t("routes.target"), t("routes.enabled"), t("routes.health"), t("routes.pending"),
        t("routes.actions")],
      state.routes.map(row)));
  }

  function row(route) {
    const result = state.results.get(route.id);
    const name = routeLabel(route);
    const testing = state.testing.has(route.id);
    return h("tr", { "data-route-id": route.id, "data-inbox-id": route.inboxId,
      class: String(route.id) === params.route ? "highlight" : null },
    h("td", { class: "title-cell" }, h("a", { href: `#/deliveries?routeId=${route.id}`, class: "route-name" }, name),
      h("span", { class: "explain" }, t("routes.inboxIs", { inbox: inboxLabel(route) }))),
    h("td", { class: "url" }, route.webhookUrl),
    h("td", {}, h("input", {
      type: "checkbox",
      checked: route.enabled,
      "aria-label": t("routes.enabledFor", { route: name }),
      class: "enabled-toggle",
      onchange: (e) => api.updateRoute(route.id, { enabled: e.target.checked }).then(load).catch((err) => {
        e.target.checked = !e.target.checked;
        reportError(err);
      }),
    })),
    h("td", { class: "status-cell" }, healthBadge(route),
      route.health ? h("span", { class: "explain last-sent" }, route.lastDeliveredAt
        ? t("routes.lastSent", { time: formatTime(route.lastDeliveredAt) }) : t("routes.neverSent")) : null,
      route.health && route.health.state !== "ok"
        ? h("span", { class: "explain" }, failureText(route.health, targetOf(route.webhookUrl))) : null),
    h("td", { class: "num" }, route.pending > 0
      ? h("a", { href: `#/deliveries?routeId=${route.id}&status=pending` }, route.pending) : route.pending),
    h("td", { class: "actions" }, h("div", { class: "row-actions" },
      h("button", { type: "button", onclick: () => openForm(route), "aria-label": t("routes.editFor", { route: name }) },
        t("common.edit")),
      h("button", { type: "button", class: "test", disabled: testing, "aria-busy": testing ? "true" : null,
        "aria-label": t("routes.testFor", { route: name }), onclick: () => test(route) },
      testing ? t("routes.testing") : t("routes.test")),
      route.dead > 0
        ? h("a", { class: "button dead-link", href: `#/deliveries?routeId=${route.id}&status=dead` },
          t("routes.seeDead", { count: route.dead })) : null,
      route.dead > 0
        ? h("button", { type: "button", class: "retry-dead", onclick: () => retryDead(route),
          "aria-label": t("routes.retryDeadFor", { route: name, count: route.dead }) },
        t("routes.retryDead", { count: route.dead })) : null,
      h("button", { type: "button", class: "danger", onclick: () => remove(route),
        "aria-label": t("routes.deleteFor", { route: name }) }, t("common.delete")),
      result ? h("div", { class: `test-result ${result.ok ? "ok" : "bad"}`, role: "status" },
        describe(result, route)) : null)));
  }

  function describe(r, route) {
    const note = r.internalTarget ? ` ${t("routes.testInternal")}` : "";
    if (r.ok) return t("routes.testOk", { status: r.statusCode, ms: r.latencyMs }) + note;
    return [failureText(r, targetOf(route.webhookUrl)) ?? t("routes.testFailed", { ms: r.latencyMs, error: "" }),
      note];
  }

  /** Tests a route: the button shows progress; a success also refreshes the route's health. */
  async function test(route) {
    state.testing.add(route.id);
    state.results.delete(route.id);
    drawList();
    try {
      state.results.set(route.id, await api.testRoute(route.id));
    } catch (err) {
      reportError(err);
    }
    state.testing.delete(route.id);
    drawList();
    if (state.results.get(route.id)?.ok) load();
  }

  async function retryDead(route) {
    try {
      const { retried } = await api.retryDead(route.id);
      toast(t("routes.retriedDead", { count: retried }));
      load();
    } catch (err) {
      reportError(err);
    }
  }

  async function remove(route) {
    if (!window.confirm(t("routes.confirmDelete", { route: routeLabel(route) }))) return;
    try {
      await api.deleteRoute(route.id);
      toast(t("routes.deleted"));
      if (state.editing?.id === route.id) closeForm();
      load();
    } catch (err) {
      reportError(err);
    }
  }

  function field(name, label, input, hint) {
    input.setAttribute("aria-describedby", [hint ? `route-${name}-hint` : null, `route-${name}-error`]
      .filter(Boolean).join(" "));
    return h("div", { class: "field" },
      h("label", { for: `route-${name}` }, label),
      input,
      hint ? h("p", { class: "hint", id: `route-${name}-hint` }, hint) : null,
      h("p", { class: "field-error", id: `route-${name}-error`, role: "alert" }));
  }

  /** A write-only secret: empty keeps the stored one, the checkbox removes it. */
  function secretField(name, has, texts) {
    const input = h("input", { id: `route-${name}`, name, type: "password", autocomplete: "new-password" });
    const clear = h("input", { type: "checkbox", id: `route-${name}-clear` });
    return {
      nodes: [
        field(name, t(texts.label), input, has ? t(texts.keep) : t(texts.hint)),
        has ? h("label", { class: "check" }, clear, t(texts.clear)) : null,
      ],
      apply(body) {
        if (input.value) body[name] = input.value;
        else if (clear.checked) body[name] = null;
      },
    };
  }

  function openForm(route, inboxId) {
    state.editing = route;
    const inbox = h("input", {
      id: "route-inboxId", name: "inboxId", inputmode: "numeric", required: true,
      value: route?.inboxId ?? inboxId ?? "",
    });
    const name = h("input", { id: "route-name", name: "name", maxlength: 100, value: route?.name ?? "" });
    const url = h("input", {
      id: "route-webhookUrl", name: "webhookUrl", type: "url", required: true,
      placeholder: "http://gowa:3000/chatwoot/webhook", value: route?.webhookUrl ?? "",
    });
    const secret = secretField("secret", route?.hasSecret, {
      label: "routes.fieldSecret", hint: "routes.fieldSecretHint", keep: "routes.secretKeep", clear: "routes.secretClear",
    });
    const chatwootSecret = secretField("chatwootSecret", route?.hasChatwootSecret, {
      label: "routes.fieldChatwootSecret", hint: "routes.fieldChatwootSecretHint", keep: "routes.secretKeep",
      clear: "routes.secretClear",
    });
    const enabled = h("input", { type: "checkbox", id: "route-enabled", checked: route?.enabled ?? true });
    // The linked Chatwoot accounts' inboxes, to pick by name (typing an ID works without a link).
    const pick = h("select", { id: "route-inboxPick", onchange: () => {
      if (!pick.value) return;
      inbox.value = pick.value;
      if (!name.value.trim()) name.value = pick.selectedOptions[0]?.dataset.name ?? "";
    } }, h("option", { value: "" }, t("routes.pickInboxNone")));
    const pickField = h("div", { class: "field", hidden: true },
      h("label", { for: "route-inboxPick" }, t("routes.pickInbox")), pick);
    api.chatwootInboxes().then(({ inboxes }) => {
      for (const i of inboxes) {
        pick.append(h("option", { value: i.id, "data-name": i.name, selected: String(i.id) === String(inbox.value) },
          `${i.name} · ${i.channelType.replace("Channel::", "")} · ID ${i.id}`));
      }
      pickField.hidden = inboxes.length === 0;
    }).catch(() => {});
    const form = h("form", { class: "panel route-form", novalidate: true },
      h("h2", {}, route ? t("routes.formEdit", { route: routeLabel(route) }) : t("routes.formAdd")),
      pickField,
      field("inboxId", t("routes.fieldInbox"), inbox),
      field("name", t("routes.fieldName"), name),
      field("webhookUrl", t("routes.fieldUrl"), url, t("routes.fieldUrlHint")),
      ...secret.nodes,
      ...chatwootSecret.nodes,
      h("label", { class: "check" }, enabled, t("routes.fieldEnabled")),
      h("div", { class: "buttons" },
        h("button", { type: "submit", class: "primary", id: "route-save" }, t("common.save")),
        h("button", { type: "button", onclick: closeForm }, t("common.cancel"))));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      clearFieldErrors(form);
      // An empty field is left out, so that the server says it is required rather than malformed.
      const input = { inboxId: inbox.value.trim() || undefined, webhookUrl: url.value.trim() || undefined,
        name: name.value.trim() || null, enabled: enabled.checked };
      secret.apply(input);
      chatwootSecret.apply(input);
      try {
        if (route) await api.updateRoute(route.id, input);
        else await api.createRoute(input);
        toast(t("routes.saved"));
        closeForm();
        load();
      } catch (err) {
        if (!showFieldErrors(form, "route", err, LABELS)) reportError(err);
      }
    });
    replace(formArea, form);
    (route ? url : inbox).focus();
  }

  function closeForm() {
    state.editing = null;
    replace(formArea);
  }

  load();
  if (params.new) openForm(null, params.new);
  return { onChange: (types) => (types.has("routes") || types.has("deliveries") || types.has("resync")) && load() };
}
