//! `[outbound]` enforced on rendered values, where event data has had its say: robot webhooks
//! only to the vendor's hosts or allow-listed ones, `http` URLs whose host came from a
//! template only to allow-listed hosts, and such confined destinations never on loopback,
//! private or link-local addresses (checked after DNS, by the client's own resolver) unless
//! allowed. Local files only from `media_dir`: regular files, no `..`, no symlink out, read
//! with a cap however large the file claims to be.

use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};

use tokio::io::AsyncReadExt;

use super::policy::{OutboundConfig, ProxyChoice, ProxyConfig};
use crate::actions::error::ActionError;

/// The checks, and the client for destinations they confine.
pub struct Outbound {
    config: OutboundConfig,
    /// Resolves names to public addresses only (unless `allow_private`), so a host cannot
    /// resolve (or rebind) its way onto the internal network.
    confined: reqwest::Client,
    /// Requests go through a proxy, which resolves the names: they are checked here first.
    proxied: bool,
}

/// `builder` sending through `proxy` (its `no_proxy` hosts directly); with none, the
/// standard `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` variables apply, as in curl.
pub fn through(
    builder: reqwest::ClientBuilder,
    proxy: Option<&ProxyConfig>,
) -> reqwest::Result<reqwest::ClientBuilder> {
    let Some(p) = proxy else {
        return Ok(builder);
    };
    let mut proxy = reqwest::Proxy::all(p.url.expose().as_str())?;
    if let Some(hosts) = &p.no_proxy {
        proxy = proxy.no_proxy(reqwest::NoProxy::from_string(hosts));
    }
    Ok(builder.proxy(proxy))
}

/// A vendor app connection's client builder: the global proxy, its own, or none at all.
pub fn through_choice(
    builder: reqwest::ClientBuilder,
    global: Option<&ProxyConfig>,
    choice: &ProxyChoice,
) -> reqwest::Result<reqwest::ClientBuilder> {
    match choice {
        ProxyChoice::Global => through(builder, global),
        ProxyChoice::Direct => Ok(builder.no_proxy()),
        ProxyChoice::Own(p) => through(builder, Some(p)),
    }
}

