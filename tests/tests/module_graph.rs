//! The module graph of every crate of the workspace has no cycle between top-level modules
//! (issue 15): a module can be read, moved and tested with only what lies below it.
//!
//! The graph is built from the source text: an edge `a -> b` for every path of a file under
//! module `a` that names `crate::b` (also `$crate::b`, `crate::{b, ..}` and `super::` chains
//! that climb to the crate root). A re-export (`pub use crate::b::item;`) is an alias: a path
//! through it counts as a use of the module that defines the item, and the re-exporting module
//! gains the edge only if its own code uses the name. Comments and string literals are skipped.
//! `src/lib.rs`, `src/main.rs` and `src/bin/` are crate roots, not modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Semi,
    Star,
    Other,
}

/// A token and the line it is on.
type Token = (Tok, usize);

/// Tokens of Rust source, without comments, string and char literals.
fn tokens(src: &str) -> Vec<Token> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let count_lines = |s: &[u8]| s.iter().filter(|&&c| c == b'\n').count();
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'/' && next == Some(b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && next == Some(b'*') {
            // Block comments nest in Rust.
            let (mut depth, start) = (0usize, i);
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            line += count_lines(&b[start..i.min(b.len())]);
        } else if c == b'r' && (next == Some(b'"') || next == Some(b'#')) && raw_string_at(b, i) {
            let start = i;
            i += 1;
            let mut hashes = 0;
            while b[i] == b'#' {
                hashes += 1;
                i += 1;
            }
            i += 1; // the opening quote
            loop {
                if i >= b.len() {
                    break;
                }
                if b[i] == b'"'
                    && b[i + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == b'#')
                        .count()
                        == hashes
                {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            line += count_lines(&b[start..i.min(b.len())]);
            out.push((Tok::Other, line));
        } else if c == b'"' {
            let start = i;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            line += count_lines(&b[start..i.min(b.len())]);
            out.push((Tok::Other, line));
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if next == Some(b'\\') {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            } else if b.get(i + 2) == Some(&b'\'') {
                i += 3;
            } else {
                i += 1;
            }
            out.push((Tok::Other, line));
        } else if c == b'_' || c.is_ascii_alphabetic() {
            let start = i;
            while i < b.len() && (b[i] == b'_' || b[i].is_ascii_alphanumeric()) {
                i += 1;
            }
            out.push((Tok::Ident(src[start..i].to_owned()), line));
        } else if c == b':' && next == Some(b':') {
            out.push((Tok::PathSep, line));
            i += 2;
        } else {
            out.push((
                match c {
                    b'{' => Tok::Open,
                    b'}' => Tok::Close,
                    b',' => Tok::Comma,
                    b';' => Tok::Semi,
                    b'*' => Tok::Star,
                    _ => Tok::Other,
                },
                line,
            ));
            i += 1;
        }
    }
    out
}

/// Whether `r` at `i` starts a raw string (`r"`, `r#"`), not an identifier such as `r#type`.
fn raw_string_at(b: &[u8], i: usize) -> bool {
    if i > 0 && (b[i - 1] == b'_' || b[i - 1].is_ascii_alphanumeric()) {
        return false;
    }
    let mut j = i + 1;
    while j < b.len() && b[j] == b'#' {
        j += 1;
    }
    b.get(j) == Some(&b'"')
}

fn ident(t: Option<&Token>) -> Option<&str> {
    match t {
        Some((Tok::Ident(s), _)) => Some(s),
        _ => None,
    }
}

/// The index just past the group that opens at `open` (a `{`).
fn group_end(t: &[Token], open: usize) -> usize {
    let mut depth = 0;
    for (k, (tok, _)) in t.iter().enumerate().skip(open) {
        match tok {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    return k + 1;
                }
            }
            _ => {}
        }
    }
    t.len()
}

