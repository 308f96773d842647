// The admin operations, one function each. Every call goes through the transport seam.

import { transport } from "./transport.js";

const call = (command, method, path, input = {}, { query, body } = {}) =>
  transport.call({ command, method, path, input, query, body });

export const api = {
  stats: () => call("stats", "GET", "/stats"),
  listRoutes: () => call("list_routes", "GET", "/routes"),
  createRoute: (route) => call("create_route", "POST", "/routes", route, { body: route }),
  updateRoute: (id, changes) =>
    call("update_route", "PUT", `/routes/${id}`, { id, ...changes }, { body: changes }),
  deleteRoute: (id) => call("delete_route", "DELETE", `/routes/${id}`, { id }),
  testRoute: (id) => call("test_route", "POST", `/routes/${id}/test`, { id }),
  retryDead: (id) => call("retry_dead", "POST", `/routes/${id}/retry-dead`, { id }),
  listDeliveries: (filters) => {
    // Query parameters are strings on both transports.
    const query = Object.fromEntries(
      Object.entries(filters).filter(([, v]) => v !== undefined && v !== null && v !== "").map(([k, v]) => [k, String(v)]));
    return call("list_deliveries", "GET", "/deliveries", query, { query });
  },
  delivery: (id) => call("delivery", "GET", `/deliveries/${id}`, { id }),
  retryDelivery: (id) => call("retry_delivery", "POST", `/deliveries/${id}/retry`, { id }),
  discardDelivery: (id) => call("discard_delivery", "DELETE", `/deliveries/${id}`, { id }),
  retryDeliveries: (ids) => call("retry_deliveries", "POST", "/deliveries/retry", { ids }, { body: { ids } }),
  discardDeliveries: (ids) => call("discard_deliveries", "POST", "/deliveries/discard", { ids }, { body: { ids } }),
  listUnrouted: () => call("list_unrouted", "GET", "/unrouted"),
  setup: (token, password) => transport.setup(token, password),
  // The Chatwoot link: accounts, the public webhook URL, the webhook, inboxes, the reachability check.
  chatwoot: () => call("chatwoot_status", "GET", "/chatwoot"),
  setPublicUrl: (url) => call("set_public_url", "PUT", "/chatwoot/public-url", { url }, { body: { url } }),
  linkChatwoot: (link) => call("link_chatwoot", "POST", "/chatwoot/links", link, { body: link }),
  unlinkChatwoot: (id, removeWebhook) =>
    call("unlink_chatwoot", "DELETE", `/chatwoot/links/${id}`, { id, removeWebhook },
      { query: removeWebhook ? { removeWebhook: "true" } : {} }),
  registerWebhook: (id) => call("register_webhook", "POST", `/chatwoot/links/${id}/webhook`, { id }),
  checkReach: (id) => call("check_reach", "POST", `/chatwoot/links/${id}/check`, { id }),
  chatwootInboxes: () => call("chatwoot_inboxes", "GET", "/chatwoot/inboxes"),
  heldReplies: () => call("held_replies", "GET", "/chatwoot/held"),
  sendHeld: (id) => call("decide_held", "POST", `/chatwoot/held/${id}/send`, { id, send: true }),
  discardHeld: (id) => call("decide_held", "DELETE", `/chatwoot/held/${id}`, { id, send: false }),
  clearInboxWebhook: (linkId, inboxId) =>
    call("clear_inbox_webhook", "POST", "/chatwoot/inboxes/clear-webhook", { linkId, inboxId },
      { body: { linkId, inboxId } }),
  subscribe: (onEvent, onState) => transport.subscribe(onEvent, onState),
  webhookUrl: (path, port) => transport.webhookUrl(path, port),
  listenProblem: () => transport.listenProblem(),
  // The native window only: where the relay listens, the browser-panel login, start at login.
  isDesktop: transport.isDesktop,
  desktopInfo: () => call("desktop_info", "GET", "/desktop-info"),
  setStartAtLogin: (enabled) => call("set_start_at_login", "PUT", "/desktop-info", { enabled }),
  setNotifications: (enabled) => call("set_notifications", "PUT", "/desktop-info", { enabled }),
  setLanguage: (language) => call("set_language", "PUT", "/desktop-info", { language }),
  setAddresses: (addresses) => call("set_addresses", "PUT", "/desktop-info", addresses),
  newPassword: () => call("new_password", "POST", "/desktop-info"),
};
