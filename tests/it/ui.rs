//! Static checks of the panel's files: both languages have every text, every text the screens use exists,
//! and no screen writes HTML from strings.

use std::collections::BTreeSet;
use std::path::Path;

fn ui_sources() -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("ui")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "js" || e == "html") {
                files.push((
                    path.display().to_string(),
                    std::fs::read_to_string(&path).unwrap(),
                ));
            }
        }
    }
    files
}

/// The `"key":` entries of one dictionary in i18n.js.
fn keys(block: &str) -> BTreeSet<String> {
    block
        .lines()
        .filter_map(|l| l.trim().strip_prefix('"'))
        .filter_map(|l| l.split_once("\":").map(|(k, _)| k.to_owned()))
        .collect()
}

#[test]
fn both_languages_have_every_text_the_screens_use() {
    let i18n =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/src/i18n.js")).unwrap();
    let (en, rest) = i18n.split_once("const id = {").unwrap();
    let (id, _) = rest.split_once("};").unwrap();
    let (en, id) = (keys(en), keys(id));
    assert!(en.len() > 100, "found {} keys", en.len());
    assert_eq!(
        en.symmetric_difference(&id).collect::<Vec<_>>(),
        Vec::<&String>::new()
    );

    for (file, source) in ui_sources() {
        // `t("key"`, but not `split("…"` and the like.
        let calls = source.match_indices("t(\"").filter(|(at, _)| {
            *at == 0
                || !(source.as_bytes()[at - 1].is_ascii_alphanumeric()
                    || source.as_bytes()[at - 1] == b'.')
        });
        for used in calls.filter_map(|(at, _)| source[at + 3..].split_once('"').map(|(k, _)| k)) {
            assert!(en.contains(used), "{file} uses unknown text {used:?}");
        }
        // Keys built at run time (`t(`status.${status}`)`) must exist for every value they can take.
        for prefix in [
            "status.",
            "health.",
            "trigger.",
            "chatwoot.reach.",
            "chatwoot.step.",
            "chatwoot.error.",
            "told.",
            "problem.",
            "meaning.",
            "event.",
            "field.",
            "invalid.",
            "error.",
        ] {
            if source.contains(&format!("t(`{prefix}${{")) {
                assert!(
                    en.iter().filter(|k| k.starts_with(prefix)).count() >= 2,
                    "{prefix}"
                );
            }
        }
    }
}

/// Every failure kind the server names and every code of a wrong route field has a sentence in the panel.
#[test]
fn every_failure_and_field_code_has_its_sentence() {
    let i18n =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/src/i18n.js")).unwrap();
    let (en, _) = i18n.split_once("const id = {").unwrap();
    let en = keys(en);
    let gowa = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src-tauri/delivery/gowa.rs"
    ))
    .unwrap();
    let service = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src-tauri/admin/service.rs"
    ))
    .unwrap();
    for problem in [
        "refused",
        "dns",
        "timeout",
        "tls",
        "reset",
        "unreachable",
        "unauthorized",
        "not_found",
        "rejected",
        "server",
    ] {
        assert!(gowa.contains(&format!("\"{problem}\"")), "{problem}");
        assert!(en.contains(&format!("problem.{problem}")), "{problem}");
    }
    for code in [
        "required",
        "not_inbox_id",
        "masked_password",
        "not_boolean",
        "not_text",
        "control_characters",
        "too_long",
        "not_url",
        "own_address",
        "taken",
    ] {
        assert!(service.contains(&format!("\"{code}\"")), "{code}");
        assert!(en.contains(&format!("field.{code}")), "{code}");
    }
}

#[test]
fn no_screen_inserts_html() {
    for (file, source) in ui_sources() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!source.contains(sink), "{file} uses {sink}");
        }
    }
}
