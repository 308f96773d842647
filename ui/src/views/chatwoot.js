// Chatwoot: the setup in three steps. 1. The public address Chatwoot must post to (with what Chatwoot makes of
// a private one). 2. Linked accounts: connect with an administrator's token, register the webhook (its secret is
// taken from Chatwoot), check that Chatwoot reaches the relay, unlink. 3. The accounts' inboxes by name, with
// the ones that would send every reply twice, and a fix.

import { api } from "../api/api.js";
import { clearFieldErrors, h, replace, reportError, toast } from "../dom.js";
import { formatTime, t } from "../i18n.js";

export function render(main) {
  const state = { status: null, inboxes: null, checks: new Map() };
  const problemArea = h("div", {});
  const urlArea = h("section", { class: "panel", id: "public-url-panel" }, h("p", {}, t("common.loading")));
  const linksArea = h("section", { class: "panel", id: "links-panel" });
  const inboxArea = h("section", { class: "panel", id: "inboxes-panel" });
  const heldArea = h("div", {});
  replace(main, h("h1", {}, t("chatwoot.title")), problemArea, heldArea, h("p", { class: "hint" }, t("chatwoot.intro")),
    urlArea, linksArea, inboxArea);
  // The forms are made once and stay where they are: a redraw (a change event, another account linked) leaves
  // the field being typed in, its focus, its caret and its text alone. Moving a focused field, even back to
  // the same place, would send the next keys nowhere.
  const url = h("input", { id: "public-url", type: "url", "aria-describedby": "public-url-hint",
    oninput: () => { url.dataset.typed = "1"; } });
  const urlSave = h("button", { type: "submit", class: "primary", id: "public-url-save" }, t("common.save"));
  const urlError = h("p", { class: "field-error", id: "public-url-error", role: "alert" });
  const urlHint = h("p", { class: "hint", id: "public-url-hint" });
  const urlReach = h("div", {});
  const urlForm = h("form", { class: "inline-form", onsubmit: saveUrl },
    h("label", { for: "public-url" }, t("chatwoot.urlLabel")),
    h("div", { class: "copy-row" }, url, urlSave));
  const linkForm = makeLinkForm();
  const cardsArea = h("div", {});
  const linkFormArea = h("div", {});

  // Loads overlap (a live event, the admin's own click): an answer to an older one can come after a newer one's
  // and would draw the page as it was before the change, so only the latest load draws.
  let generation = 0;
  const load = async () => {
    const mine = ++generation;
    try {
      const [problem, status, held] = await Promise.all([api.listenProblem(), api.chatwoot(), api.heldReplies()]);
      if (mine !== generation) return;
      replace(problemArea, problem
        ? h("p", { class: "alert", role: "alert", id: "listen-problem" }, t("overview.notListening", { problem }))
        : null);
      state.status = status;
      drawUrl();
      drawLinks();
      drawHeld(held.held);
      const inboxes = status.links.length > 0 ? await api.chatwootInboxes() : null;
      if (mine !== generation) return;
      state.inboxes = inboxes;
      drawInboxes();
    } catch (err) {
      if (mine === generation) reportError(err);
    }
  };

  function drawUrl() {
    const s = state.status;
    const fromEnv = s.publicUrlSource === "env";
    // A redraw shows the saved or suggested address, unless the field was changed since (typed, pasted or
    // cleared): what the admin is writing is never overwritten.
    if (!url.dataset.typed && url.value === (url.dataset.shown ?? "")) {
      url.value = s.publicUrl ?? s.suggestedUrl;
      url.dataset.shown = url.value;
    }
    url.readOnly = fromEnv;
    urlSave.hidden = fromEnv;
    urlHint.textContent = fromEnv ? t("chatwoot.urlFromEnv") : s.publicUrl ? t("chatwoot.urlHint") : t("chatwoot.urlSuggested");
    replace(urlReach, s.publicUrlReach && s.publicUrlReach !== "public"
      ? h("p", { class: "alert", id: "public-url-note", role: "status" }, t(`chatwoot.reach.${s.publicUrlReach}`))
      : null);
    if (urlForm.parentNode !== urlArea) replace(urlArea, h("h2", {}, t("chatwoot.urlTitle")), urlForm, urlError, urlHint, urlReach);
  }

  async function saveUrl(event) {
    event.preventDefault();
    urlError.textContent = "";
    try {
      const status = await api.setPublicUrl(url.value.trim());
      generation++;
      state.status = status;
      delete url.dataset.typed;
      url.dataset.shown = url.value;
      toast(t("chatwoot.urlSaved"));
      drawUrl();
      drawLinks();
    } catch (err) {
      urlError.textContent = explain(err, "publicUrl");
    }
  }

  function drawLinks() {
    const s = state.status;
    replace(cardsArea,
      s.links.length === 0 ? h("p", { class: "empty" }, t("chatwoot.noAccounts")) : null,
      s.links.map(linkCard));
    linkForm.place(linkFormArea, s.links.length > 0);
    if (cardsArea.parentNode !== linksArea) replace(linksArea, h("h2", {}, t("chatwoot.accountsTitle")), cardsArea, linkFormArea);
  }

  function linkCard(link) {
    const hook = link.webhook;
    const hookText = !hook ? t("chatwoot.webhookNone")
      : !hook.current ? t("chatwoot.webhookOld", { url: hook.url })
        : hook.verified ? t("chatwoot.webhookOk", { url: hook.url }) : t("chatwoot.webhookUnsigned", { url: hook.url });
    const check = state.checks.get(link.id);
    return h("article", { class: "link-card", "data-link-id": link.id },
      h("h3", {}, t("chatwoot.account", { name: link.accountName || "—", id: link.accountId })),
      h("p", { class: "hint" }, link.url, link.fromEnv ? ` · ${t("chatwoot.fromEnv")}` : ""),
      h("p", { class: `webhook-state ${hook?.current && hook.verified ? "ok" : "todo"}` }, hookText),
      link.heardAt ? h("p", { class: "hint" }, t("chatwoot.heard", { time: formatTime(link.heardAt) })) : null,
      link.caughtUp ? h("p", { class: link.caughtUp.error ? "alert catch-up" : "hint catch-up" },
        link.caughtUp.error
          ? t("chatwoot.catchUpFailed", { time: formatTime(link.caughtUp.at), error: link.caughtUp.error })
          : t("chatwoot.caughtUp", { time: formatTime(link.caughtUp.at), queued: link.caughtUp.queued,
            held: link.caughtUp.held })) : null,
      h("div", { class: "buttons" },
        h("button", { type: "button", class: hook?.current ? "register" : "register primary", onclick: (e) => register(link, e.target) },
          hook?.current ? t("chatwoot.registerAgain") : t("chatwoot.register")),
        h("button", { type: "button", class: hook?.current ? "check primary" : "check", disabled: !hook, onclick: (e) => runCheck(link, e.target) },
          t("chatwoot.check")),
        h("button", { type: "button", class: "unlink danger", onclick: () => unlink(link) }, t("chatwoot.unlink"))),
      check ? h("p", { class: `check-result ${check.ok ? "ok" : "bad"}`, role: "status" }, describeCheck(check)) : null);
  }

  function describeCheck(check) {
    if (check.ok) return t("chatwoot.reached", { time: formatTime(check.reachedAt), ms: check.latencyMs });
    const reach = state.status.publicUrlReach;
    if (check.step === "timeout" && reach && reach !== "public") {
      return `${t("chatwoot.step.timeout")} ${t(`chatwoot.reach.${reach}`)}`;
    }
    if (check.step === "api") return t("chatwoot.step.api", { message: check.message });
    return t(`chatwoot.step.${check.step}`);
  }

  async function register(link, button) {
    button.disabled = true;
    try {
      await api.registerWebhook(link.id);
      toast(t("chatwoot.registered"));
    } catch (err) {
      toast(explain(err), "error");
    }
    load();
  }

  async function runCheck(link, button) {
    button.disabled = true;
    button.textContent = t("chatwoot.checking");
    try {
      state.checks.set(link.id, await api.checkReach(link.id));
    } catch (err) {
      reportError(err);
    }
    load();
  }

  async function unlink(link) {
    if (!window.confirm(t("chatwoot.confirmUnlink", { name: link.accountName || link.accountId }))) return;
    const removeWebhook = Boolean(link.webhook) && window.confirm(t("chatwoot.confirmRemoveWebhook"));
    try {
      await api.unlinkChatwoot(link.id, removeWebhook);
      toast(t("chatwoot.unlinked"));
    } catch (err) {
      toast(explain(err), "error");
    }
    load();
  }

  /** The connect form, made once; `place(area, another)` shows it there, folded once an account exists. */
  function makeLinkForm() {
    const field = (name, label, input, hint) => {
      input.setAttribute("aria-describedby", `link-${name}-hint link-${name}-error`);
      return h("div", { class: "field" },
        h("label", { for: `link-${name}` }, label), input,
        hint ? h("p", { class: "hint", id: `link-${name}-hint` }, hint) : null,
        h("p", { class: "field-error", id: `link-${name}-error`, role: "alert" }));
    };
    const base = h("input", { id: "link-url", type: "url", required: true, placeholder: "https://chat.example.com" });
    const account = h("input", { id: "link-accountId", inputmode: "numeric", required: true, size: 6 });
    const token = h("input", { id: "link-token", type: "password", autocomplete: "off", required: true });
    const heading = h("h3", {}, t("chatwoot.connect"));
    const save = h("button", { type: "submit", class: "primary", id: "link-save" }, t("chatwoot.connectButton"));
    const form = h("form", { class: "route-form", id: "link-form", novalidate: true },
      heading,
      field("url", t("chatwoot.fieldUrl"), base, t("chatwoot.fieldUrlHint")),
      field("accountId", t("chatwoot.fieldAccount"), account, t("chatwoot.fieldAccountHint")),
      field("token", t("chatwoot.fieldToken"), token, t("chatwoot.fieldTokenHint")),
      h("p", { class: "field-error", id: "link-error", role: "alert" }),
      h("div", { class: "buttons" }, save));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearFieldErrors(form);
      save.disabled = true;
      save.textContent = t("chatwoot.connecting");
      try {
        await api.linkChatwoot({ url: base.value.trim(), accountId: account.value.trim(), token: token.value.trim() });
        form.reset();
        toast(t("chatwoot.linked"));
        load();
      } catch (err) {
        const target = form.querySelector(`#link-${err.field}-error`) ?? form.querySelector("#link-error");
        target.textContent = explain(err);
        form.querySelector(`#link-${err.field}`)?.setAttribute("aria-invalid", "true");
      }
      save.disabled = false;
      save.textContent = t("chatwoot.connectButton");
    });
    // With an account connected, another one is one click away instead of a form in the way.
    const folded = h("details", { class: "another" }, h("summary", {}, t("chatwoot.connectAnother")));
    return {
      place(area, another) {
        heading.hidden = another;
        // Moved only when an account comes or goes, not on every redraw.
        const shown = another ? folded : form;
        if (shown.parentNode === area) return;
        if (another) folded.append(form);
        replace(area, shown);
      },
    };
  }

  /** Replies found by catching up that are too old to send by themselves. */
  function drawHeld(held) {
    if (held.length === 0) {
      replace(heldArea);
      return;
    }
    const decide = async (item, send) => {
      if (send && !window.confirm(t("chatwoot.confirmSendHeld"))) return;
      try {
        drawHeld((send ? await api.sendHeld(item.id) : await api.discardHeld(item.id)).held);
        toast(t(send ? "chatwoot.heldSent" : "chatwoot.heldDiscarded"));
      } catch (err) {
        reportError(err);
      }
    };
    replace(heldArea, h("section", { class: "panel alert-panel", id: "held-panel" },
      h("h2", {}, t("chatwoot.heldTitle", { count: held.length })),
      h("p", { class: "hint" }, t("chatwoot.heldHint")),
      h("ul", { class: "inbox-list" }, held.map((item) => h("li", { class: "inbox-row", "data-held-id": item.id },
        h("span", { class: "inbox-name" }, item.content),
        h("span", { class: "hint" }, t("chatwoot.heldWhere", {
          inbox: item.inboxName ?? item.inboxId, conversation: item.conversationId,
          time: formatTime(item.writtenAt) })),
        h("button", { type: "button", class: "send-held primary", onclick: () => decide(item, true) },
          t("chatwoot.sendHeld")),
        h("button", { type: "button", class: "discard-held danger", onclick: () => decide(item, false) },
          t("chatwoot.discardHeld")))))));
  }

  function drawInboxes() {
    const list = state.inboxes;
    if (!list) {
      replace(inboxArea, h("h2", {}, t("chatwoot.inboxesTitle")), h("p", { class: "empty" }, t("chatwoot.inboxesNone")));
      return;
    }
    const problems = list.problems.map((p) => h("p", { class: "alert", role: "alert" }, explain(p)));
    const rows = list.inboxes.map((inbox) => h("li", { class: "inbox-row", "data-inbox-id": inbox.id },
      h("span", { class: "inbox-name" }, t("chatwoot.inbox", { name: inbox.name, id: inbox.id })),
      h("span", { class: "hint" }, channel(inbox.channelType)),
      inbox.routeId
        ? h("a", { href: "#/routes" }, t("chatwoot.routed"))
        : h("a", { class: "button add-route", href: `#/routes?new=${inbox.id}` }, t("unrouted.addRoute")),
      inbox.doubleDelivery
        ? h("div", { class: "alert double-delivery", role: "alert" },
          t("chatwoot.double", { url: inbox.ownWebhook }),
          h("button", { type: "button", class: "fix-double primary", onclick: () => fixDouble(inbox) }, t("chatwoot.fixDouble")))
        : null));
    replace(inboxArea, h("h2", {}, t("chatwoot.inboxesTitle")), problems, h("ul", { class: "inbox-list" }, rows));
  }

  async function fixDouble(inbox) {
    if (!window.confirm(t("chatwoot.confirmFixDouble", { name: inbox.name }))) return;
    try {
      const inboxes = await api.clearInboxWebhook(inbox.linkId, inbox.id);
      generation++;
      state.inboxes = inboxes;
      toast(t("chatwoot.fixedDouble"));
      drawInboxes();
    } catch (err) {
      toast(explain(err), "error");
    }
  }

  load();
  return { onChange: (types) => (types.has("chatwoot") || types.has("resync")) && load() };
}

/** A channel type (`Channel::Api`) as a word. */
function channel(type) {
  const known = { "Channel::Api": "API", "Channel::Whatsapp": "WhatsApp", "Channel::WebWidget": "Website" };
  return known[type] ?? type.replace("Channel::", "");
}

/**
 * What Chatwoot's answer means, in the reader's language; a wrong field of `form` in the reader's language too;
 * the server's words for anything else.
 */
function explain(err, form = "link") {
  const known = ["chatwoot_unreachable", "chatwoot_not_api", "chatwoot_token", "chatwoot_account",
    "chatwoot_not_admin", "chatwoot_error", "chatwoot_gone"];
  if (known.includes(err.code)) return t(`chatwoot.error.${err.code}`, { message: err.message });
  const key = `invalid.${form}.${err.field}`;
  return err.code === "invalid" && t(key) !== key ? t(key) : err.message;
}
