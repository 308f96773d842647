//! Lists that are written in several places and must agree, read from the files as text.

use std::collections::BTreeSet;
use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The identifiers in `text` that follow `marker` (up to the first character that cannot be in one).
fn names_after(text: &str, marker: &str) -> BTreeSet<String> {
    text.match_indices(marker)
        .map(|(at, _)| {
            text[at + marker.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// The part of `text` from `start` to the next `end`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not found"));
    let rest = &text[from + start.len()..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

/// The Tauri commands: `build.rs` (the permission manifest), `capabilities/main.json` (the grants),
/// `generate_handler!` (what is registered), `desktop/commands.rs` (what is defined) and the UI (what is
/// called). A command missing from any of them fails only at run time, in the window.
#[test]
fn the_five_lists_of_tauri_commands_agree() {
    let manifest = names_after(
        between(&read("src-tauri/build.rs"), "const COMMANDS", "];"),
        "\"",
    );
    let capabilities: serde_json::Value =
        serde_json::from_str(&read("capabilities/main.json")).unwrap();
    let granted: BTreeSet<String> = capabilities["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str()?.strip_prefix("allow-"))
        .map(|p| p.replace('-', "_"))
        .collect();
    let registered = names_after(
        between(
            &read("src-tauri/desktop/launch.rs"),
            "generate_handler![",
            "]",
        ),
        "commands::",
    );
    let defined = names_after(
        &read("src-tauri/desktop/commands.rs"),
        "#[tauri::command]\npub async fn ",
    );
    let mut called = names_after(&read("ui/src/api/api.js"), "call(\"");
    called.extend(names_after(&read("ui/src/api/transport.js"), "invoke(\""));

    assert!(manifest.len() > 10, "{manifest:?}");
    for (what, list) in [
        ("capabilities/main.json", &granted),
        ("generate_handler!", &registered),
        ("desktop/commands.rs", &defined),
        ("ui/src/api", &called),
    ] {
        assert_eq!(list, &manifest, "{what} against build.rs");
    }
}
