//! Where a key is in the config file: the paths serde reports as names
//! (`receivers[0].tokne`), the span of a key for its line, and the key whose value holds a
//! byte (for a value of the wrong type).

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A serde_ignored path as plain segments (`receivers`, `0`, `tokne`), without serde's
/// `Option`/`Spanned` layers.
pub(super) fn segments(path: &serde_ignored::Path<'_>) -> Vec<String> {
    use serde_ignored::Path;
    let mut out = Vec::new();
    let mut p = path;
    loop {
        match p {
            Path::Root => break,
            Path::Seq { parent, index } => {
                out.push(index.to_string());
                p = parent;
            }
            Path::Map { parent, key } => {
                if !key.starts_with("$__") {
                    out.push(key.clone());
                }
                p = parent;
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => p = parent,
        }
    }
    out.reverse();
    out
}

/// `receivers[0].tokne` from `["receivers", "0", "tokne"]`.
pub(super) fn key_name(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        if seg.parse::<usize>().is_ok() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// The span of the key at `path` in the parsed document.
pub(super) fn key_span(doc: &Spanned<DeTable<'_>>, path: &[String]) -> Option<Range<usize>> {
    let mut table = doc.get_ref();
    let mut value: Option<&DeValue<'_>> = None;
    let mut span = None;
    for seg in path {
        if let Some(DeValue::Array(items)) = value {
            let item = items.get(seg.parse::<usize>().ok()?)?;
            span = Some(item.span());
            table = item.get_ref().as_table()?;
            value = None;
            continue;
        }
        if let Some(v) = value {
            table = v.as_table()?;
        }
        let (k, v) = table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == seg.as_str())?;
        span = Some(k.span());
        value = Some(v.get_ref());
    }
    span
}

/// The key (`server.listen`, `rules[2].actions[0].to`) whose value holds byte `at`. A
/// table's own span is only its header, so every table is searched.
pub(super) fn key_at(table: &DeTable<'_>, at: usize) -> Option<String> {
    table.iter().find_map(|(k, v)| {
        let key = k.get_ref().to_string();
        within(v, at).map(|inner| format!("{key}{inner}"))
    })
}

/// Where in `value` byte `at` is: "" for the value itself, `.key…` or `[i]…` inside it.
fn within(value: &Spanned<DeValue<'_>>, at: usize) -> Option<String> {
    match value.get_ref() {
        DeValue::Table(t) => key_at(t, at)
            .map(|inner| format!(".{inner}"))
            .or_else(|| value.span().contains(&at).then(String::new)),
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| within(item, at).map(|inner| format!("[{i}]{inner}")))
            .or_else(|| value.span().contains(&at).then(String::new)),
        _ => value.span().contains(&at).then(String::new),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_value_of_the_wrong_type_names_its_key_and_line() {
        let lookup = |_: &str| None;
        let e = super::super::parse("[server]\nlisten = 12\n", &lookup).unwrap_err();
        assert_eq!(
            (e[0].key.as_str(), e[0].line),
            ("server.listen", Some(2)),
            "{e:?}"
        );
        let src = "[[receivers]]\nname = \"a\"\n[[receivers]]\nname = \"b\"\npath = 5\n";
        let e = super::super::parse(src, &lookup).unwrap_err();
        assert_eq!(
            (e[0].key.as_str(), e[0].line),
            ("receivers[1].path", Some(5)),
            "{e:?}"
        );
        let e = super::super::parse_store("[store]\npath = 1\n", &lookup).unwrap_err();
        assert_eq!(e[0].key, "store.path", "{e:?}");
    }
}
