//! The shape of the code, read from `src-tauri/` as text: which module uses which (`crate::…` and `super::…`
//! paths outside test modules), so that dependencies point one way; and how long functions are.
//!
//! Rerun on its own with `cargo test --no-default-features --test it layers`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crate's top-level modules from the top down: each may use only modules of a later row. Modules in one
/// row do not use each other.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["desktop"],
    &["app"],
    &["server"],
    &["admin"],
    &["state"],
    &["feedback"],
    &["relay", "retention"],
    &["delivery", "chatwoot"],
    &["store", "container", "logging", "login"],
    &["config"],
    &["metrics", "events", "shutdown", "error", "ids"],
];

/// Lines a function may have (signature to closing brace) without a `// Long on purpose: …` comment above it.
const MAX_FUNCTION_LINES: usize = 60;

type Module = Vec<String>;

struct Source {
    module: Module,
    path: PathBuf,
    /// Without test modules and comments.
    code: String,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src-tauri");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files
        .into_iter()
        .filter(|p| {
            !matches!(
                p.file_name().and_then(|n| n.to_str()),
                Some("main.rs" | "build.rs")
            )
        })
        .map(|path| {
            let relative = path.strip_prefix(&root).unwrap().with_extension("");
            let mut module: Module = relative
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if module
                .last()
                .is_some_and(|last| last == "mod" || last == "lib")
            {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            Source {
                module,
                code: without_tests_and_comments(&text),
                path,
            }
        })
        .collect()
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The code before the first `#[cfg(test)]` (test modules close every file here), without comment lines.
fn without_tests_and_comments(text: &str) -> String {
    text.lines()
        .take_while(|line| line.trim() != "#[cfg(test)]")
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path that `code` names through `crate::` or `super::` (a `use` list names several), made absolute.
fn named_paths(module: &Module, code: &str) -> Vec<Module> {
    let mut found = Vec::new();
    for (start, keyword) in code
        .match_indices("crate::")
        .chain(code.match_indices("super::"))
    {
        let before = code[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut rest = &code[start + keyword.len()..];
        let mut prefix = if keyword == "crate::" {
            Vec::new()
        } else {
            module[..module.len().saturating_sub(1)].to_vec()
        };
        while let Some(after) = rest.strip_prefix("super::") {
            prefix.pop();
            rest = after;
        }
        expand(&prefix, rest, &mut found);
    }
    found
}

/// Reads one path, or a `{…}` list of them, after `prefix::`.
fn expand(prefix: &Module, rest: &str, found: &mut Vec<Module>) {
    if let Some(list) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut item = String::new();
        for c in list.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand_item(prefix, &item, found);
                    item.clear();
                    continue;
                }
                _ => {}
            }
            item.push(c);
        }
        expand_item(prefix, &item, found);
        return;
    }
    let path: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let mut module = prefix.clone();
    module.extend(
        path.split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    );
    match rest[path.len()..].strip_prefix('{') {
        Some(_) if path.ends_with("::") => expand(&module, &rest[path.len()..], found),
        _ => found.push(module),
    }
}

fn expand_item(prefix: &Module, item: &str, found: &mut Vec<Module>) {
    let item = item.trim();
    let name: String = item
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if name.is_empty() {
        return;
    }
    if name == "self" {
        found.push(prefix.clone());
        return;
    }
    let mut deeper = prefix.clone();
    deeper.push(name.clone());
    match item[name.len()..].trim_start().strip_prefix("::") {
        Some(rest) => expand(&deeper, rest, found),
        None => found.push(deeper),
    }
}

/// Module → the modules it uses (the longest existing module each named path starts with).
fn dependencies(sources: &[Source]) -> BTreeMap<Module, BTreeSet<Module>> {
    let modules: BTreeSet<&Module> = sources.iter().map(|s| &s.module).collect();
    let mut graph = BTreeMap::new();
    for source in sources {
        let used: &mut BTreeSet<Module> = graph.entry(source.module.clone()).or_default();
        for path in named_paths(&source.module, &source.code) {
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|candidate| modules.contains(candidate));
            if let Some(target) = target.filter(|t| *t != source.module) {
                used.insert(target);
            }
        }
    }
    graph
}

