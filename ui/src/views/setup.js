// First run without a password (headless): the setup link from the relay's log opens this screen, where the
// admin chooses the panel's password. The link works once.

import { api } from "../api/api.js";
import { h, replace } from "../dom.js";
import { t } from "../i18n.js";

export function render(main, params) {
  const password = h("input", { type: "password", id: "setup-password", autocomplete: "new-password", required: true });
  const confirm = h("input", { type: "password", id: "setup-confirm", autocomplete: "new-password", required: true });
  const error = h("p", { class: "field-error", id: "setup-error", role: "alert" });
  const form = h("form", { class: "panel route-form", onsubmit: submit },
    h("div", { class: "field" }, h("label", { for: "setup-password" }, t("setup.password")), password),
    h("div", { class: "field" }, h("label", { for: "setup-confirm" }, t("setup.confirm")), confirm),
    error,
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary", id: "setup-save" }, t("setup.save"))));
  replace(main, h("h1", {}, t("setup.title")), h("p", { class: "hint" }, t("setup.intro")), form);

  async function submit(event) {
    event.preventDefault();
    error.textContent = "";
    if (password.value !== confirm.value) {
      error.textContent = t("setup.mismatch");
      return;
    }
    try {
      await api.setup(params.token ?? "", password.value);
    } catch (err) {
      error.textContent = err.message;
      return;
    }
    replace(main, h("h1", {}, t("setup.title")),
      h("p", { id: "setup-done", role: "status" }, t("setup.done")),
      h("a", { class: "button primary", id: "setup-next", href: "#/chatwoot" }, t("setup.next")),
      h("a", { class: "button", href: "#/" }, t("setup.open")));
  }
}
