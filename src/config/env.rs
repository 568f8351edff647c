//! `${VAR}` substitution in config strings, from a lookup passed in (never the process
//! environment directly, so tests need no `set_var`).
//!
//! `${NAME}` is the variable (an error if unset), `${NAME:-default}` falls back when it is unset
//! or empty, `$$` is a literal `$`; any other `$` stays as it is.

/// `KEY=VALUE` lines of an env file (as systemd's `EnvironmentFile` and docker's
/// `--env-file` take them): `#` comments, blank lines, an optional `export `, values optionally
/// in matching quotes. An error names the line.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: not KEY=VALUE", i + 1));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("line {}: {key:?} is not a variable name", i + 1));
        }
        let value = value.trim();
        let unquoted = [('"', '"'), ('\'', '\'')]
            .iter()
            .find_map(|(a, b)| value.strip_prefix(*a)?.strip_suffix(*b))
            .unwrap_or(value);
        out.push((key.to_owned(), unquoted.to_owned()));
    }
    Ok(out)
}

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

    #[test]
    fn env_files_are_read() {
        let vars =
            parse_env_file("# demo\n\nA=1\nexport B = \"two words\"\nC='x=y'\nD=\n").unwrap();
        let want = [("A", "1"), ("B", "two words"), ("C", "x=y"), ("D", "")];
        assert_eq!(vars, want.map(|(k, v)| (k.to_owned(), v.to_owned())));
        assert_eq!(
            parse_env_file("A=1\nnope\n"),
            Err("line 2: not KEY=VALUE".into())
        );
    }
}
