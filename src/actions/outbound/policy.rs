//! The `[outbound]` policy as validated, and its static checks (what `hookgate check`
//! reports before anything is sent).

use std::path::{Component, Path, PathBuf};

/// The validated `[outbound]` section.
#[derive(Debug, Clone, Default)]
pub struct OutboundConfig {
    /// The only directory robot and app images and files are read from; none: no local files.
    pub media_dir: Option<PathBuf>,
    /// Hosts robot webhooks (beyond the vendors' own) and event-chosen `http` hosts may name.
    pub allow_hosts: Vec<HostPattern>,
    /// Confined destinations may be loopback, private or link-local addresses.
    pub allow_private: bool,
    /// `proxy`: actions' HTTP requests go through it (vendor APIs, robots, `http`), but for
    /// `no_proxy` hosts and connections with their own.
    /// Unset: the standard `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` variables apply.
    pub proxy: Option<ProxyConfig>,
}

/// An HTTP proxy (`http://[user:password@]host:port`; `https://` for TLS to the proxy):
/// plain requests are forwarded, HTTPS is tunnelled with `CONNECT`.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The whole URL, credentials included: never logged.
    pub url: crate::secret::Secret<String>,
    /// The proxy's host name or address.
    pub host: String,
    /// Hosts reached directly, in curl's `NO_PROXY` form (`localhost,.corp.example,10.0.0.0/8`).
    pub no_proxy: Option<String>,
}

impl ProxyConfig {
    pub fn parse(text: &str, no_proxy: Option<String>) -> Result<Self, String> {
        let text = text.trim();
        let (_, rest) = text
            .split_once("://")
            .filter(|(s, _)| matches!(*s, "http" | "https"))
            .ok_or("must start with http:// (or https://, for TLS to the proxy)")?;
        let authority = rest.split('/').next().unwrap_or_default();
        if rest.len() > authority.len() + 1 {
            return Err("takes no path: http://[user:password@]host:port".into());
        }
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = host_port
            .rsplit_once(':')
            .filter(|(h, _)| !h.is_empty() && (!h.contains(':') || h.ends_with(']')))
            .ok_or("needs host:port (http://[user:password@]host:port)")?;
        port.parse::<u16>()
            .map_err(|_| format!("{port:?} is not a port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(Self {
            url: crate::secret::Secret::new(text.to_owned()),
            host: host.to_ascii_lowercase(),
            no_proxy,
        })
    }
}

/// A connection's own `proxy`: the global one, none (`"none"`: direct), or its own.
#[derive(Debug, Clone)]
pub enum ProxyChoice {
    Global,
    Direct,
    Own(ProxyConfig),
}

/// One `allow_hosts` entry: `host`, `host:port`, `*.domain` (its subdomains) or an IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim().to_ascii_lowercase();
        let (host, port) = match t.rsplit_once(':') {
            // `[::1]:8080`, `host:8080`; a bare IPv6 address has several colons.
            Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("{text:?}: {p:?} is not a port"))?;
                (h.to_owned(), Some(port))
            }
            _ => (t.clone(), None),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let (wildcard, name) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, host),
        };
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
        if !ok || (wildcard && name.parse::<std::net::IpAddr>().is_ok()) {
            return Err(format!(
                "{text:?} is not a host, host:port, *.domain or IP address"
            ));
        }
        Ok(Self {
            host: name,
            wildcard,
            port,
        })
    }

    /// Whether `host` (lowercase, IPv6 without brackets) and `port` are covered.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        let host_ok = if self.wildcard {
            host.len() > self.host.len()
                && host.ends_with(&self.host)
                && host.as_bytes()[host.len() - self.host.len() - 1] == b'.'
        } else {
            host == self.host
        };
        host_ok && self.port.is_none_or(|p| p == port)
    }

    /// An entry that names one IP address: the operator chose that address itself, so it
    /// may be a private one without `allow_private`.
    pub fn is_ip(&self) -> bool {
        !self.wildcard && self.host.parse::<std::net::IpAddr>().is_ok()
    }
}

