//! `${VAR}` substitution in config strings, from a lookup passed in (never the process
//! environment directly, so tests need no `set_var`).
//!
//! `${NAME}` is the variable (an error if unset), `${NAME:-default}` falls back when it is unset
//! or empty, `$$` is a literal `$`; any other `$` stays as it is.

/// Expands every `${...}` in `value`; the error names the variable.
pub fn expand(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unterminated `${{` in {value:?}"))?;
            let (name, default) = match body[..end].split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (&body[..end], None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`${{{}}}` is not a variable name", &body[..end]));
            }
            match (lookup(name), default) {
                (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(format!("environment variable {name} is not set")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("x".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn forms() {
        assert_eq!(expand("a${A}b", &env).unwrap(), "axb");
        assert_eq!(expand("${B:-d}", &env).unwrap(), "d");
        assert_eq!(expand("${EMPTY:-d}", &env).unwrap(), "d");
        assert_eq!(expand("$$5 $x", &env).unwrap(), "$5 $x");
        assert_eq!(
            expand("${B}", &env).unwrap_err(),
            "environment variable B is not set"
        );
        assert!(expand("${A", &env).is_err());
        assert!(expand("${a-b}", &env).is_err());
    }
}
