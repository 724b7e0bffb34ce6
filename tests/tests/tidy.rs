//! Habits as tests (issue 15, after rust-analyzer's `tidy.rs` and TigerBeetle's `tidy.zig`): a
//! length budget for functions.
//!
//! A function longer than [`FN_LINES_MAX`] lines is refused unless `tests/long-functions.txt`
//! names it with a length it may not exceed: the list records the functions that were longer
//! when the budget came (a ratchet: they may shrink, not grow), and new code fits the budget.
//! The sources are rustfmt-formatted (CI checks it), so a function ends at the first line that
//! is its indentation followed by `}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The most lines a new function may span, signature and closing brace included.
const FN_LINES_MAX: usize = 100;

/// `(file relative to the workspace, function name, first line, lines)` of every function in
/// `text`.
fn functions(file: &str, text: &str) -> Vec<(String, String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let Some(name) = fn_name(trimmed) else {
            continue;
        };
        // A declaration without a body (a trait method, an extern function) ends in `;`.
        let Some(end) = (i..lines.len()).find(|&j| {
            let l = lines[j];
            (j > i
                && l.len() > indent
                && l[..indent].trim().is_empty()
                && l[indent..].starts_with('}'))
                || (j == i && (l.trim_end().ends_with('}') || l.trim_end().ends_with(';')))
                || (l.trim_end().ends_with(';') && !lines[i..=j].iter().any(|x| x.contains('{')))
        }) else {
            continue;
        };
        out.push((file.to_owned(), name, i + 1, end - i + 1));
    }
    out
}

/// The name of the function a (trimmed) line declares, if it declares one.
fn fn_name(line: &str) -> Option<String> {
    let mut rest = line;
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
        "extern \"C\" ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    for prefix in ["const ", "async ", "unsafe "] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let rest = rest.strip_prefix("fn ")?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name();
        if p.is_dir() {
            if name != "target" && name != ".git" && name != "fuzz" {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// Every function of the workspace's sources, longest first.
fn all_functions() -> Vec<(String, String, usize, usize)> {
    let root = workspace();
    let mut files = Vec::new();
    for dir in ["ledger", "node", "loyalty-node", "sdk", "tests", "workpool"] {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read a source file");
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        out.extend(functions(&rel, &text));
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.3));
    out
}

#[test]
fn no_function_is_longer_than_the_budget_or_its_recorded_length() {
    let allowed: BTreeMap<(String, String), usize> =
        std::fs::read_to_string(workspace().join("tests/long-functions.txt"))
            .expect("tests/long-functions.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let mut p = l.split_whitespace();
                let (n, file, name) = (p.next(), p.next(), p.next());
                let n = n
                    .and_then(|n| n.parse().ok())
                    .expect("`LINES FILE FUNCTION`");
                (
                    (
                        file.expect("a file").to_owned(),
                        name.expect("a name").to_owned(),
                    ),
                    n,
                )
            })
            .collect();
    let fns = all_functions();
    assert!(fns.len() > 1000, "only {} functions found", fns.len());
    // The longest of each (file, name) counts: a name may repeat in a file (methods).
    let mut longest: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    for (file, name, line, n) in fns {
        let e = longest.entry((file, name)).or_insert((line, n));
        if n > e.1 {
            *e = (line, n);
        }
    }
    let mut problems = Vec::new();
    for ((file, name), (line, n)) in &longest {
        let budget = allowed
            .get(&(file.clone(), name.clone()))
            .copied()
            .unwrap_or(FN_LINES_MAX)
            .max(FN_LINES_MAX);
        if *n > budget {
            problems.push(format!(
                "{file}:{line}: fn {name} spans {n} lines (budget {budget}): split it"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "functions over their length budget:\n{}\n(tests/long-functions.txt lists the functions \
         that were longer when the budget came; new code fits {FN_LINES_MAX} lines)",
        problems.join("\n")
    );
}

#[test]
fn the_function_finder_measures_bodies_and_skips_declarations() {
    let text = "fn a() {\n    x();\n}\n\npub async fn b(\n    y: u8,\n) -> u8 {\n    y\n}\n\ntrait T {\n    fn c(&self);\n    fn d(&self) {}\n}\nimpl S {\n    pub(crate) fn e(&self) {\n        if x {\n        }\n    }\n}\n";
    let f = functions("x.rs", text);
    let got: Vec<(&str, usize)> = f.iter().map(|(_, n, _, l)| (n.as_str(), *l)).collect();
    assert_eq!(got, [("a", 3), ("b", 5), ("c", 1), ("d", 1), ("e", 4)]);
}

/// Prints the list of functions over the budget, in the file's format (to regenerate it:
/// `cargo test --test tidy -- --ignored --nocapture`).
#[test]
#[ignore]
fn print_long_functions() {
    for (file, name, _, n) in all_functions() {
        if n > FN_LINES_MAX {
            println!("{n} {file} {name}");
        }
    }
}
