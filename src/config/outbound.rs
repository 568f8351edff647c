//! `[outbound]` as written → [`OutboundConfig`] (the policy itself is
//! `actions::outbound`).

use std::path::{Component, PathBuf};

use super::raw::RawOutbound;
use super::validate::Ctx;
use crate::actions::outbound::{HostPattern, OutboundConfig, ProxyConfig};

impl Ctx<'_> {
    pub(super) fn outbound(&mut self, raw: &RawOutbound) -> OutboundConfig {
        let media_dir = self
            .string(&raw.media_dir, "outbound.media_dir")
            .map(PathBuf::from);
        if let (Some(dir), Some(s)) = (&media_dir, &raw.media_dir)
            && (dir.as_os_str().is_empty() || dir.components().any(|c| c == Component::ParentDir))
        {
            self.err(
                Some(s.span()),
                "outbound.media_dir",
                "must be a directory path without \"..\"",
            );
        }
        let mut allow_hosts = Vec::new();
        if let Some(list) = &raw.allow_hosts {
            for (i, item) in list.get_ref().iter().enumerate() {
                let key = format!("outbound.allow_hosts[{i}]");
                let Some(text) = self.string(&Some(item.clone()), &key) else {
                    continue;
                };
                match HostPattern::parse(&text) {
                    Ok(p) => allow_hosts.push(p),
                    Err(e) => self.err(Some(item.span()), key, e),
                }
            }
        }
        let no_proxy = self.string(&raw.no_proxy, "outbound.no_proxy");
        let proxy = match self.string(&raw.proxy, "outbound.proxy") {
            Some(text) => match ProxyConfig::parse(&text, no_proxy) {
                Ok(p) => Some(p),
                Err(e) => {
                    let span = raw.proxy.as_ref().map(toml::Spanned::span);
                    self.err(span, "outbound.proxy", e);
                    None
                }
            },
            None => {
                if let (Some(s), None) = (&raw.no_proxy, &raw.proxy) {
                    self.err(
                        Some(s.span()),
                        "outbound.no_proxy",
                        "applies only with proxy",
                    );
                }
                None
            }
        };
        OutboundConfig {
            media_dir,
            allow_hosts,
            allow_private: raw.allow_private.as_ref().is_some_and(|b| *b.get_ref()),
            proxy,
        }
    }
}