/// What a URL template fixes before its first template code.
#[derive(Debug, PartialEq, Eq)]
pub enum UrlTarget {
    /// Scheme, host and port are written out: the config, not the event, chooses them.
    Literal {
        scheme: String,
        host: String,
        port: Option<u16>,
    },
    /// The host (or the scheme) comes out of a template.
    Templated,
}

/// Splits a URL template into what is literal; an error for a literal URL that is not one.
pub fn url_target(template: &str) -> Result<UrlTarget, String> {
    let code = ["{{", "{%", "{#"]
        .iter()
        .filter_map(|m| template.find(m))
        .min()
        .unwrap_or(template.len());
    let literal = &template[..code];
    let Some((scheme, rest)) = literal.split_once("://") else {
        return if code == template.len() || literal.contains(':') {
            Err("must be an http:// or https:// URL".into())
        } else {
            Ok(UrlTarget::Templated)
        };
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!("scheme {scheme:?}: must be http or https"));
    }
    let end = rest.find(['/', '?', '#']);
    let authority = match end {
        Some(e) => &rest[..e],
        // The authority runs into template code: its end is chosen at render time.
        None if code < template.len() => return Ok(UrlTarget::Templated),
        None => rest,
    };
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| format!("{p:?} is not a port"))?;
            (h, Some(port))
        }
        _ => (host_port, None),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if host.is_empty() {
        return Err("the URL has no host".into());
    }
    Ok(UrlTarget::Literal { scheme, host, port })
}

impl OutboundConfig {
    pub fn allowed_host(&self, host: &str, port: u16) -> Option<&HostPattern> {
        self.allow_hosts.iter().find(|p| p.matches(host, port))
    }

    /// Why a robot's `webhook` could never be sent to, if it could not: `hosts` are its
    /// vendor's own (HTTPS only), `kind` names the robot.
    pub fn webhook_problem(&self, kind: &str, hosts: &[&str], template: &str) -> Option<String> {
        let (scheme, host, port) = match url_target(template) {
            Err(e) => return Some(e),
            Ok(UrlTarget::Templated) => return None,
            Ok(UrlTarget::Literal { scheme, host, port }) => (scheme, host, port),
        };
        let port = port.unwrap_or(if scheme == "https" { 443 } else { 80 });
        let vendor_host = hosts.contains(&host.as_str());
        if (vendor_host && scheme == "https") || self.allowed_host(&host, port).is_some() {
            return None;
        }
        Some(format!(
            "{host:?} is not a {kind} robot host ({}, HTTPS); add it to [outbound] allow_hosts to send there",
            hosts.join(", ")
        ))
    }

    /// Why an `http` action's `url` could never be sent to, if it could not.
    pub fn http_url_problem(&self, template: &str) -> Option<String> {
        match url_target(template) {
            Err(e) => Some(e),
            Ok(UrlTarget::Literal { .. }) => None,
            Ok(UrlTarget::Templated) if self.allow_hosts.is_empty() => Some(
                "the host comes from a template (event data); list the hosts it may name in [outbound] allow_hosts".into(),
            ),
            Ok(UrlTarget::Templated) => None,
        }
    }

    /// Why a local file `path` (a template) could never be read, if it could not.
    pub fn media_problem(&self, template: &str) -> Option<String> {
        let Some(dir) = &self.media_dir else {
            return Some(
                "local files are read only from [outbound] media_dir, which is not set".into(),
            );
        };
        if template.contains("{{") || template.contains("{%") {
            return None;
        }
        let path = Path::new(template);
        if path.components().any(|c| c == Component::ParentDir) {
            return Some("must not contain \"..\"".into());
        }
        (path.is_absolute() && !path.starts_with(dir)).then(|| {
            format!(
                "{template:?} is outside [outbound] media_dir {:?}",
                dir.display()
            )
        })
    }
}

