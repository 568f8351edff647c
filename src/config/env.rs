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

/// Secrets kept in files, for the `${VAR}`s `config` uses that `env` does not set:
/// `VAR_FILE=/path` in `env` (as container images take them), then a file named `VAR` in
/// systemd's `$CREDENTIALS_DIRECTORY` (`LoadCredential=`). One trailing newline is dropped.
/// A file that is named but unreadable is an error that names it.
pub fn file_secrets(
    config: &str,
    env: &dyn Fn(&str) -> Option<String>,
    read: &dyn Fn(&std::path::Path) -> std::io::Result<String>,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in referenced(config) {
        if env(&name).is_some() {
            continue;
        }
        let file = env(&format!("{name}_FILE"))
            .map(|f| (std::path::PathBuf::from(f), format!("{name}_FILE")))
            .or_else(|| {
                let dir = std::path::PathBuf::from(env("CREDENTIALS_DIRECTORY")?);
                let path = dir.join(&name);
                path.exists()
                    .then(|| (path, "$CREDENTIALS_DIRECTORY".to_owned()))
            });
        let Some((path, via)) = file else { continue };
        match read(&path) {
            Ok(text) => {
                let value = text.strip_suffix('\n').unwrap_or(&text);
                let value = value.strip_suffix('\r').unwrap_or(value);
                found.push((name, value.to_owned()));
            }
            Err(e) => errors.push(format!("{via}: cannot read {}: {e}", path.display())),
        }
    }
    (found, errors)
}

/// The variable names `${NAME}` / `${NAME:-…}` in `text`, each once.
fn referenced(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        let body = &rest[i + 2..];
        let name: String = body
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && !out.contains(&name) {
            out.push(name);
        }
        rest = body;
    }
    out
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

    #[test]
    fn secrets_come_from_var_file_then_the_credentials_directory() {
        let config = "a = \"${TOKEN}\"\nb = \"${DB_URL:-x}\"\nc = \"${SET}\"\nd = \"${GONE}\"";
        let env = |n: &str| match n {
            "TOKEN_FILE" => Some("/run/secrets/token".to_owned()),
            "CREDENTIALS_DIRECTORY" => Some("/run/credentials/hookgate.service".to_owned()),
            "SET" | "SET_FILE" => Some("from env".to_owned()),
            "GONE_FILE" => Some("/nowhere".to_owned()),
            _ => None,
        };
        let read = |p: &std::path::Path| match p.to_str().unwrap() {
            "/run/secrets/token" => Ok("s3cret\n".to_owned()),
            "/nowhere" => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
            other => panic!("read {other}"),
        };
        // DB_URL has no file here: the credentials directory has none (exists() is false).
        let (found, errors) = file_secrets(config, &env, &read);
        assert_eq!(found, vec![("TOKEN".to_owned(), "s3cret".to_owned())]);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("GONE_FILE: cannot read /nowhere"),
            "{errors:?}"
        );
    }

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
