// English and Bahasa Indonesia. Every visible sentence is one entry with named placeholders, so a translation
// can order its words freely; nothing is assembled from translated fragments.

const STORAGE_KEY = "chatgowa.lang";

const en = {
  "skip": "Skip to content",
  "language": "Language",
  "nav.overview": "Overview",
  "nav.routes": "Routes",
  "nav.deliveries": "Deliveries",
  "nav.unrouted": "Unrouted inboxes",
  "common.loading": "Loading…",
  "common.never": "never",
  "common.none": "—",
  "common.save": "Save",
  "common.cancel": "Cancel",
  "common.edit": "Edit",
  "common.delete": "Delete",
  "common.back": "Back",
  "common.copy": "Copy",
  "common.copied": "Copied.",
  "common.yes": "Yes",
  "common.no": "No",
  "error.generic": "Something went wrong: {message}",
  "error.offline": "The relay does not answer. Is Chatgowa running?",
  "live.connected": "Live updates on",
  "live.disconnected": "Live updates paused, reconnecting…",
  "status.pending": "Pending",
  "status.delivered": "Delivered",
  "status.dead": "Dead",
  "health.ok": "OK",
  "health.failing": "Failing",
  "health.dead": "Dead",
  "health.none": "No deliveries yet",
  "health.at": "{state} · {time}",
  "overview.title": "Overview",
  "overview.notListening": "Chatgowa is not receiving webhooks: {problem}. Close the other program or change PORT, then restart Chatgowa.",
  "overview.pending": "Pending",
  "overview.delivered": "Delivered",
  "overview.dead": "Dead",
  "overview.queueDepth": "Queue depth",
  "overview.oldestPending": "Oldest pending",
  "overview.routes": "Routes",
  "overview.unrouted": "Unrouted inboxes",
  "overview.webhookTitle": "Webhook URL for Chatwoot",
  "overview.webhookHelp": "Paste this address into Chatwoot. It must be reachable from your Chatwoot server.",
  "overview.setupTitle": "Setting up",
  "overview.step1": "In Chatwoot, open Settings → Integrations → Webhooks and add the webhook URL above. Tick at least “Message created” and “Message updated”; other events are relayed too and do no harm.",
  "overview.step2": "For an API inbox you can instead put the webhook URL in the inbox's settings (Webhook URL).",
  "overview.step3": "In GoWA, set CHATWOOT_ENABLED=true. Its webhook address is http://<gowa-host>:<port>/chatwoot/webhook, or /chatwoot/webhook/<device_id> for one device.",
  "overview.step4": "Add a route here for each Chatwoot inbox: the inbox id (in Chatwoot: Settings → Inboxes, the number in the address) and the GoWA webhook address. Use Test to check it.",
  "overview.version": "Chatgowa {version}",
  "age.seconds": "{n} s",
  "age.minutes": "{n} min",
  "age.hours": "{n} h",
  "age.days": "{n} d",
  "routes.title": "Routes",
  "routes.add": "Add route",
  "routes.empty": "No routes yet. Add one for each Chatwoot inbox.",
  "routes.inbox": "Inbox",
  "routes.name": "Name",
  "routes.target": "GoWA webhook URL",
  "routes.enabled": "Enabled",
  "routes.health": "Health",
  "routes.pending": "Pending",
  "routes.actions": "Actions",
  "routes.test": "Test",
  "routes.testing": "Testing…",
  "routes.retryDead": "Retry {count} dead",
  "routes.retriedDead": "{count} dead deliveries queued again.",
  "routes.confirmDelete": "Delete the route for inbox {inbox}? Its pending deliveries will become dead.",
  "routes.deleted": "Route deleted.",
  "routes.saved": "Route saved.",
  "routes.formAdd": "Add a route",
  "routes.formEdit": "Edit route for inbox {inbox}",
  "routes.fieldInbox": "Chatwoot inbox id",
  "routes.fieldName": "Name (optional)",
  "routes.fieldUrl": "GoWA webhook URL",
  "routes.fieldUrlHint": "For example http://gowa:3000/chatwoot/webhook. Credentials (http://user:pass@…) are sent as Basic auth.",
  "routes.fieldSecret": "GoWA secret (optional)",
  "routes.fieldSecretHint": "CHATWOOT_WEBHOOK_SECRET of GoWA; every delivery is signed with it. It is never shown again.",
  "routes.secretKeep": "A secret is set. Leave empty to keep it.",
  "routes.secretClear": "Remove the secret",
  "routes.fieldEnabled": "Relay webhooks for this inbox",
  "routes.testOk": "GoWA answered {status} in {ms} ms.",
  "routes.testFailedStatus": "GoWA answered {status} in {ms} ms: {error}",
  "routes.testFailed": "No answer after {ms} ms: {error}",
  "deliveries.title": "Deliveries",
  "deliveries.filterStatus": "Status",
  "deliveries.filterRoute": "Route",
  "deliveries.filterInbox": "Inbox id",
  "deliveries.filterConversation": "Conversation id",
  "deliveries.all": "All",
  "deliveries.empty": "No deliveries match.",
  "deliveries.more": "Load older",
  "deliveries.id": "#",
  "deliveries.received": "Received",
  "deliveries.event": "Event",
  "deliveries.inbox": "Inbox",
  "deliveries.conversation": "Conversation",
  "deliveries.status": "Status",
  "deliveries.attempts": "Attempts",
  "deliveries.last": "Last result",
  "deliveries.nextAttempt": "Next attempt",
  "deliveries.size": "Size",
  "deliveries.bytes": "{n} bytes",
  "deliveries.detailTitle": "Delivery {id}",
  "deliveries.payload": "Payload",
  "deliveries.attemptLog": "Attempts",
  "deliveries.noAttempts": "Not attempted yet.",
  "deliveries.retry": "Retry",
  "deliveries.sendAgain": "Send again",
  "deliveries.retried": "Delivery {id} queued for one more attempt.",
  "deliveries.discard": "Discard",
  "deliveries.confirmDiscard": "Discard delivery {id}? It will not be sent and disappears from the log.",
  "deliveries.discarded": "Delivery {id} discarded.",
  "deliveries.notFound": "Delivery {id} does not exist (any more).",
  "attempts.number": "#",
  "attempts.trigger": "Trigger",
  "attempts.started": "Started",
  "attempts.status": "Status",
  "attempts.duration": "Duration",
  "attempts.durationMs": "{ms} ms",
  "attempts.error": "Error",
  "attempts.response": "Response",
  "trigger.scheduled": "scheduled",
  "trigger.manual": "manual",
  "unrouted.title": "Unrouted inboxes",
  "unrouted.help": "Chatwoot sent webhooks for these inboxes, but no route serves them. Those webhooks were not relayed.",
  "unrouted.empty": "Every inbox that sent a webhook has a route.",
  "unrouted.inbox": "Inbox id",
  "unrouted.count": "Webhooks",
  "unrouted.firstSeen": "First seen",
  "unrouted.lastSeen": "Last seen",
  "unrouted.lastEvent": "Last event",
  "unrouted.addRoute": "Add route",
};

