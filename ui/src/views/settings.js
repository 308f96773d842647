// Settings (native window only): where the relay listens, the browser panel's login (a generated password is
// shown once), start at login, notifications.

import { api } from "../api/api.js";
import { h, replace, reportError, toast } from "../dom.js";
import { t } from "../i18n.js";

function copyRow(id, value, label) {
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

export function render(main) {
  replace(main, h("h1", {}, t("settings.title")), h("p", {}, t("common.loading")));

  const draw = (info) => {
    const autostart = h("input", { type: "checkbox", id: "start-at-login", checked: info.startAtLogin });
    autostart.addEventListener("change", () => api.setStartAtLogin(autostart.checked).then(draw).catch(reportError));
    const notify = h("input", { type: "checkbox", id: "notifications", checked: info.notifications });
    notify.addEventListener("change", () => api.setNotifications(notify.checked).then(draw).catch(reportError));
    replace(main,
      h("h1", {}, t("settings.title")),
      h("section", { class: "panel" },
        h("h2", {}, t("settings.addresses")),
        h("p", { class: "hint" }, t("settings.webhookUrl")),
        copyRow("settings-webhook-url", info.webhookUrl, t("settings.webhookUrl")),
        h("p", { class: "hint" }, t("settings.adminUrl")),
        copyRow("settings-admin-url", info.adminUrl, t("settings.adminUrl"))),
      h("section", { class: "panel" },
        h("h2", {}, t("settings.login")),
        info.adminUser ? [
          h("p", {}, t("settings.user"), ": ", h("code", { id: "admin-user" }, info.adminUser)),
          info.generatedPassword
            ? [copyRow("admin-password", info.generatedPassword, t("settings.password")),
              h("p", { class: "alert" }, t("settings.passwordOnce"))]
            : h("p", { class: "hint" }, t("settings.passwordHidden")),
        ] : h("p", { class: "hint" }, t("settings.adminOff"))),
      h("section", { class: "panel" },
        h("label", { class: "check" }, autostart, t("settings.startAtLogin")),
        h("label", { class: "check" }, notify, t("settings.notifications")),
        h("p", { class: "hint" }, t("settings.language"))));
  };

  const load = () => api.desktopInfo().then(draw).catch(reportError);
  load();
  return {};
}
