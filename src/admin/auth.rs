//! Who calls the admin API: a bearer token or a Basic user from `[admin]`, or anyone on a
//! loopback listener when the config says so; and whether a write may come from a browser
//! page (only the console's own, never a cross-site form or script).

use base64::Engine;
use hyper::HeaderMap;
use hyper::header::{AUTHORIZATION, HOST, ORIGIN};
use sha2::Digest;
use subtle::ConstantTimeEq;

use crate::config::{AdminConfig, TokenSecret};
use crate::ingress::Guard;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything the API shows.
    Viewer,
    /// Also retries, cancels, replays and reloads.
    Operator,
}

/// An authenticated caller.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// The header the console sends with every write; a cross-site page cannot send it without
/// a CORS preflight, which this API never grants.
pub const CSRF_HEADER: &str = "x-hookgate-csrf";

/// The caller `headers` prove, if any. `loopback` says the listener itself is on loopback.
pub fn authenticate(
    config: &AdminConfig,
    headers: &HeaderMap,
    loopback: bool,
    guard: &Guard,
    now_ms: i64,
) -> Option<Caller> {
    let role = |name: &str| {
        if config.operators.contains(name) {
            Role::Operator
        } else {
            Role::Viewer
        }
    };
    let given = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    if let Some(token) = given.and_then(|g| strip_scheme(g, "Bearer ")) {
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for t in &config.tokens {
            let same = match &t.secret {
                TokenSecret::Sha256(d) => d.ct_eq(&digest),
                TokenSecret::Plain(p) => p.expose().as_bytes().ct_eq(token.as_bytes()),
            };
            if bool::from(same) {
                found = Some(t.name.clone());
            }
        }
        return found.map(|name| Caller {
            role: role(&name),
            name,
        });
    }
    if let Some(g) = given.filter(|g| strip_scheme(g, "Basic ").is_some()) {
        let name = basic_name(g)?;
        let ok = crate::ingress::basic_matches(&config.users, g, guard, now_ms).unwrap_or(false);
        return ok.then(|| Caller {
            role: role(&name),
            name,
        });
    }
    (config.open_on_loopback && loopback).then(|| Caller {
        name: "loopback".into(),
        role: Role::Operator,
    })
}

fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let value = value.trim();
    let head = value.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme)
        .then(|| value[scheme.len()..].trim())
}

/// The user name of a Basic credential.
fn basic_name(value: &str) -> Option<String> {
    let encoded = strip_scheme(value, "Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split_once(':')?.0.to_owned())
}

/// Why a write is refused as a possible cross-site request, or `None` when it may go on:
/// it must carry [`CSRF_HEADER`], and a browser's `Origin` must be this host.
pub fn cross_site(headers: &HeaderMap) -> Option<&'static str> {
    if !headers.contains_key(CSRF_HEADER) {
        return Some("writes need the X-Hookgate-CSRF header (the console sends it)");
    }
    if let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let same = origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host));
        if !same {
            return Some("a write from another origin");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AdminToken, BasicUser, Password};
    use crate::secret::Secret;

    fn config() -> AdminConfig {
        let token = "a-very-long-viewer-token";
        AdminConfig {
            users: vec![BasicUser {
                name: "ann".into(),
                password: Password::Plain(Secret::new("pw-of-ann".into())),
            }],
            tokens: vec![
                AdminToken {
                    name: "grafana".into(),
                    secret: TokenSecret::Sha256(sha2::Sha256::digest(token.as_bytes()).into()),
                },
                AdminToken {
                    name: "deploy".into(),
                    secret: TokenSecret::Plain(Secret::new("deploy-token-0123456789".into())),
                },
            ],
            operators: ["ann".to_owned(), "deploy".to_owned()].into(),
            open_on_loopback: false,
        }
    }

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn tokens_and_users_get_their_roles_and_nothing_else_passes() {
        let (c, g) = (config(), Guard::default());
        let who =
            |auth: &str| authenticate(&c, &headers(auth), true, &g, 0).map(|c| (c.name, c.role));
        assert_eq!(
            who("Bearer a-very-long-viewer-token"),
            Some(("grafana".into(), Role::Viewer))
        );
        assert_eq!(
            who("bearer deploy-token-0123456789"),
            Some(("deploy".into(), Role::Operator))
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("ann:pw-of-ann");
        assert_eq!(
            who(&format!("Basic {basic}")),
            Some(("ann".into(), Role::Operator))
        );
        let wrong = base64::engine::general_purpose::STANDARD.encode("ann:nope");
        assert_eq!(who(&format!("Basic {wrong}")), None);
        assert_eq!(who("Bearer a-very-long-viewer-tokeX"), None);
        assert_eq!(who("Bearer "), None);
        // Loopback is open only when the config says so.
        assert!(authenticate(&c, &HeaderMap::new(), true, &g, 0).is_none());
        let open = AdminConfig {
            open_on_loopback: true,
            ..config()
        };
        assert!(authenticate(&open, &HeaderMap::new(), true, &g, 0).is_some());
        assert!(authenticate(&open, &HeaderMap::new(), false, &g, 0).is_none());
    }

    #[test]
    fn writes_need_the_console_header_and_the_same_origin() {
        let mut h = HeaderMap::new();
        h.insert(HOST, "127.0.0.1:9090".parse().unwrap());
        assert!(cross_site(&h).is_some());
        h.insert(CSRF_HEADER, "1".parse().unwrap());
        assert_eq!(cross_site(&h), None);
        h.insert(ORIGIN, "http://127.0.0.1:9090".parse().unwrap());
        assert_eq!(cross_site(&h), None);
        h.insert(ORIGIN, "https://evil.example".parse().unwrap());
        assert!(cross_site(&h).is_some());
    }
}