const id = {
  "skip": "Langsung ke konten",
  "language": "Bahasa",
  "nav.overview": "Ringkasan",
  "nav.routes": "Rute",
  "nav.deliveries": "Pengiriman",
  "nav.unrouted": "Inbox tanpa rute",
  "common.loading": "Memuat…",
  "common.never": "belum pernah",
  "common.none": "—",
  "common.save": "Simpan",
  "common.cancel": "Batal",
  "common.edit": "Ubah",
  "common.delete": "Hapus",
  "common.back": "Kembali",
  "common.copy": "Salin",
  "common.copied": "Tersalin.",
  "common.yes": "Ya",
  "common.no": "Tidak",
  "error.generic": "Terjadi kesalahan: {message}",
  "error.offline": "Relay tidak menjawab. Apakah Chatgowa sedang berjalan?",
  "live.connected": "Pembaruan langsung aktif",
  "live.disconnected": "Pembaruan langsung terputus, menyambung ulang…",
  "status.pending": "Menunggu",
  "status.delivered": "Terkirim",
  "status.dead": "Gagal",
  "health.ok": "Baik",
  "health.failing": "Bermasalah",
  "health.dead": "Gagal",
  "health.none": "Belum ada pengiriman",
  "health.at": "{state} · {time}",
  "overview.title": "Ringkasan",
  "overview.notListening": "Chatgowa tidak menerima webhook: {problem}. Tutup program lain itu atau ubah PORT, lalu jalankan ulang Chatgowa.",
  "overview.pending": "Menunggu",
  "overview.delivered": "Terkirim",
  "overview.dead": "Gagal",
  "overview.queueDepth": "Panjang antrean",
  "overview.oldestPending": "Antrean tertua",
  "overview.routes": "Rute",
  "overview.unrouted": "Inbox tanpa rute",
  "overview.webhookTitle": "URL webhook untuk Chatwoot",
  "overview.webhookHelp": "Tempelkan alamat ini di Chatwoot. Alamat ini harus bisa dijangkau dari server Chatwoot Anda.",
  "overview.setupTitle": "Cara memasang",
  "overview.step1": "Di Chatwoot, buka Settings → Integrations → Webhooks lalu tambahkan URL webhook di atas. Centang setidaknya “Message created” dan “Message updated”; event lain juga diteruskan dan tidak mengganggu.",
  "overview.step2": "Untuk inbox API, Anda juga bisa mengisi URL webhook di pengaturan inbox tersebut (Webhook URL).",
  "overview.step3": "Di GoWA, atur CHATWOOT_ENABLED=true. Alamat webhook-nya adalah http://<host-gowa>:<port>/chatwoot/webhook, atau /chatwoot/webhook/<device_id> untuk satu perangkat.",
  "overview.step4": "Tambahkan satu rute di sini untuk setiap inbox Chatwoot: id inbox (di Chatwoot: Settings → Inboxes, angka pada alamatnya) dan alamat webhook GoWA. Gunakan Uji untuk memeriksanya.",
  "overview.version": "Chatgowa {version}",
  "age.seconds": "{n} dtk",
  "age.minutes": "{n} mnt",
  "age.hours": "{n} jam",
  "age.days": "{n} hari",
  "routes.title": "Rute",
  "routes.add": "Tambah rute",
  "routes.empty": "Belum ada rute. Tambahkan satu untuk setiap inbox Chatwoot.",
  "routes.inbox": "Inbox",
  "routes.name": "Nama",
  "routes.target": "URL webhook GoWA",
  "routes.enabled": "Aktif",
  "routes.health": "Kondisi",
  "routes.pending": "Menunggu",
  "routes.actions": "Tindakan",
  "routes.test": "Uji",
  "routes.testing": "Menguji…",
  "routes.retryDead": "Kirim ulang {count} yang gagal",
  "routes.retriedDead": "{count} pengiriman gagal dimasukkan lagi ke antrean.",
  "routes.confirmDelete": "Hapus rute untuk inbox {inbox}? Pengiriman yang masih menunggu akan dianggap gagal.",
  "routes.deleted": "Rute dihapus.",
  "routes.saved": "Rute disimpan.",
  "routes.formAdd": "Tambah rute",
  "routes.formEdit": "Ubah rute untuk inbox {inbox}",
  "routes.fieldInbox": "Id inbox Chatwoot",
  "routes.fieldName": "Nama (opsional)",
  "routes.fieldUrl": "URL webhook GoWA",
  "routes.fieldUrlHint": "Misalnya http://gowa:3000/chatwoot/webhook. Kredensial (http://user:pass@…) dikirim sebagai Basic auth.",
  "routes.fieldSecret": "Secret GoWA (opsional)",
  "routes.fieldSecretHint": "CHATWOOT_WEBHOOK_SECRET milik GoWA; setiap pengiriman ditandatangani dengannya. Secret tidak akan ditampilkan lagi.",
  "routes.secretKeep": "Secret sudah diatur. Kosongkan untuk tetap memakainya.",
  "routes.secretClear": "Hapus secret",
  "routes.fieldEnabled": "Teruskan webhook untuk inbox ini",
  "routes.testOk": "GoWA menjawab {status} dalam {ms} md.",
  "routes.testFailedStatus": "GoWA menjawab {status} dalam {ms} md: {error}",
  "routes.testFailed": "Tidak ada jawaban setelah {ms} md: {error}",
  "deliveries.title": "Pengiriman",
  "deliveries.filterStatus": "Status",
  "deliveries.filterRoute": "Rute",
  "deliveries.filterInbox": "Id inbox",
  "deliveries.filterConversation": "Id percakapan",
  "deliveries.all": "Semua",
  "deliveries.empty": "Tidak ada pengiriman yang cocok.",
  "deliveries.more": "Muat yang lebih lama",
  "deliveries.id": "#",
  "deliveries.received": "Diterima",
  "deliveries.event": "Event",
  "deliveries.inbox": "Inbox",
  "deliveries.conversation": "Percakapan",
  "deliveries.status": "Status",
  "deliveries.attempts": "Percobaan",
  "deliveries.last": "Hasil terakhir",
  "deliveries.nextAttempt": "Percobaan berikutnya",
  "deliveries.size": "Ukuran",
  "deliveries.bytes": "{n} byte",
  "deliveries.detailTitle": "Pengiriman {id}",
  "deliveries.payload": "Isi (payload)",
  "deliveries.attemptLog": "Percobaan",
  "deliveries.noAttempts": "Belum dicoba.",
  "deliveries.retry": "Coba lagi",
  "deliveries.sendAgain": "Kirim lagi",
  "deliveries.retried": "Pengiriman {id} diantrekan untuk satu percobaan lagi.",
  "deliveries.discard": "Buang",
  "deliveries.confirmDiscard": "Buang pengiriman {id}? Pengiriman ini tidak akan dikirim dan hilang dari log.",
  "deliveries.discarded": "Pengiriman {id} dibuang.",
  "deliveries.notFound": "Pengiriman {id} tidak ada (lagi).",
  "attempts.number": "#",
  "attempts.trigger": "Pemicu",
  "attempts.started": "Mulai",
  "attempts.status": "Status",
  "attempts.duration": "Durasi",
  "attempts.durationMs": "{ms} md",
  "attempts.error": "Kesalahan",
  "attempts.response": "Jawaban",
  "trigger.scheduled": "terjadwal",
  "trigger.manual": "manual",
  "unrouted.title": "Inbox tanpa rute",
  "unrouted.help": "Chatwoot mengirim webhook untuk inbox ini, tetapi belum ada rute untuknya. Webhook tersebut tidak diteruskan.",
  "unrouted.empty": "Setiap inbox yang mengirim webhook sudah punya rute.",
  "unrouted.inbox": "Id inbox",
  "unrouted.count": "Webhook",
  "unrouted.firstSeen": "Pertama terlihat",
  "unrouted.lastSeen": "Terakhir terlihat",
  "unrouted.lastEvent": "Event terakhir",
  "unrouted.addRoute": "Tambah rute",
};

