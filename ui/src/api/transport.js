// The one place that knows how the UI talks to the relay: HTTP (`fetch` to /admin/…, with the browser's Basic
// Auth) in a browser, Tauri IPC (`invoke`) in the native window. Both return the same DTOs and fail with the same
// ApiError {code, message, field, fields}. Screens never branch on the transport.

export class ApiError extends Error {
  constructor({ code = "error", message = "", field = null, fields = null, status = 0 } = {}) {
    super(message);
    this.code = code;
    this.field = field;
    this.fields = fields;
    this.status = status;
  }
}

/**
 * An operation: `command` names the Tauri command; `method`/`path` the HTTP endpoint.
 * `input` is the request: path parameters (`id`), query parameters and body fields, all in one object.
 */
function httpTransport() {
  return {
    isDesktop: false,

    async call({ method, path, query, body }) {
      const url = new URL(`/admin${path}`, window.location.origin);
      for (const [key, value] of Object.entries(query ?? {})) {
        if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
      }
      const init = { method, headers: { Accept: "application/json" } };
      if (method !== "GET" && method !== "DELETE") {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body ?? {});
      }
      let response;
      try {
        response = await fetch(url, init);
      } catch (err) {
        throw new ApiError({ code: "offline", message: String(err) });
      }
      const data = await response.json().catch(() => null);
      if (!response.ok) {
        throw new ApiError({
          code: data?.code ?? "http_error",
          message: data?.message ?? data?.error ?? response.statusText,
          field: data?.field ?? null,
          fields: data?.fields ?? null,
          status: response.status,
        });
      }
      return data;
    },

    /** The first admin password, through the setup link (a headless relay's first run). */
    async setup(token, password) {
      return this.call({ method: "POST", path: "/setup", body: { token, password } });
    },

    /** Calls `onEvent({type})` for every change; `onState(connected)` when the stream comes and goes. */
    subscribe(onEvent, onState) {
      const source = new EventSource("/admin/events");
      source.addEventListener("change", (e) => onEvent(JSON.parse(e.data)));
      source.addEventListener("open", () => onState(true));
      source.addEventListener("error", () => onState(false));
      return () => source.close();
    },

    /** The address Chatwoot should post to, as seen from the browser: this page's host, and the webhook's own
     * port when the admin listens apart from it. */
    async webhookUrl(path, port) {
      const url = new URL(path, window.location.origin);
      if (port) url.port = String(port);
      return url.toString();
    },

    /** Why the relay is not listening; a page served by the relay is proof that it is. */
    async listenProblem() {
      return null;
    },
  };
}

function ipcTransport(tauri) {
  const invoke = tauri.core.invoke;
  return {
    isDesktop: true,

    async call({ command, input }) {
      try {
        return await invoke(command, { input: input ?? {} });
      } catch (err) {
        throw new ApiError(typeof err === "object" && err ? err : { message: String(err) });
      }
    },

    /** The native window has its password from the start: there is no setup link. */
    async setup() {
      throw new ApiError({ code: "unsupported", message: "the desktop app needs no setup link" });
    },

    subscribe(onEvent, onState) {
      let unlisten = null;
      tauri.event.listen("chatgowa://change", (e) => onEvent(e.payload)).then((fn) => {
        unlisten = fn;
        onState(true);
      });
      return () => unlisten?.();
    },

    /** The native window has no address of its own: the relay says where it listens. */
    async webhookUrl() {
      return (await invoke("desktop_info", {})).webhookUrl;
    },

    /** E.g. the port is busy: the app runs, but Chatwoot cannot reach it. */
    async listenProblem() {
      return (await invoke("desktop_info", {})).listenError ?? null;
    },
  };
}

export const transport = globalThis.__TAURI__?.core ? ipcTransport(globalThis.__TAURI__) : httpTransport();