/// The items of the group `{ .. }` that opens at `open`, split at its top-level commas.
fn group_items(t: &[Token], open: usize) -> Vec<&[Token]> {
    let end = group_end(t, open).saturating_sub(1).max(open + 1);
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, open + 1);
    for k in open + 1..end {
        match t[k].0 {
            Tok::Open => depth += 1,
            Tok::Close => depth -= 1,
            Tok::Comma if depth == 0 => {
                items.push(&t[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    if start < end {
        items.push(&t[start..end]);
    }
    items
}

/// The first two segments below the crate root of each path that starts at `t[0]` (after
/// `crate::` or a `super::` chain), `base` being the segments already known.
fn paths_from(base: &[String], t: &[Token]) -> Vec<(String, Option<String>)> {
    match base {
        [top, second, ..] => vec![(top.clone(), Some(second.clone()))],
        [top] => match t.first() {
            Some((Tok::Ident(s), _)) if s != "self" => vec![(top.clone(), Some(s.clone()))],
            Some((Tok::Open, _)) => group_items(t, 0)
                .into_iter()
                .map(|item| {
                    (
                        top.clone(),
                        ident(item.first())
                            .filter(|s| *s != "self")
                            .map(str::to_owned),
                    )
                })
                .collect(),
            _ => vec![(top.clone(), None)],
        },
        [] => match t.first() {
            Some((Tok::Ident(s), _)) => {
                let rest = &t[1..];
                if rest.first().map(|x| &x.0) == Some(&Tok::PathSep) {
                    paths_from(std::slice::from_ref(s), &rest[1..])
                } else {
                    vec![(s.clone(), None)]
                }
            }
            Some((Tok::Open, _)) => group_items(t, 0)
                .into_iter()
                .flat_map(|item| paths_from(&[], item))
                .collect(),
            _ => Vec::new(),
        },
    }
}

/// One source file of a crate: its path below `src/` and its text.
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// A use of another module: which module, the name used in it (if any), where.
struct Use {
    top: String,
    second: Option<String>,
    file: PathBuf,
    line: usize,
}

/// A re-export of the module's root file: the name it exports and the module defining it.
struct Alias {
    name: String,
    target: String,
}

/// What one top-level module's files say.
#[derive(Default)]
struct ModuleText {
    uses: Vec<Use>,
    aliases: Vec<Alias>,
    /// Identifiers used outside re-export statements.
    idents: BTreeSet<String>,
}

/// The module path of a file below `src/` (`a.rs`, `a/mod.rs` -> [a]; `a/b.rs` -> [a, b]).
fn module_path(p: &Path) -> Vec<String> {
    let mut parts: Vec<String> = p.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs").to_owned();
    if stem != "mod" {
        parts.push(stem);
    }
    parts
}

/// Reads one file of module `path[0]` into `m`.
fn scan_file(file: &SourceFile, m: &mut ModuleText) {
    let t = tokens(&file.text);
    let path = module_path(&file.path);
    let root_file = path.len() == 1;
    // Inline modules (`mod tests { .. }`): their names and the brace depth inside them.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut pending_mod: Option<String> = None;
    let mut depth = 0usize;
    let mut i = 0;
    while i < t.len() {
        match &t[i].0 {
            Tok::Open => {
                depth += 1;
                if let Some(name) = pending_mod.take() {
                    inline.push((name, depth));
                }
                i += 1;
                continue;
            }
            Tok::Close => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
                continue;
            }
            Tok::Semi => pending_mod = None,
            Tok::Ident(s) if s == "mod" => {
                pending_mod = ident(t.get(i + 1)).map(str::to_owned);
                i += 2;
                continue;
            }
            _ => {}
        }
        // A re-export at the top of the module's root file.
        if root_file && inline.is_empty() && ident(t.get(i)) == Some("pub") {
            let mut k = i + 1;
            if matches!(t.get(k), Some((Tok::Other, _))) {
                // pub(crate), pub(super): `(`, one word, `)`.
                k += 3;
            }
            if ident(t.get(k)) == Some("use") {
                let end = (k..t.len())
                    .find(|&e| t[e].0 == Tok::Semi)
                    .unwrap_or(t.len());
                if let Some(aliases) = reexports(&path, &t[k + 1..end]) {
                    m.aliases.extend(aliases);
                    i = end;
                    continue;
                }
            }
        }
        if let Tok::Ident(s) = &t[i].0 {
            m.idents.insert(s.clone());
        }
        let starts_path = !matches!(t.get(i.wrapping_sub(1)), Some((Tok::PathSep, _)) if i > 0)
            && t.get(i + 1).map(|x| &x.0) == Some(&Tok::PathSep);
        if starts_path && matches!(ident(t.get(i)), Some("crate" | "super")) {
            let mut here: Vec<String> = path.clone();
            here.extend(inline.iter().map(|(n, _)| n.clone()));
            let (base, rest) = resolve_prefix(&here, &t[i..]);
            if let Some(base) = base {
                for (top, second) in paths_from(&base, rest) {
                    m.uses.push(Use {
                        top,
                        second,
                        file: file.path.clone(),
                        line: t[i].1,
                    });
                }
            }
        }
        i += 1;
    }
}

/// Resolves `crate::` or `super::super::..` at the start of `t` against the module path
/// `here`: the segments known below the crate root, and the tokens after the prefix.
fn resolve_prefix<'t>(here: &[String], t: &'t [Token]) -> (Option<Vec<String>>, &'t [Token]) {
    if ident(t.first()) == Some("crate") {
        return (Some(Vec::new()), &t[2..]);
    }
    let mut base = here.to_vec();
    let mut k = 0;
    while ident(t.get(k)) == Some("super") && t.get(k + 1).map(|x| &x.0) == Some(&Tok::PathSep) {
        if base.pop().is_none() {
            return (None, &t[k..]);
        }
        k += 2;
    }
    (Some(base), &t[k..])
}

/// The names a `pub use` statement (the tokens after `use`) re-exports from another top-level
/// module, or `None` when it is not such a re-export (a glob, or a path inside the module).
fn reexports(path: &[String], t: &[Token]) -> Option<Vec<Alias>> {
    let (base, rest) = match ident(t.first()) {
        Some("crate" | "super") if t.get(1).map(|x| &x.0) == Some(&Tok::PathSep) => {
            resolve_prefix(path, t)
        }
        _ => return None,
    };
    let base = base?;
    let mut out = Vec::new();
    leaves(&base, rest, &mut out).then_some(())?;
    let own = path.first()?;
    if out.iter().any(|a| &a.target == own) {
        return None;
    }
    Some(out)
}

/// Collects the leaves of a use tree: their exported name and the top-level module they come
/// from. False for a glob or a tree it cannot read.
fn leaves(base: &[String], t: &[Token], out: &mut Vec<Alias>) -> bool {
    let mut segs = base.to_vec();
    let mut k = 0;
    loop {
        match t.get(k).map(|x| &x.0) {
            Some(Tok::Ident(s)) if s == "as" => {
                let Some(name) = ident(t.get(k + 1)) else {
                    return false;
                };
                let Some(target) = segs.first() else {
                    return false;
                };
                out.push(Alias {
                    name: name.to_owned(),
                    target: target.clone(),
                });
                return true;
            }
            Some(Tok::Ident(s)) => {
                if s != "self" {
                    segs.push(s.clone());
                }
                k += 1;
            }
            Some(Tok::PathSep) => k += 1,
            Some(Tok::Open) => {
                return group_items(t, k)
                    .into_iter()
                    .all(|item| leaves(&segs, item, out));
            }
            None => {
                let (Some(target), Some(name)) = (segs.first(), segs.last()) else {
                    return false;
                };
                if segs.len() < 2 {
                    return false;
                }
                out.push(Alias {
                    name: name.clone(),
                    target: target.clone(),
                });
                return true;
            }
            _ => return false,
        }
    }
}

/// The top-level modules of a crate and the edges between them, each with the first place
/// that makes it.
pub struct Graph {
    pub modules: BTreeSet<String>,
    pub edges: BTreeMap<String, BTreeMap<String, String>>,
}

/// Builds the graph of one crate from its files below `src/`.
pub fn graph(files: &[SourceFile]) -> Graph {
    let is_module = |p: &Path| {
        let first = p
            .iter()
            .next()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        !(first == "lib.rs" || first == "main.rs" || first == "bin")
    };
    let mut texts: BTreeMap<String, ModuleText> = BTreeMap::new();
    for f in files.iter().filter(|f| is_module(&f.path)) {
        let top = module_path(&f.path).first().cloned().unwrap_or_default();
        scan_file(f, texts.entry(top).or_default());
    }
    let modules: BTreeSet<String> = texts.keys().cloned().collect();
    let alias_of = |top: &str, name: &str| -> Option<String> {
        texts
            .get(top)?
            .aliases
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.target.clone())
    };
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (from, m) in &texts {
        let mut add = |to: &str, at: String| {
            if to != from && modules.contains(to) {
                edges
                    .entry(from.clone())
                    .or_default()
                    .entry(to.to_owned())
                    .or_insert(at);
            }
        };
        for u in &m.uses {
            // Follow re-exports (a bounded number of hops) to the module that defines the item.
            let mut to = u.top.clone();
            let mut name = u.second.clone();
            for _ in 0..4 {
                match name.as_deref().and_then(|n| alias_of(&to, n)) {
                    Some(t) if t != to => {
                        to = t;
                        name = None;
                    }
                    _ => break,
                }
            }
            add(&to, format!("{}:{}", u.file.display(), u.line));
        }
        for a in &m.aliases {
            if m.idents.contains(&a.name) {
                add(
                    &a.target,
                    format!("its own use of the re-exported `{}`", a.name),
                );
            }
        }
    }
    Graph { modules, edges }
}

/// Every cycle of the graph, as a strongly connected component of two or more modules (Tarjan).
pub fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct Walk<'g> {
        g: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(w: &mut Walk<'g>, v: &'g str) {
        let n = w.index.len();
        w.index.insert(v, n);
        w.low.insert(v, n);
        w.stack.push(v);
        w.on_stack.insert(v);
        let g = w.g;
        for to in g.edges.get(v).into_iter().flat_map(|e| e.keys()) {
            let to = to.as_str();
            if !w.index.contains_key(to) {
                visit(w, to);
                let l = w.low[v].min(w.low[to]);
                w.low.insert(v, l);
            } else if w.on_stack.contains(to) {
                let l = w.low[v].min(w.index[to]);
                w.low.insert(v, l);
            }
        }
        if w.low[v] == w.index[v] {
            let mut component = Vec::new();
            while let Some(x) = w.stack.pop() {
                w.on_stack.remove(x);
                component.push(x.to_owned());
                if x == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                w.found.push(component);
            }
        }
    }
    let mut w = Walk {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for m in &g.modules {
        if !w.index.contains_key(m.as_str()) {
            visit(&mut w, m);
        }
    }
    w.found
}

/// Every `.rs` file below `src`, with paths relative to it.
fn read_sources(src: &Path) -> Vec<SourceFile> {
    let mut out = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).expect("read a source directory") {
            let p = e.expect("a directory entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).expect("read a source file");
                out.push(SourceFile {
                    path: p.strip_prefix(src).unwrap().to_path_buf(),
                    text,
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The crates of the workspace (`members` of the root `Cargo.toml`); `MODULE_GRAPH_ROOT` checks
/// another checkout instead (an older commit, to see the cycles it had).
fn workspace_crates() -> Vec<PathBuf> {
    let root = match std::env::var_os("MODULE_GRAPH_ROOT") {
        Some(r) => PathBuf::from(r),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the workspace root")
            .to_path_buf(),
    };
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("read Cargo.toml");
    let members = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("a members line");
    members
        .split('"')
        .skip(1)
        .step_by(2)
        .map(|m| root.join(m))
        .collect()
}

fn describe(g: &Graph, cycle: &[String]) -> String {
    let mut lines = Vec::new();
    for from in cycle {
        for (to, at) in g.edges.get(from).into_iter().flatten() {
            if cycle.contains(to) {
                lines.push(format!("  {from} -> {to} ({at})"));
            }
        }
    }
    format!("cycle between {}:\n{}", cycle.join(", "), lines.join("\n"))
}

#[test]
fn no_crate_has_a_cycle_between_its_top_level_modules() {
    let crates = workspace_crates();
    assert!(
        crates.len() >= 4,
        "the workspace lists its crates: {crates:?}"
    );
    let mut problems = Vec::new();
    let mut modules = 0;
    for c in &crates {
        let files = read_sources(&c.join("src"));
        assert!(!files.is_empty(), "{} has sources to check", c.display());
        let g = graph(&files);
        // A crate of one or two files (the binary, the worker pool) has no cycle to find; the
        // sum below keeps the test from passing on a parser that finds nothing.
        modules += g.modules.len();
        if c.ends_with("node") {
            assert!(
                g.modules.len() >= 10,
                "{} has modules to check",
                c.display()
            );
        }
        for cycle in cycles(&g) {
            problems.push(format!("{}: {}", c.display(), describe(&g, &cycle)));
        }
    }
    assert!(modules >= 30, "only {modules} modules found in {crates:?}");
    assert!(
        problems.is_empty(),
        "module cycles:\n{}",
        problems.join("\n")
    );
}

fn file(path: &str, text: &str) -> SourceFile {
    SourceFile {
        path: PathBuf::from(path),
        text: text.to_owned(),
    }
}

#[test]
fn the_checker_finds_a_cycle_through_every_kind_of_path() {
    // a -> b through `crate::`, b -> c through a group, c -> a through `super::super::`.
    let files = [
        file("lib.rs", "pub mod a; pub mod b; pub mod c; pub mod d;"),
        file("a.rs", "use crate::b::Thing;\n"),
        file("b.rs", "use crate::{c, d::X};\n"),
        file("c/mod.rs", "mod inner;"),
        file("c/inner.rs", "fn f() { super::super::a::go(); }"),
        file("d.rs", "pub struct X;"),
    ];
    let g = graph(&files);
    assert_eq!(
        cycles(&g),
        vec![vec!["a".to_owned(), "b".into(), "c".into()]]
    );
    assert_eq!(g.edges["c"]["a"], "c/inner.rs:1");

    // `$crate::` in a macro and a direct two-module cycle.
    let files = [
        file("x.rs", "macro_rules! m { () => { $crate::y::f() } }"),
        file("y.rs", "use crate::x::m;"),
    ];
    assert_eq!(
        cycles(&graph(&files)),
        vec![vec!["x".to_owned(), "y".into()]]
    );
}

#[test]
fn the_checker_ignores_comments_strings_inner_modules_and_the_crate_root() {
    let files = [
        file("lib.rs", "use crate::a::f; use crate::b::g;"),
        // A test module's `super::` is the module itself, not the crate root.
        file("a.rs", "use crate::b::g;\n#[cfg(test)]\nmod tests { use super::*; use super::f; }"),
        file("b.rs", "// crate::a::f\n/* crate::a::f /* nested */ crate::a */ const S: &str = \"crate::a::f\";\nconst R: &str = r#\"crate::a\"#; const C: char = '\"'; fn g<'x>(s: &'x str) {}"),
    ];
    let g = graph(&files);
    assert!(cycles(&g).is_empty(), "{:?}", g.edges);
    assert_eq!(g.edges["a"].keys().collect::<Vec<_>>(), ["b"]);
    assert!(!g.edges.contains_key("b"), "{:?}", g.edges);
}

#[test]
fn a_path_through_a_reexport_counts_as_a_use_of_the_defining_module() {
    // `api` re-exports `App` from `app`; `ha` imports it from `api`, and `api` imports `ha`:
    // no cycle, since `ha` uses `app`, not `api`.
    let files = [
        file("app.rs", "pub struct App;"),
        file("api.rs", "pub use crate::app::{App, AppState as State};\npub use crate::app as plumbing;\nuse crate::ha::run;"),
        file("ha.rs", "use crate::api::App; use crate::api::{State, plumbing::x};"),
    ];
    let g = graph(&files);
    assert!(cycles(&g).is_empty(), "{:?}", g.edges);
    assert_eq!(g.edges["ha"].keys().collect::<Vec<_>>(), ["app"]);
    // But a re-exporting module that uses the name itself depends on the defining module,
    // and a path through it to an item it defines is an edge to it.
    let files = [
        file("app.rs", "use crate::api::submit; pub struct App;"),
        file(
            "api.rs",
            "pub use crate::app::App;\npub fn submit(a: &App) {}",
        ),
    ];
    let g = graph(&files);
    assert_eq!(cycles(&g), vec![vec!["api".to_owned(), "app".into()]]);
}
