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

/** A table in a horizontally scrolling wrapper (narrow screens). */
export function table(headers, rows) {
  return h("div", { class: "table-wrap" },
    h("table", {},
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

/** Shows an error from the API (or anything thrown) to the user. */
export function reportError(err) {
  const message = err?.code === "offline" ? t("error.offline") : t("error.generic", { message: err?.message ?? err });
  toast(message, "error");
}

/** A URL with its password (if any) hidden, for display. */
export function maskUrl(raw) {
  try {
    const url = new URL(raw);
    if (url.password) url.password = "•••";
    return url.toString();
  } catch {
    return raw;
  }
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
