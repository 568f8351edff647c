//! The house rules of `src/`, checked from the code's own text: no import circle between
//! files or between top-level modules, no file over 700 lines, no function over 80 lines.
//!
//! An import is any `crate::…`, `super::…` or `self::…` path, and a path that starts with a
//! child module the file declares (`mod x;` … `x::Y`), in code outside `#[cfg(test)]`. A path
//! names the deepest module file it reaches (`crate::store::Store` → `src/store/mod.rs`). A
//! submodule's use of the module it sits in (its `mod.rs`, which declares it and hands its
//! names on) is the inside of one module, not an arrow between two.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 700;
const MAX_FN_LINES: usize = 80;

/// One source file of the crate: its module path and its code with comments and tests cut.
struct File {
    path: String,
    module: Vec<String>,
    code: String,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    match last.as_str() {
        "lib.rs" | "mod.rs" | "main.rs" => {}
        other => parts.push(other.trim_end_matches(".rs").to_owned()),
    }
    parts
}

/// Cuts `//` comments (docs included) and every `#[cfg(test)]` item: a `mod … { … }` block
/// up to the brace that closes it at the same indentation, or a `mod x;` line.
fn strip(text: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut test_mods = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" {
            let Some(next) = lines.next() else { break };
            let indent = next.len() - next.trim_start().len();
            let item = next.trim();
            if let Some(name) = item.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
                test_mods.push(name.trim().to_owned());
                continue;
            }
            if item.ends_with('{') {
                let close = format!("{}}}", " ".repeat(indent));
                for l in lines.by_ref() {
                    if l == close {
                        break;
                    }
                }
            }
            continue;
        }
        let code = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    (out, test_mods)
}

fn files() -> Vec<File> {
    let mut all = Vec::new();
    let mut test_only = BTreeSet::new();
    for (path, text) in every_file() {
        let rel = PathBuf::from(path.trim_start_matches("src/"));
        let (code, test_mods) = strip(&text);
        let module = module_of(&rel);
        for m in test_mods {
            let mut child = module.clone();
            child.push(m);
            test_only.insert(child);
        }
        all.push(File { path, module, code });
    }
    all.retain(|f| !f.path.ends_with("main.rs") && !test_only.contains(&f.module));
    all
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path that a `crate::`, `super::`, `self::` or `child::` at `at` spells, braces
/// expanded (`a::{b, c::d}` → `a::b`, `a::c::d`).
fn paths_at(code: &str, at: usize) -> Vec<Vec<String>> {
    fn path(s: &[u8], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        let mut segs = prefix;
        loop {
            while *i < s.len() && (s[*i] as char).is_whitespace() {
                *i += 1;
            }
            if *i < s.len() && s[*i] == b'{' {
                *i += 1;
                loop {
                    path(s, i, segs.clone(), out);
                    while *i < s.len() && s[*i] != b',' && s[*i] != b'}' {
                        *i += 1;
                    }
                    if *i >= s.len() || s[*i] == b'}' {
                        *i += 1;
                        return;
                    }
                    *i += 1;
                }
            }
            let start = *i;
            while *i < s.len() && is_ident(s[*i] as char) {
                *i += 1;
            }
            if start == *i {
                break;
            }
            segs.push(String::from_utf8_lossy(&s[start..*i]).into_owned());
            if s[*i..].starts_with(b"::") {
                *i += 2;
            } else {
                break;
            }
        }
        out.push(segs);
    }
    let mut out = Vec::new();
    let mut i = at;
    path(code.as_bytes(), &mut i, Vec::new(), &mut out);
    out
}

/// The file each path of `f` names, other than `f` itself and `lib.rs`.
fn imports(f: &File, modules: &BTreeMap<Vec<String>, String>) -> BTreeSet<String> {
    let modules_by_file: BTreeMap<&String, &Vec<String>> =
        modules.iter().map(|(m, p)| (p, m)).collect();
    // `mod.rs` of `a` is module `a`; its `super` is the parent; any other file's `self` is it.
    let is_dir_module = f.path.ends_with("mod.rs") || f.path.ends_with("lib.rs");
    let children: BTreeSet<String> = f
        .code
        .lines()
        .filter_map(|l| {
            let l = l
                .trim()
                .trim_start_matches("pub ")
                .trim_start_matches("pub(crate) ");
            l.strip_prefix("mod ")?.strip_suffix(';').map(str::to_owned)
        })
        .collect();
    let code = &f.code;
    let bytes = code.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        let before_ok = i == 0 || {
            let c = bytes[i - 1] as char;
            !is_ident(c) && c != ':'
        };
        if !before_ok || !is_ident(bytes[i] as char) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_ident(bytes[i] as char) {
            i += 1;
        }
        let word = &code[start..i];
        if !code[i..].starts_with("::") {
            continue;
        }
        let base: Vec<String> = match word {
            "crate" => Vec::new(),
            "self" => f.module.clone(),
            "super" => {
                let mut m = f.module.clone();
                m.pop();
                m
            }
            w if children.contains(w) && is_dir_module => {
                let mut m = f.module.clone();
                m.push(w.to_owned());
                m
            }
            _ => continue,
        };
        let full_paths = paths_at(code, i + 2);
        for p in full_paths {
            let mut segs = base.clone();
            segs.extend(p);
            // The deepest module the path reaches.
            let mut target = None;
            for n in (1..=segs.len()).rev() {
                if let Some(file) = modules.get(&segs[..n]) {
                    target = Some(file.clone());
                    break;
                }
            }
            let ancestor = |t: &String| {
                let m = &modules_by_file[t];
                m.len() < f.module.len() && f.module.starts_with(m)
            };
            if let Some(t) = target.filter(|t| *t != f.path && !ancestor(t)) {
                out.insert(t);
            }
        }
    }
    out
}