/// Each cycle of `graph` (a strongly connected set of more than one module), by Tarjan's algorithm.
fn cycles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, (usize, usize)>,
        stack: Vec<&'a Module>,
        found: Vec<Vec<Module>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a Module) -> usize {
            let n = self.index.len();
            self.index.insert(v, (n, n));
            self.stack.push(v);
            let mut low = n;
            for w in self.graph.get(v).into_iter().flatten() {
                low = match self.index.get(w) {
                    None => low.min(self.visit(w)),
                    Some(&(i, _)) if self.stack.contains(&w) => low.min(i),
                    Some(_) => low,
                };
            }
            self.index.insert(v, (n, low));
            if low == n {
                let at = self.stack.iter().position(|m| *m == v).unwrap();
                let component: Vec<Module> = self.stack.drain(at..).cloned().collect();
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
            low
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

fn name(module: &Module) -> String {
    if module.is_empty() {
        "crate".to_owned()
    } else {
        module.join("::")
    }
}

#[test]
fn no_module_uses_a_module_that_uses_it_back() {
    let graph = dependencies(&sources());
    let found: Vec<Vec<String>> = cycles(&graph)
        .iter()
        .map(|cycle| cycle.iter().map(name).collect())
        .collect();
    assert!(found.is_empty(), "import cycles: {found:?}");
}

#[test]
fn dependencies_point_down_the_layers() {
    let rank = |top: &str| LAYERS.iter().position(|row| row.contains(&top));
    let mut wrong = Vec::new();
    for (module, used) in dependencies(&sources()) {
        let Some(top) = module.first() else {
            continue; // the crate root only declares modules
        };
        let from = rank(top).unwrap_or_else(|| panic!("module {top} is in no row of LAYERS"));
        for target in used {
            let Some(to) = target.first() else { continue };
            if to != top && rank(to).is_none_or(|to| to <= from) {
                wrong.push(format!("{} uses {}", name(&module), name(&target)));
            }
        }
    }
    assert!(wrong.is_empty(), "against the layers: {wrong:#?}");
}

#[test]
fn the_check_sees_uses_and_cycles() {
    let module: Module = vec!["admin".into(), "service".into()];
    let paths = named_paths(
        &module,
        "use super::dto::{self, X};\nuse crate::{ids::{A, B}, store};\nlet x = crate::relay::Intake::new();",
    );
    let names: BTreeSet<String> = paths.iter().map(name).collect();
    for expected in [
        "admin::dto",
        "admin::dto::X",
        "ids::A",
        "store",
        "relay::Intake::new",
    ] {
        assert!(names.contains(expected), "{expected} in {names:?}");
    }
    let graph: BTreeMap<Module, BTreeSet<Module>> = [
        (vec!["a".into()], BTreeSet::from([vec!["b".into()]])),
        (vec!["b".into()], BTreeSet::from([vec!["a".into()]])),
        (vec!["c".into()], BTreeSet::from([vec!["a".into()]])),
    ]
    .into();
    assert_eq!(cycles(&graph).len(), 1);
}

/// `(line, name, lines)` of each function outside test modules that has no `// Long on purpose:` comment.
fn functions(text: &str) -> Vec<(usize, String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .iter()
        .position(|l| l.trim() == "#[cfg(test)]")
        .unwrap_or(lines.len());
    let mut found = Vec::new();
    for (i, line) in lines[..end].iter().enumerate() {
        let Some(name) = function_name(line) else {
            continue;
        };
        let mut depth = 0i32;
        let mut opened = false;
        for (j, body_line) in lines[i..].iter().enumerate() {
            let code = body_line.split("//").next().unwrap_or_default();
            if !opened && code.trim_end().ends_with(';') {
                break; // a declaration without a body
            }
            for c in code.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if opened && depth == 0 {
                let excused = lines[..i]
                    .iter()
                    .rev()
                    .take_while(|l| {
                        let l = l.trim_start();
                        l.starts_with("//") || l.starts_with("#[")
                    })
                    .any(|l| l.trim_start().starts_with("// Long on purpose:"));
                if !excused {
                    found.push((i + 1, name.clone(), j + 1));
                }
                break;
            }
        }
    }
    found
}

fn function_name(line: &str) -> Option<String> {
    let mut words = line.split_whitespace().peekable();
    while let Some(word) = words.next() {
        match word {
            "pub" | "async" | "const" | "unsafe" | "extern" => {}
            w if w.starts_with("pub(") => {}
            "fn" => {
                let name: String = words
                    .next()?
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                return Some(name);
            }
            _ => return None,
        }
    }
    None
}

#[test]
fn functions_are_short_or_say_why_not() {
    let mut long = Vec::new();
    for source in sources() {
        let text = std::fs::read_to_string(&source.path).unwrap();
        for (line, name, count) in functions(&text) {
            if count > MAX_FUNCTION_LINES {
                long.push(format!(
                    "{}:{line} {name}: {count} lines",
                    source.path.display()
                ));
            }
        }
    }
    assert!(
        long.is_empty(),
        "split these into named steps, or say why not in a `// Long on purpose: …` comment above: {long:#?}"
    );
}