export const LANGUAGES = { en, id };

let current = pickLanguage();

function pickLanguage() {
  const saved = localStorage.getItem(STORAGE_KEY);
  if (saved && saved in LANGUAGES) return saved;
  for (const tag of navigator.languages ?? [navigator.language]) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (base === "id" || base === "ms") return "id";
    if (base === "en") return "en";
  }
  return "en";
}

export function language() {
  return current;
}

/** Switches and remembers the language. */
export function setLanguage(lang) {
  if (!(lang in LANGUAGES)) return;
  current = lang;
  localStorage.setItem(STORAGE_KEY, lang);
  document.documentElement.lang = lang;
}

/** The text for `key` with `{name}` placeholders filled from `params`. */
export function t(key, params = {}) {
  const text = LANGUAGES[current][key] ?? en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (match, name) => (name in params ? String(params[name]) : match));
}

const LOCALES = { en: "en-GB", id: "id-ID" };

/** A date/time in the current language. */
export function formatTime(iso) {
  if (!iso) return t("common.never");
  const date = new Date(iso);
  return new Intl.DateTimeFormat(LOCALES[current], { dateStyle: "medium", timeStyle: "medium" }).format(date);
}

/** A duration such as "5 min". */
export function formatAge(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return t("age.seconds", { n: s });
  if (s < 7200) return t("age.minutes", { n: Math.round(s / 60) });
  if (s < 172800) return t("age.hours", { n: Math.round(s / 3600) });
  return t("age.days", { n: Math.round(s / 86400) });
}

export function formatNumber(n) {
  return new Intl.NumberFormat(LOCALES[current]).format(n);
}
