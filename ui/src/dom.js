// Building DOM nodes. Server data only ever becomes text (textContent, attribute values), never HTML.

import { t } from "./i18n.js";

/**
 * h("button", {class: "x", onclick: fn}, "label", child, …) → element.
 * Attributes starting with "on" become listeners; `true`/`false` toggle boolean attributes.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "value") {
      el.value = value;
    } else if (key === "checked") {
      el.checked = Boolean(value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's content. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/**
 * A table. Each cell carries its column's name, so that on a phone the rows become cards with labelled lines
 * (style.css) instead of a table that hides columns off-screen.
 */
export function table(headers, rows) {
  for (const row of rows.flat()) {
    [...row.children].forEach((cell, i) => {
      if (headers[i] && !cell.hasAttribute("data-label")) cell.setAttribute("data-label", headers[i]);
    });
  }
  return h("div", { class: "table-wrap" },
    h("table", { class: "cards-on-phone" },
      h("thead", {}, h("tr", {}, headers.map((label) => h("th", { scope: "col" }, label)))),
      h("tbody", {}, rows)));
}

/** Shows a short message in the status area. */
let toastTimer = null;
export function toast(message, kind = "info") {
  const el = document.getElementById("toast");
  replace(el, h("div", { class: `toast ${kind}` }, message));
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => replace(el), kind === "error" ? 8000 : 4000);
}

/** Errors the panel says in the user's language; anything else keeps the server's words. */
const KNOWN_ERRORS = ["offline", "not_found", "conflict", "overloaded", "unavailable", "internal", "unauthorized"];

/** Shows an error from the API (or anything thrown) to the user. */
export function reportError(err) {
  const message = KNOWN_ERRORS.includes(err?.code) ? t(`error.${err.code}`)
    : t("error.generic", { message: err?.message ?? err });
  toast(message, "error");
}

/** A route's name for people: its own name, else its inbox's name, else the inbox ID. */
export function routeLabel(route) {
  return route.name ?? route.inboxName ?? t("routes.inboxNumber", { id: route.inboxId });
}

/** The host and port a route's URL points at (what a connection failure is about). */
export function targetOf(webhookUrl) {
  try {
    const url = new URL(webhookUrl);
    return url.port ? `${url.hostname}:${url.port}` : url.hostname;
  } catch {
    return webhookUrl ?? "";
  }
}

/**
 * A failed attempt in plain words ("GoWA cannot be reached: nothing answers at 10.0.0.5:3000 — is GoWA
 * running?"), with the raw error behind "Details". `failure` has `problem`, `statusCode`/`lastStatusCode` and
 * `error`/`lastError`.
 */
export function failureText(failure, target) {
  const status = failure.statusCode ?? failure.lastStatusCode;
  const raw = [status, failure.error ?? failure.lastError].filter((v) => v != null && v !== "").join(" · ");
  const sentence = failure.problem
    ? t(`problem.${failure.problem}`, { target: target || t("problem.gowa"), status: status ?? "" })
    : raw;
  if (!sentence) return null;
  return h("span", { class: "failure" }, sentence,
    failure.problem && raw ? h("details", { class: "raw" }, h("summary", {}, t("common.details")), h("code", {}, raw))
      : null);
}

/** "What do these mean?": a short explanation of each state shown on a screen. */
export function meanings(keys) {
  return h("details", { class: "meanings" },
    h("summary", {}, t("meaning.title")),
    h("dl", {}, keys.map((key) => [h("dt", {}, t(`meaning.${key}.name`)), h("dd", {}, t(`meaning.${key}`))])));
}

/**
 * Puts the server's field errors under their fields, all at once, in the user's language: each field `name`
 * has an input `#${prefix}-${name}` and a message element `#${prefix}-${name}-error`; `labels` maps a field to
 * its label's i18n key. Focuses the first wrong field. False when the error is not about fields.
 */
export function showFieldErrors(form, prefix, err, labels) {
  clearFieldErrors(form);
  const fields = err?.fields ?? (err?.field ? [{ field: err.field, code: err.code, message: err.message }] : []);
  // All or nothing: an error about a field this form does not have goes to the toast whole.
  if (!fields.every((f) => form.querySelector(`#${prefix}-${f.field}-error`))) return false;
  let first = null;
  for (const f of fields) {
    const message = form.querySelector(`#${prefix}-${f.field}-error`);
    const input = form.querySelector(`#${prefix}-${f.field}`);
    const key = `field.${f.code}`;
    const label = labels[f.field] ? t(labels[f.field]) : f.field;
    message.textContent = t(key) === key ? f.message : t(key, { label, max: f.max ?? "" });
    if (input) {
      input.setAttribute("aria-invalid", "true");
      first ??= input;
    }
  }
  first?.focus();
  return fields.length > 0;
}

export function clearFieldErrors(form) {
  for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
}

/** A read-only field with a Copy button. */
export function copyRow(id, value, label) {
  const input = h("input", { id, readonly: true, value, "aria-label": label });
  const copy = async () => {
    input.select();
    try {
      await navigator.clipboard.writeText(value);
    } catch {
      document.execCommand?.("copy");
    }
    toast(t("common.copied"));
  };
  return h("div", { class: "copy-row" }, input, h("button", { type: "button", onclick: copy }, t("common.copy")));
}

/** An inbox's name where a linked Chatwoot account gives it, with its ID. */
export function inboxLabel(item) {
  return item.inboxName ? `${item.inboxName} (${item.inboxId})` : String(item.inboxId);
}