/// The import graph: file → the files it imports.
fn graph() -> (Vec<File>, BTreeMap<String, BTreeSet<String>>) {
    let files = files();
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .filter(|f| !f.module.is_empty())
        .map(|f| (f.module.clone(), f.path.clone()))
        .collect();
    let edges = files
        .iter()
        .map(|f| (f.path.clone(), imports(f, &modules)))
        .collect();
    (files, edges)
}

/// The strongly connected parts of more than one node (Tarjan).
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    impl<'a> T<'a> {
        fn visit(&mut self, v: &'a str) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            self.on.insert(v);
            let edges = self.edges;
            for w in edges.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut part = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    part.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if part.len() > 1 {
                    part.sort();
                    self.found.push(part);
                }
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.found
}

fn describe(parts: &[Vec<String>], edges: &BTreeMap<String, BTreeSet<String>>) -> String {
    let mut s = String::new();
    for part in parts {
        s.push_str("circle:\n");
        for a in part {
            for b in edges
                .get(a)
                .into_iter()
                .flatten()
                .filter(|b| part.contains(b))
            {
                s.push_str(&format!("  {a} -> {b}\n"));
            }
        }
    }
    s
}

/// `src/store/sqlite/accept.rs` → `store`; `src/clock.rs` → `clock`.
fn top(path: &str) -> String {
    let rest = path.trim_start_matches("src/");
    rest.split('/')
        .next()
        .unwrap_or(rest)
        .trim_end_matches(".rs")
        .to_owned()
}

#[test]
fn no_file_imports_itself_through_others() {
    let (_, edges) = graph();
    let found = circles(&edges);
    assert!(found.is_empty(), "{}", describe(&found, &edges));
}

#[test]
fn no_top_level_module_imports_itself_through_others() {
    let (_, edges) = graph();
    let mut tops: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, bs) in &edges {
        let entry = tops.entry(top(a)).or_default();
        entry.extend(bs.iter().map(|b| top(b)).filter(|b| *b != top(a)));
    }
    let found = circles(&tops);
    assert!(found.is_empty(), "{}", describe(&found, &tops));
}

/// Every `.rs` file under `src/`, tests included, with its text.
fn every_file() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![src()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let rel = p.strip_prefix(src()).unwrap().display().to_string();
                out.push((format!("src/{rel}"), std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn no_file_over_700_lines() {
    let long: Vec<String> = every_file()
        .into_iter()
        .map(|(path, text)| (path, text.lines().count()))
        .filter(|(_, lines)| *lines > MAX_FILE_LINES)
        .map(|(path, lines)| format!("{path} ({lines} lines)"))
        .collect();
    assert!(long.is_empty(), "over {MAX_FILE_LINES} lines: {long:#?}");
}

/// Whether a trimmed line starts a function: `[pub[(…)]] [const] [async] [unsafe] fn name`.
fn is_fn_line(t: &str) -> bool {
    let mut rest = t;
    if let Some(r) = rest.strip_prefix("pub") {
        rest = match r.strip_prefix('(') {
            Some(inner) => match inner.find(')') {
                Some(close) => &inner[close + 1..],
                None => return false,
            },
            None => r,
        };
        rest = rest.trim_start();
    }
    for word in ["const ", "async ", "unsafe "] {
        rest = rest.strip_prefix(word).unwrap_or(rest);
    }
    rest.starts_with("fn ")
}

/// A function runs from its `fn` line to the `}` at the same indentation (rustfmt's layout).
#[test]
fn no_function_over_80_lines() {
    let mut long = Vec::new();
    for (path, text) in every_file() {
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            let is_fn = is_fn_line(t);
            if !is_fn || t.ends_with(';') {
                continue;
            }
            let indent = line.len() - t.len();
            let close = format!("{}}}", " ".repeat(indent));
            if let Some(len) = lines[n..].iter().position(|l| *l == close)
                && len + 1 > MAX_FN_LINES
            {
                long.push(format!("{path}:{} ({} lines)", n + 1, len + 1));
            }
        }
    }
    assert!(long.is_empty(), "over {MAX_FN_LINES} lines: {long:#?}");
}

/// The names of the files in a folder of `src/`.
fn file_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Siblings have the same shape: the store's two backends the same files, and every action
/// kind (a folder of `src/actions/` other than the shared `api/`, `app/` and `outbound/`)
/// exactly `mod.rs` (keys, spec, render) and `send.rs` (explain's view, sending).
#[test]
fn siblings_have_the_same_file_set() {
    let store = src().join("store");
    assert_eq!(
        file_names(&store.join("sqlite")),
        file_names(&store.join("postgres"))
    );
    let actions = src().join("actions");
    let kind_files: BTreeSet<String> = ["mod.rs", "send.rs"].map(String::from).into();
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(&actions).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !path.is_dir() || ["api", "app", "outbound"].contains(&name.as_str()) {
            continue;
        }
        assert_eq!(file_names(&path), kind_files, "src/actions/{name}/");
        kinds.push(name);
    }
    assert!(kinds.len() >= 10, "{kinds:?}");
}