/// The `image.path` / `file.path` templates of a vendor message, by their key.
pub fn media_paths(message: &serde_json::Value) -> Vec<(&'static str, &str)> {
    [
        ("image", "image.path"),
        ("file", "file.path"),
        ("msgParam", "msgParam.path"),
    ]
    .into_iter()
    .filter_map(|(kind, key)| Some((key, message.get(kind)?.get("path")?.as_str()?)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        let p = |s| HostPattern::parse(s).unwrap();
        assert!(p("hooks.example.com").matches("hooks.example.com", 443));
        assert!(!p("hooks.example.com").matches("evil.example.com", 443));
        assert!(p("*.example.com").matches("a.b.example.com", 80));
        assert!(!p("*.example.com").matches("example.com", 80));
        assert!(!p("*.example.com").matches("badexample.com", 80));
        assert!(p("127.0.0.1:8080").matches("127.0.0.1", 8080));
        assert!(!p("127.0.0.1:8080").matches("127.0.0.1", 8081));
        assert!(p("[::1]:9").matches("::1", 9) && p("::1").is_ip());
        assert!(p("10.0.0.1").is_ip() && !p("*.corp").is_ip());
        assert!(HostPattern::parse("http://x").is_err());
        assert!(HostPattern::parse("*.10.0.0.1").is_err());
    }

    #[test]
    fn url_targets() {
        let lit = |s: &str, h: &str, p| UrlTarget::Literal {
            scheme: s.into(),
            host: h.into(),
            port: p,
        };
        assert_eq!(
            url_target("https://erp.example.com/hooks/{{ kind }}"),
            Ok(lit("https", "erp.example.com", None))
        );
        assert_eq!(
            url_target("http://127.0.0.1:81?x={{ a }}"),
            Ok(lit("http", "127.0.0.1", Some(81)))
        );
        assert_eq!(url_target("{{ sessionWebhook }}"), Ok(UrlTarget::Templated));
        assert_eq!(url_target("https://{{ host }}/x"), Ok(UrlTarget::Templated));
        assert_eq!(
            url_target("https://api.example.com{{ path }}"),
            Ok(UrlTarget::Templated)
        );
        assert!(url_target("ftp://x/y").is_err());
        assert!(url_target("hooks.example.com/x").is_err());
    }

    #[test]
    fn webhooks_media_and_http_urls() {
        let o = OutboundConfig {
            media_dir: Some("/srv/media".into()),
            allow_hosts: vec![HostPattern::parse("127.0.0.1").unwrap()],
            ..OutboundConfig::default()
        };
        let d = (
            "dingtalk_robot",
            &["oapi.dingtalk.com", "api.dingtalk.com"][..],
        );
        assert_eq!(
            o.webhook_problem(
                d.0,
                d.1,
                "https://oapi.dingtalk.com/robot/send?access_token=x"
            ),
            None
        );
        assert_eq!(o.webhook_problem(d.0, d.1, "{{ sessionWebhook }}"), None);
        assert_eq!(
            o.webhook_problem(d.0, d.1, "http://127.0.0.1:9/robot/send"),
            None
        );
        assert!(
            o.webhook_problem(d.0, d.1, "https://qyapi.weixin.qq.com/cgi-bin/webhook/send")
                .unwrap()
                .contains("allow_hosts")
        );
        assert!(
            o.webhook_problem(d.0, d.1, "http://oapi.dingtalk.com/robot/send")
                .is_some()
        );
        assert_eq!(o.media_problem("/srv/media/a.png"), None);
        assert_eq!(o.media_problem("{{ file }}"), None);
        assert!(o.media_problem("/etc/passwd").is_some());
        assert!(o.media_problem("/srv/media/../../etc/passwd").is_some());
        assert!(OutboundConfig::default().media_problem("a.png").is_some());
        assert_eq!(o.http_url_problem("https://{{ host }}/"), None);
        assert!(
            OutboundConfig::default()
                .http_url_problem("{{ url }}")
                .is_some()
        );
    }
}