/// The hosts of the proxies in use: the configured one, else those the standard variables
/// name. Their addresses may be private (the company's egress proxy usually is).
fn proxy_hosts(config: &OutboundConfig) -> Vec<String> {
    if let Some(p) = &config.proxy {
        return vec![p.host.clone()];
    }
    [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .filter_map(|v| std::env::var(v).ok())
    .filter_map(|u| ProxyConfig::parse(&u, None).ok())
    .map(|p| p.host)
    .collect()
}

impl Outbound {
    pub fn new(config: &OutboundConfig, builder: reqwest::ClientBuilder) -> reqwest::Result<Self> {
        let proxies = proxy_hosts(config);
        let builder = through(builder, config.proxy.as_ref())?;
        let builder = if config.allow_private {
            builder
        } else {
            builder.dns_resolver(PublicOnly {
                proxies: proxies.clone(),
            })
        };
        Ok(Self {
            config: config.clone(),
            confined: builder.build()?,
            proxied: !proxies.is_empty(),
        })
    }

    /// Through a proxy, the proxy resolves the destination's name, past [`PublicOnly`]: a
    /// name that resolves here to a non-public address is refused first. One that does not
    /// resolve here (a network that resolves outside names only at the proxy) is left to
    /// the proxy.
    async fn vet_name(&self, url: &url::Url) -> Result<(), ActionError> {
        let Some(url::Host::Domain(host)) = url.host() else {
            return Ok(());
        };
        if !self.proxied || self.config.allow_private {
            return Ok(());
        }
        let Ok(addrs) = tokio::net::lookup_host((host, 0)).await else {
            return Ok(());
        };
        if let Some(private) = addrs.map(|a| a.ip()).find(|ip| !is_public(*ip)) {
            return Err(ActionError::permanent(format!(
                "{host} resolves to {private}, a loopback, private or link-local address; set [outbound] allow_private or list the address in allow_hosts"
            )));
        }
        Ok(())
    }

    /// A rendered robot webhook, and the client to send it with.
    /// `kind` names the robot, `hosts` are its vendor's own (HTTPS only).
    pub async fn robot(
        &self,
        kind: &str,
        hosts: &[&str],
        webhook: &str,
    ) -> Result<(url::Url, &reqwest::Client), ActionError> {
        let url = parse(webhook, "webhook")?;
        let (host, port) = host_port(&url)?;
        let vendor_host = hosts.contains(&host.as_str()) && url.scheme() == "https";
        let pattern = self.config.allowed_host(&host, port);
        if !vendor_host && pattern.is_none() {
            return Err(ActionError::permanent(format!(
                "webhook host {host:?} is not a {kind} robot host ({}) nor in [outbound] allow_hosts; not sent",
                hosts.join(", ")
            )));
        }
        self.destination(&url, &host, pattern.is_some_and(|p| p.is_ip()))?;
        if !vendor_host {
            self.vet_name(&url).await?;
        }
        Ok((url, &self.confined))
    }

    /// A rendered `http` URL whose host came from a template: allow-listed hosts only.
    pub async fn http<'a>(
        &'a self,
        url: &str,
        host_from_template: bool,
        plain: &'a reqwest::Client,
    ) -> Result<&'a reqwest::Client, ActionError> {
        let parsed = parse(url, "url")?;
        if !host_from_template {
            return Ok(plain);
        }
        let (host, port) = host_port(&parsed)?;
        let Some(pattern) = self.config.allowed_host(&host, port) else {
            return Err(ActionError::permanent(format!(
                "url host {host:?} came from event data and is not in [outbound] allow_hosts; not sent"
            )));
        };
        self.destination(&parsed, &host, pattern.is_ip())?;
        self.vet_name(&parsed).await?;
        Ok(&self.confined)
    }

    /// An IP literal must be public unless allowed; names are checked by [`PublicOnly`].
    fn destination(&self, url: &url::Url, host: &str, named_ip: bool) -> Result<(), ActionError> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            _ => return Ok(()),
        };
        if self.config.allow_private || named_ip || is_public(ip) {
            return Ok(());
        }
        Err(ActionError::permanent(format!(
            "{host} is a loopback, private or link-local address; set [outbound] allow_private or list the address in allow_hosts"
        )))
    }

    /// Reads a local file named by a rendered `path`: inside `media_dir` only, a regular file,
    /// at most `max` bytes. Returns the path (for the upload's file name) and the bytes.
    pub async fn read_media(
        &self,
        rendered: &str,
        max: u64,
    ) -> Result<(PathBuf, Vec<u8>), ActionError> {
        let refuse = |why: String| ActionError::permanent(format!("path {rendered:?}: {why}"));
        let Some(dir) = &self.config.media_dir else {
            return Err(refuse("[outbound] media_dir is not set".into()));
        };
        let given = Path::new(rendered);
        if rendered.is_empty() || given.components().any(|c| c == Component::ParentDir) {
            return Err(refuse("empty or holds \"..\"".into()));
        }
        let root = tokio::fs::canonicalize(dir)
            .await
            .map_err(|e| refuse(format!("media_dir {}: {e}", dir.display())))?;
        let joined = if given.is_absolute() {
            given.to_owned()
        } else {
            root.join(given)
        };
        // Symlinks resolved: the file itself must lie inside media_dir.
        let real = tokio::fs::canonicalize(&joined)
            .await
            .map_err(|e| refuse(e.to_string()))?;
        if !real.starts_with(&root) {
            return Err(refuse(format!("outside media_dir {}", dir.display())));
        }
        // Not a FIFO or device: opening one could block or never end.
        let meta = tokio::fs::metadata(&real)
            .await
            .map_err(|e| refuse(e.to_string()))?;
        if !meta.is_file() {
            return Err(refuse("not a regular file".into()));
        }
        let file = tokio::fs::File::open(&real)
            .await
            .map_err(|e| refuse(e.to_string()))?;
        let mut bytes = Vec::new();
        // The size on disk may lie (procfs, a growing file): the read itself is capped.
        file.take(max + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| refuse(e.to_string()))?;
        if bytes.len() as u64 > max {
            return Err(refuse(format!(
                "larger than the {max} bytes the vendor takes"
            )));
        }
        Ok((real, bytes))
    }
}

fn parse(text: &str, what: &str) -> Result<url::Url, ActionError> {
    let url = url::Url::parse(text)
        .map_err(|e| ActionError::permanent(format!("{what} is not a URL: {e}")))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(ActionError::permanent(format!(
            "{what}: scheme {other:?}, must be http or https"
        ))),
    }
}

fn host_port(url: &url::Url) -> Result<(String, u16), ActionError> {
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(ActionError::permanent("the URL has no host")),
    };
    Ok((host, url.port_or_known_default().unwrap_or(443)))
}

/// Whether an address is on the public internet (not loopback, private, link-local, CGNAT,
/// multicast, documentation or otherwise reserved; IPv4-mapped IPv6 judged as IPv4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || (first == 0x0064 && v6.segments()[1] == 0xff9b))
        }
    }
}

/// A resolver that drops every non-public address of a name, and fails when none is left;
/// the proxies' own names resolve as they are.
struct PublicOnly {
    proxies: Vec<String>,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let proxy = self.proxies.iter().any(|p| p.eq_ignore_ascii_case(&host));
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if proxy {
                return Ok(Box::new(all.into_iter()) as reqwest::dns::Addrs);
            }
            let public: Vec<SocketAddr> = all.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves only to loopback, private or link-local addresses (set [outbound] allow_private to allow them)"
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::policy::HostPattern;
    use super::*;

    const DING: (&str, &[&str]) = ("dingtalk_robot", &["oapi.dingtalk.com", "api.dingtalk.com"]);

