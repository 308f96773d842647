// Settings (native window only): where the relay listens (moved without a restart), the browser panel's login
// (a generated password is shown in this run only; a new one can be made), start at login, notifications,
// language.

import { api } from "../api/api.js";
import { copyRow, h, replace, reportError, toast } from "../dom.js";
import { language, t } from "../i18n.js";

function field(name, label, input) {
  return h("div", { class: "field" },
    h("label", { for: `settings-${name}` }, label),
    input,
    h("p", { class: "field-error", id: `settings-${name}-error`, role: "alert" }));
}

/** The listen addresses: host and port of the webhook and of the admin panel. */
function addressForm(info, draw) {
  const input = (name, value, locked, attrs = {}) =>
    h("input", { id: `settings-${name}`, name, value, disabled: Boolean(locked), required: true, ...attrs });
  const port = { type: "number", min: 1, max: 65535, inputmode: "numeric" };
  const inputs = {
    webhookHost: input("webhookHost", info.webhookHost, info.locked.webhook),
    webhookPort: input("webhookPort", info.webhookPort, info.locked.webhook, port),
    adminHost: input("adminHost", info.adminHost, info.locked.admin),
    adminPort: input("adminPort", info.adminPort, info.locked.admin, port),
  };
  const lockNote = (variable) => variable ? h("p", { class: "hint" }, t("settings.locked", { variable })) : null;
  const group = (title, urlId, url, host, portInput, hint, variable) => h("fieldset", { class: "address-group" },
    h("legend", {}, title),
    copyRow(urlId, url, title),
    h("div", { class: "field-row" },
      field(host.name, t("settings.host"), host),
      field(portInput.name, t("settings.port"), portInput)),
    h("p", { class: "hint" }, hint),
    lockNote(variable));
  const form = h("form", { class: "panel", id: "settings-addresses", novalidate: true },
    h("h2", {}, t("settings.addresses")),
    group(t("settings.webhookUrl"), "settings-webhook-url", info.webhookUrl, inputs.webhookHost, inputs.webhookPort,
      t("settings.webhookHostHint"), info.locked.webhook),
    group(t("settings.adminUrl"), "settings-admin-url", info.adminUrl, inputs.adminHost, inputs.adminPort,
      t("settings.adminHostHint"), info.locked.admin),
    info.locked.webhook && info.locked.admin ? null :
      h("div", { class: "buttons" },
        h("button", { type: "submit", class: "primary", id: "settings-save-addresses" }, t("settings.apply"))));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
    const values = {
      webhookHost: inputs.webhookHost.value.trim(),
      webhookPort: Number(inputs.webhookPort.value || 0),
      adminHost: inputs.adminHost.value.trim(),
      adminPort: Number(inputs.adminPort.value || 0),
    };
    try {
      draw(await api.setAddresses(values));
      toast(t("settings.moved"));
    } catch (err) {
      const target = err.field && form.querySelector(`#settings-${err.field}-error`);
      const key = `invalid.settings.${err.field}`;
      if (target) {
        target.textContent = err.code === "invalid" && t(key) !== key ? t(key) : err.message;
        inputs[err.field]?.focus();
      } else {
        reportError(err);
      }
    }
  });
  return form;
}

function loginPanel(info, draw) {
  if (!info.adminUser) return h("section", { class: "panel" }, h("h2", {}, t("settings.login")), h("p", { class: "hint" }, t("settings.adminOff")));
  const renew = async () => {
    if (!window.confirm(t("settings.newPasswordConfirm"))) return;
    try {
      draw(await api.newPassword());
    } catch (err) {
      reportError(err);
    }
  };
  return h("section", { class: "panel" },
    h("h2", {}, t("settings.login")),
    h("p", {}, t("settings.user"), ": ", h("code", { id: "admin-user" }, info.adminUser)),
    info.generatedPassword
      ? [copyRow("admin-password", info.generatedPassword, t("settings.password")),
        h("p", { class: "alert" }, t("settings.passwordOnce"))]
      : h("p", { class: "hint" }, t(info.passwordLocked ? "settings.passwordFromEnv" : "settings.passwordHidden")),
    info.passwordLocked ? null :
      h("div", { class: "buttons" },
        h("button", { type: "button", id: "settings-new-password", onclick: renew }, t("settings.newPassword"))));
}

export function render(main) {
  replace(main, h("h1", {}, t("settings.title")), h("p", {}, t("common.loading")));

  const draw = (info) => {
    const autostart = h("input", { type: "checkbox", id: "start-at-login", checked: info.startAtLogin });
    autostart.addEventListener("change", () => api.setStartAtLogin(autostart.checked).then(draw).catch(reportError));
    const notify = h("input", { type: "checkbox", id: "notifications", checked: info.notifications });
    notify.addEventListener("change", () => api.setNotifications(notify.checked).then(draw).catch(reportError));
    // The same switch as the header's: the window and the tray change language together.
    const lang = h("select", { id: "settings-language" },
      h("option", { value: "en" }, "English"),
      h("option", { value: "id" }, "Bahasa Indonesia"));
    lang.value = language();
    lang.addEventListener("change", () => {
      const header = document.getElementById("lang");
      header.value = lang.value;
      header.dispatchEvent(new Event("change"));
    });
    replace(main,
      h("h1", {}, t("settings.title")),
      info.listenError ? h("p", { class: "alert", role: "alert", id: "settings-listen-problem" },
        t("settings.notListening", { problem: info.listenError })) : null,
      addressForm(info, draw),
      loginPanel(info, draw),
      h("section", { class: "panel" },
        h("label", { class: "check" }, autostart, t("settings.startAtLogin")),
        h("label", { class: "check" }, notify, t("settings.notifications")),
        h("div", { class: "field" }, h("label", { for: "settings-language" }, t("language")), lang)));
  };

  api.desktopInfo().then(draw).catch(reportError);
  return {};
}
