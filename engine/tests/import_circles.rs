//! The house has floors: numerics core → storage wings → products → faces. An
//! import circle between modules is a floor that leans on the one above it, so
//! this test reads every `crate::` and `super::` path in the engine's sources and
//! the app's CLI and fails on a circle among the children of any folder. The one
//! allowed circle is `format` ↔ `simd` (the SIMD kernels are written for the
//! formats they run, as in candle's k_quants ↔ avx). The GUI folder is not held
//! to it yet: a job's file holds both its run and how its answer lands in the
//! state, so `worker`, `state`, `requests` and `command` name each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ALLOWED: &[&[&str]] = &[&["format", "simd"]];

/// Source without comments and without the `#[cfg(test)]` module at the end.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file relative to `src` (`ct/format.rs` → [ct, format]).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts
}

/// The path at the start of `rest` (`a::b::C;…` → [a, b, C]) after `prefix`.
fn path_of(rest: &str, mut prefix: Vec<String>) -> Vec<String> {
    for segment in rest.split("::") {
        let ident: String = segment.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let whole = ident.len() == segment.len();
        if !ident.is_empty() {
            prefix.push(ident);
        }
        if !whole || prefix.is_empty() {
            break;
        }
    }
    prefix
}

/// Every module path a file names (`crate::a::b`, `super::c` resolved).
fn references(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + 7..];
        out.push(path_of(rest, Vec::new()));
    }
    // `super` is the module above: a file's folder, or a mod.rs's parent folder.
    let parent = &module[..module.len().saturating_sub(1)];
    for (i, _) in code.match_indices("super::") {
        if i > 0 && code[..i].ends_with("::") {
            continue;
        }
        let rest = &code[i + 7..];
        out.push(path_of(rest, parent.to_vec()));
    }
    out
}

/// Circles (strongly connected components of 2+ nodes) of a directed graph.
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    let nodes: BTreeSet<&String> = edges.keys().chain(edges.values().flatten()).collect();
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for m in edges.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    stack.push(m.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> = nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for n in &nodes {
        let comp: BTreeSet<String> = nodes
            .iter()
            .filter(|m| reaches[*n].contains(**m) && reaches[*m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        if comp.len() > 1 && !out.contains(&comp) {
            out.push(comp);
        }
    }
    out
}

/// For every folder: the graph among its children, from the files under each.
fn folder_graphs(src: &Path) -> BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    rs_files(src, &mut files);
    let mut graphs: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for f in &files {
        let module = module_path(src, f);
        for target in references(&module, &code_of(f)) {
            // The deepest folder both paths share: the edge is between its children.
            let common = module.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if common >= module.len() || common >= target.len() {
                continue; // a module naming itself, its parent, or its own children
            }
            graphs
                .entry(module[..common].to_vec())
                .or_default()
                .entry(module[common].clone())
                .or_default()
                .insert(target[common].clone());
        }
    }
    graphs
}

fn check(crate_dir: &str, skip: &[&str]) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(crate_dir).join("src");
    assert!(src.is_dir(), "{} is missing", src.display());
    let mut bad = Vec::new();
    for (folder, edges) in folder_graphs(&src) {
        if folder.first().is_some_and(|f| skip.contains(&f.as_str())) {
            continue;
        }
        for c in circles(&edges) {
            let allowed = folder.is_empty()
                && ALLOWED.iter().any(|a| a.iter().copied().eq(c.iter().map(String::as_str)));
            if !allowed {
                let ties: Vec<String> = c
                    .iter()
                    .flat_map(|a| {
                        edges[a].iter().filter(|b| c.contains(*b)).map(move |b| format!("{a} → {b}"))
                    })
                    .collect();
                bad.push(format!("{crate_dir}/src/{}: {}", folder.join("/"), ties.join(", ")));
            }
        }
    }
    bad
}

#[test]
fn no_import_circles_but_format_and_simd() {
    let bad: Vec<String> = [check("engine", &[]), check("app", &["gui"])].concat();
    assert!(bad.is_empty(), "import circles:\n{}", bad.join("\n"));
}

#[test]
fn the_check_sees_a_circle() {
    let mut edges = BTreeMap::new();
    edges.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    edges.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    edges.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    edges.insert("d".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(circles(&edges), vec![BTreeSet::from(["a".into(), "b".into(), "c".into()])]);
    let code = "use crate::ct::format::X;\nuse super::plan::Decision;";
    let refs = references(&["export".into(), "write".into()], code);
    assert!(refs.contains(&vec!["ct".into(), "format".into(), "X".into()]));
    assert!(refs.contains(&vec!["export".into(), "plan".into(), "Decision".into()]));
}
