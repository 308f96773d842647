//! Embeds the migrations and, for the desktop build, generates Tauri's context and command permissions.

/// Every command the native window may call; each needs its `allow-*` permission in `capabilities/`.
#[cfg(feature = "desktop")]
const COMMANDS: &[&str] = &[
    "stats",
    "list_routes",
    "create_route",
    "update_route",
    "delete_route",
    "test_route",
    "retry_dead",
    "list_deliveries",
    "delivery",
    "retry_delivery",
    "discard_delivery",
    "retry_deliveries",
    "discard_deliveries",
    "list_unrouted",
    "desktop_info",
    "set_start_at_login",
    "set_notifications",
    "set_language",
    "set_addresses",
    "new_password",
    "chatwoot_status",
    "set_public_url",
    "link_chatwoot",
    "unlink_chatwoot",
    "register_webhook",
    "check_reach",
    "chatwoot_inboxes",
    "clear_inbox_webhook",
    "held_replies",
    "decide_held",
];

fn main() {
    // `sqlx::migrate!` embeds the files at compile time but does not notice new ones by itself.
    println!("cargo:rerun-if-changed=migrations");
    #[cfg(feature = "desktop")]
    if let Err(err) = tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS)),
    ) {
        panic!("tauri-build failed (is tauri.conf.json valid and are the icons present?): {err:#}");
    }
}