    fn outbound(media: Option<&Path>, hosts: &[&str]) -> Outbound {
        crate::tls::install_provider();
        let config = OutboundConfig {
            media_dir: media.map(Path::to_owned),
            allow_hosts: hosts
                .iter()
                .map(|h| HostPattern::parse(h).unwrap())
                .collect(),
            ..OutboundConfig::default()
        };
        Outbound::new(&config, reqwest::Client::builder()).unwrap()
    }

    #[test]
    fn public_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["1.1.1.1", "203.119.1.1", "2400:3200::1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn robot_webhooks_and_event_chosen_hosts() {
        let o = outbound(None, &["127.0.0.1", "*.corp.example.com"]);
        assert!(
            o.robot(
                DING.0,
                DING.1,
                "https://oapi.dingtalk.com/robot/send?access_token=x"
            )
            .await
            .is_ok()
        );
        assert!(
            o.robot(DING.0, DING.1, "http://127.0.0.1:9/robot/send")
                .await
                .is_ok(),
            "an allow-listed IP"
        );
        let e = o
            .robot(DING.0, DING.1, "http://10.0.0.8/x")
            .await
            .unwrap_err();
        assert!(e.reason.contains("allow_hosts") && !e.is_retryable(), "{e}");
        assert!(
            o.robot(DING.0, DING.1, "http://oapi.dingtalk.com/robot/send")
                .await
                .is_err(),
            "HTTPS only"
        );
        assert!(o.robot(DING.0, DING.1, "file:///etc/passwd").await.is_err());
        let plain = reqwest::Client::new();
        assert!(
            o.http("http://10.0.0.8/x", false, &plain).await.is_ok(),
            "the config chose it"
        );
        assert!(o.http("http://10.0.0.8/x", true, &plain).await.is_err());
        assert!(
            o.http("https://a.corp.example.com/x", true, &plain)
                .await
                .is_ok()
        );
        // Security review, defect 10: a malformed URL's error carried its access_token.
        let e = o
            .robot(
                DING.0,
                DING.1,
                "https://oapi.ding talk.com/robot/send?access_token=SECRET",
            )
            .await
            .unwrap_err();
        assert!(!e.reason.contains("SECRET"), "{e}");
        let e = o
            .http("https://{x}/?access_token=SECRET", true, &plain)
            .await
            .unwrap_err();
        assert!(!e.reason.contains("SECRET"), "{e}");
        // A listed name passes here; where it resolves is checked when it is resolved.
        let named = outbound(None, &["hooks.example.com:8080"]);
        assert!(
            named
                .http("http://hooks.example.com:8080/", true, &plain)
                .await
                .is_ok()
        );
        assert!(
            named
                .http("http://hooks.example.com:8081/", true, &plain)
                .await
                .is_err()
        );
    }

    /// Through a proxy the proxy resolves names: one that resolves here to a private
    /// address is refused before it is sent; one that does not resolve here is left to it.
    #[tokio::test]
    async fn through_a_proxy_names_are_checked_before_sending() {
        crate::tls::install_provider();
        let config = OutboundConfig {
            allow_hosts: ["localhost", "nowhere.invalid"]
                .iter()
                .map(|h| HostPattern::parse(h).unwrap())
                .collect(),
            proxy: Some(ProxyConfig::parse("http://u:p@127.0.0.1:9", None).unwrap()),
            ..OutboundConfig::default()
        };
        let o = Outbound::new(&config, reqwest::Client::builder()).unwrap();
        let plain = reqwest::Client::new();
        let e = o
            .http("http://localhost/x", true, &plain)
            .await
            .unwrap_err();
        assert!(e.reason.contains("resolves to") && !e.is_retryable(), "{e}");
        assert!(
            o.http("http://nowhere.invalid/x", true, &plain)
                .await
                .is_ok()
        );
    }

    /// Security review, defects 2 and 3: a templated path read /proc/self/environ and
    /// /dev/zero took 2 GB.
    #[tokio::test]
    async fn media_stays_in_its_directory_and_is_read_with_a_cap() {
        let dir = tempfile::tempdir().unwrap();
        let media = dir.path().join("media");
        std::fs::create_dir(&media).unwrap();
        std::fs::write(media.join("ok.png"), b"png").unwrap();
        std::fs::write(dir.path().join("secret.txt"), b"s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), media.join("link")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", media.join("zero")).unwrap();
        std::fs::write(media.join("big"), vec![0u8; 100]).unwrap();
        let o = outbound(Some(&media), &[]);
        assert_eq!(o.read_media("ok.png", 10).await.unwrap().1, b"png");
        let abs = media.join("ok.png");
        assert!(o.read_media(abs.to_str().unwrap(), 10).await.is_ok());
        for bad in [
            "../secret.txt",
            "/proc/self/environ",
            "link",
            "zero",
            "",
            "/dev/zero",
        ] {
            let e = o.read_media(bad, 10).await.unwrap_err();
            assert!(!e.is_retryable(), "{bad}: {e}");
        }
        assert!(
            o.read_media("big", 10)
                .await
                .unwrap_err()
                .reason
                .contains("larger")
        );
        assert!(outbound(None, &[]).read_media("ok.png", 10).await.is_err());
    }
}
