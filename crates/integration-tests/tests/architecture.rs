//! The shape of the workspace, checked: no file of any crate imports a file
//! that imports it back (directly or through others), so every module can be
//! read after the ones it uses. Read from the sources as a newcomer would:
//! every `use` of a path in the crate (`crate::…`, `super::…`, `self::…`, or
//! a child module by name) is an edge to the file that path names (the
//! deepest module file on it), and a cycle among those edges is a failure
//! that names its files.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The workspace's crates, by their source folders.
fn crate_roots() -> Vec<PathBuf> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crates/")
        .to_path_buf();
    let mut roots: Vec<PathBuf> = fs::read_dir(&crates)
        .expect("read crates/")
        .map(|entry| entry.expect("an entry of crates/").path().join("src"))
        .filter(|src| src.is_dir())
        .collect();
    roots.sort();
    roots
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read a source folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file, relative to its crate root
/// (`serve/conn/mod.rs` → `["serve", "conn"]`; `lib.rs` → `[]`). Files under
/// `bin/` are crate roots of their own and are skipped.
fn module_of(src: &Path, file: &Path) -> Option<Vec<String>> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.first().is_some_and(|p| p == "bin") {
        return None;
    }
    let last = parts.pop()?;
    match last.as_str() {
        "lib.rs" | "main.rs" if parts.is_empty() => {}
        "mod.rs" => {}
        name => parts.push(name.trim_end_matches(".rs").to_owned()),
    }
    Some(parts)
}

/// The text of every `use` declaration in `text` (comments and strings are
/// rare enough in them to ignore), without the `use`, the `;` and spaces.
fn use_declarations(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let code: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        let starts_word = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        rest = &rest[at + 4..];
        if !starts_word {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        let decl: String = rest[..end].split_whitespace().collect();
        out.push(decl);
        rest = &rest[end..];
    }
    out
}

/// Where the first inline module of a file starts (`mod name {`), and its name.
fn inline_module(text: &str) -> Option<(usize, String)> {
    let mut from = 0;
    while let Some(found) = text[from..].find("mod ") {
        let at = from + found;
        from = at + 4;
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let before = text[line_start..at].trim();
        if !(before.is_empty() || before.starts_with("pub")) {
            continue;
        }
        let rest = &text[at + 4..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && rest[name.len()..].trim_start().starts_with('{') {
            return Some((at, name));
        }
    }
    None
}

/// Expands a use tree (`a::{b, c::{d, e}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let Some(open) = tree.find('{') else {
        return vec![tree.to_owned()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.len() - 1];
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|item| !item.is_empty())
        .flat_map(expand)
        .map(|path| format!("{prefix}{path}"))
        .collect()
}

/// The module a path names, from `module` (the importing file's module):
/// the deepest prefix of it that is a module of the crate.
fn target(module: &[String], path: &str, modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let mut segments = path.split("::").peekable();
    let mut at: Vec<String> = match segments.peek().copied() {
        Some("crate") => Vec::new(),
        Some("self") => module.to_vec(),
        Some("super") => module.to_vec(),
        // A child module named without `self::` (`use tracker::Snapshot;`).
        Some(child) if modules.contains(&[module, &[child.to_owned()]].concat()) => module.to_vec(),
        // Another crate.
        _ => return None,
    };
    while let Some(&segment) = segments.peek() {
        match segment {
            "crate" | "self" => {}
            "super" => {
                at.pop()?;
            }
            _ => break,
        }
        segments.next();
    }
    for segment in segments {
        let mut deeper = at.clone();
        deeper.push(segment.split(" as ").next().unwrap_or(segment).to_owned());
        if !modules.contains(&deeper) {
            break;
        }
        at = deeper;
    }
    Some(at)
}

/// The cycles of a graph: its strongly connected components of more than
/// one node (Tarjan's algorithm).
fn cycles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on_stack: BTreeSet<&'a Vec<String>>,
        out: Vec<Vec<Vec<String>>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, node: &'a Vec<String>) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    component.push(top.clone());
                    if top == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.out.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node) {
            walk.visit(node);
        }
    }
    walk.out
}

/// The file-level import graph of the crate under `src`.
fn import_graph(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .filter_map(|file| module_of(src, file).map(|m| (m, file.clone())))
        .collect();
    let names: BTreeSet<Vec<String>> = modules.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (module, file) in &modules {
        let text = fs::read_to_string(file).expect("read a source file");
        // An inline module (`mod tests { … }`, at the end of a file) is
        // part of its file: its `super` is the file's own module.
        let (outer, inline) = match inline_module(&text) {
            Some((at, name)) => (&text[..at], Some((&text[at..], name))),
            None => (text.as_str(), None),
        };
        let mut paths: Vec<(Vec<String>, String)> = use_declarations(outer)
            .iter()
            .flat_map(|decl| expand(decl))
            .map(|path| (module.clone(), path))
            .collect();
        if let Some((text, name)) = inline {
            let mut inner = module.clone();
            inner.push(name);
            paths.extend(
                use_declarations(text)
                    .iter()
                    .flat_map(|decl| expand(decl))
                    .map(|path| (inner.clone(), path)),
            );
        }
        let edges: BTreeSet<Vec<String>> = paths
            .iter()
            .filter_map(|(from, path)| target(from, path, &names))
            .filter(|to| to != module)
            .collect();
        graph.insert(module.clone(), edges);
    }
    graph
}

#[test]
fn no_file_of_any_crate_imports_one_that_imports_it_back() {
    let mut found = Vec::new();
    for src in crate_roots() {
        let graph = import_graph(&src);
        assert!(
            graph.len() > 1 || graph.keys().all(Vec::is_empty),
            "{}: no modules read",
            src.display()
        );
        for cycle in cycles(&graph) {
            let names: Vec<String> = cycle
                .iter()
                .map(|m| match m.is_empty() {
                    true => "(crate root)".to_owned(),
                    false => m.join("::"),
                })
                .collect();
            found.push(format!("{}: {}", src.display(), names.join(" <-> ")));
        }
    }
    assert!(
        found.is_empty(),
        "import cycles between files:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checker_sees_a_cycle_and_a_use_tree() {
    // The checker itself: a use tree expands to each of its paths, and two
    // modules that import each other make a cycle.
    assert_eq!(
        expand("super::{a::{B,c},D}"),
        ["super::a::B", "super::a::c", "super::D"]
    );
    let modules: BTreeSet<Vec<String>> = [vec![], vec!["a".into()], vec!["a".into(), "b".into()]]
        .into_iter()
        .collect();
    let b = vec!["a".to_owned(), "b".to_owned()];
    assert_eq!(
        target(&b, "super::Thing", &modules),
        Some(vec!["a".to_owned()])
    );
    assert_eq!(target(&[], "crate::a::b::Thing", &modules), Some(b.clone()));
    let mut graph = BTreeMap::new();
    graph.insert(vec!["a".to_owned()], BTreeSet::from([b.clone()]));
    graph.insert(b.clone(), BTreeSet::from([vec!["a".to_owned()]]));
    assert_eq!(cycles(&graph).len(), 1);
    graph.insert(b, BTreeSet::new());
    assert!(cycles(&graph).is_empty());
}
