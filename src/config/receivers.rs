//! `[[receivers]]`: name, vendor and path, the keys each vendor takes, and per vendor the
//! credentials checked and expanded (AES keys built, stream endpoints and keepalives).

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawReceiver, S};
use super::validate::Ctx;
use super::{Credentials, MpMode, Receiver};
use crate::crypto::envelope::{AesKey, Envelope, KeyError};
use crate::crypto::feishu::FeishuKey;
use crate::event::Vendor;
use crate::secret::Secret;

/// Paths the server keeps for itself.
const RESERVED_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics"];

impl Ctx<'_> {
    pub(super) fn receiver(
        &mut self,
        prefix: &str,
        spanned: &Spanned<RawReceiver>,
    ) -> Option<Receiver> {
        let r = spanned.get_ref();
        let table = Some(spanned.span());
        let errors_before = self.errors_len();
        let name = self.receiver_name(prefix, r, &table);
        let vendor = self.receiver_vendor(prefix, r, &table)?;
        let path = self.receiver_path(prefix, r, &table, vendor);
        for (key, span) in r.vendor_keys() {
            if span.is_some() && !vendor_keys(vendor).contains(&key) {
                self.err(
                    span,
                    format!("{prefix}.{key}"),
                    format!("does not apply to vendor {vendor}"),
                );
            }
        }
        let default_window = if vendor == Vendor::DingTalkRobot {
            3600
        } else {
            300
        };
        let timestamp_window = r
            .timestamp_window
            .as_ref()
            .map_or(default_window, |s| *s.get_ref());
        let credentials = self.credentials(prefix, vendor, spanned);
        let redact = self.redact(prefix, r);
        if self.errors_len() > errors_before {
            return None;
        }
        Some(Receiver {
            name: name?,
            path: path?,
            timestamp_window,
            credentials: credentials?,
            redact,
        })
    }

    /// `redact`: field names, each blanked wherever it occurs in the event.
    fn redact(&mut self, prefix: &str, r: &RawReceiver) -> Vec<String> {
        let mut names = Vec::new();
        for name in r.redact.iter().flat_map(|list| list.get_ref()) {
            let text = name.get_ref().trim();
            if text.is_empty() || text.contains(['.', '[', ']']) {
                self.err(
                    Some(name.span()),
                    format!("{prefix}.redact"),
                    format!("{text:?} is not a field name (a name such as \"mobile\", matched at any depth)"),
                );
            } else if !names.iter().any(|n| n == text) {
                names.push(text.to_owned());
            }
        }
        names
    }

    /// `name`: letters, digits, `_`, `-`, `.`.
    fn receiver_name(
        &mut self,
        prefix: &str,
        r: &RawReceiver,
        table: &Option<Range<usize>>,
    ) -> Option<String> {
        let name = self.string(&r.name, &format!("{prefix}.name"));
        match &name {
            None if r.name.is_none() => {
                self.err(table.clone(), format!("{prefix}.name"), "missing")
            }
            Some(n)
                if n.is_empty()
                    || !n
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) =>
            {
                let span = r.name.as_ref().map(Spanned::span);
                self.err(
                    span,
                    format!("{prefix}.name"),
                    format!("{n:?} must be letters, digits, '_', '-' or '.'"),
                );
            }
            _ => {}
        }
        name
    }

    fn receiver_vendor(
        &mut self,
        prefix: &str,
        r: &RawReceiver,
        table: &Option<Range<usize>>,
    ) -> Option<Vendor> {
        let vendor_name = self.string(&r.vendor, &format!("{prefix}.vendor"));
        match vendor_name.as_deref() {
            None => {
                if r.vendor.is_none() {
                    self.err(table.clone(), format!("{prefix}.vendor"), "missing");
                }
                None
            }
            Some(v) => Vendor::parse(v).or_else(|| {
                let names: Vec<_> = Vendor::ALL.iter().map(|v| v.as_str()).collect();
                let span = r.vendor.as_ref().map(Spanned::span);
                self.err(
                    span,
                    format!("{prefix}.vendor"),
                    format!("{v:?} is not one of {}", names.join(", ")),
                );
                None
            }),
        }
    }

    /// `path`: where callbacks arrive (none for a receiver that connects out).
    fn receiver_path(
        &mut self,
        prefix: &str,
        r: &RawReceiver,
        table: &Option<Range<usize>>,
        vendor: Vendor,
    ) -> Option<String> {
        let path = if vendor.is_stream() {
            Some(String::new())
        } else {
            self.string(&r.path, &format!("{prefix}.path"))
        };
        let path_span = r.path.as_ref().map(Spanned::span);
        match &path {
            Some(_) if vendor.is_stream() && r.path.is_some() => self.err(
                path_span,
                format!("{prefix}.path"),
                format!("does not apply to vendor {vendor}: it connects out to the vendor, no callback URL"),
            ),
            Some(_) if vendor.is_stream() => {}
            None if r.path.is_none() => {
                self.err(table.clone(), format!("{prefix}.path"), "missing")
            }
            Some(p) if !p.starts_with('/') || p.contains(['?', '#', ' ']) => {
                self.err(
                    path_span,
                    format!("{prefix}.path"),
                    format!("{p:?} must start with '/' and hold no '?', '#' or spaces"),
                );
            }
            Some(p) if RESERVED_PATHS.contains(&p.as_str()) => {
                self.err(
                    path_span,
                    format!("{prefix}.path"),
                    format!("{p:?} is reserved by the server"),
                );
            }
            _ => {}
        }
        path
    }

    /// A required string key; reports it missing at the receiver's table.
    pub(super) fn required(
        &mut self,
        prefix: &str,
        key: &str,
        value: &S<String>,
        table: &Range<usize>,
        vendor: Vendor,
    ) -> Option<String> {
        if value.is_none() {
            self.err(
                Some(table.clone()),
                format!("{prefix}.{key}"),
                format!("missing (required for vendor {vendor})"),
            );
            return None;
        }
        self.string(value, &format!("{prefix}.{key}"))
    }

    fn aes_key(
        &mut self,
        prefix: &str,
        key: &str,
        value: &S<String>,
        text: &str,
    ) -> Option<AesKey> {
        AesKey::from_encoding_aes_key(text)
            .map_err(|e: KeyError| {
                let span = value.as_ref().map(Spanned::span);
                self.err(
                    span,
                    format!("{prefix}.{key}"),
                    format!("malformed EncodingAESKey ({}): {e}", KeyError::CODE),
                );
            })
            .ok()
    }

    fn envelope(
        &mut self,
        prefix: &str,
        vendor: Vendor,
        r: &RawReceiver,
        table: &Range<usize>,
    ) -> Option<Envelope> {
        let token = self.required(prefix, "token", &r.token, table, vendor);
        let key_text = self.required(
            prefix,
            "encoding_aes_key",
            &r.encoding_aes_key,
            table,
            vendor,
        );
        let receive_id = self.required(prefix, "receive_id", &r.receive_id, table, vendor);
        let key = key_text
            .and_then(|t| self.aes_key(prefix, "encoding_aes_key", &r.encoding_aes_key, &t));
        let mut keys = vec![key?];
        if let Some(prev) = self.string(
            &r.previous_encoding_aes_key,
            &format!("{prefix}.previous_encoding_aes_key"),
        ) {
            keys.push(self.aes_key(
                prefix,
                "previous_encoding_aes_key",
                &r.previous_encoding_aes_key,
                &prev,
            )?);
        }
        Some(Envelope::new(Secret::new(token?), keys, receive_id?))
    }

    fn credentials(
        &mut self,
        prefix: &str,
        vendor: Vendor,
        spanned: &Spanned<RawReceiver>,
    ) -> Option<Credentials> {
        let r = spanned.get_ref();
        let table = spanned.span();
        match vendor {
            Vendor::WeCom => {
                let suite = r.suite.as_ref().is_some_and(|s| *s.get_ref());
                Some(Credentials::WeCom {
                    envelope: self.envelope(prefix, vendor, r, &table)?,
                    suite,
                })
            }
            Vendor::WechatMp => self.wechat_mp(prefix, r, &table),
            Vendor::DingTalk => Some(Credentials::DingTalk {
                envelope: self.envelope(prefix, vendor, r, &table)?,
            }),
            Vendor::Feishu => self.feishu(prefix, r, &table),
            Vendor::DingTalkRobot => Some(Credentials::DingTalkRobot {
                app_secret: Secret::new(self.required(
                    prefix,
                    "app_secret",
                    &r.app_secret,
                    &table,
                    vendor,
                )?),
            }),
            Vendor::DingTalkStream => self.dingtalk_stream(prefix, r, &table),
            Vendor::FeishuWs => self.feishu_ws(prefix, r, &table),
            Vendor::WecomAibot => self.wecom_aibot(prefix, r, &table),
            Vendor::Webhook => self.webhook(prefix, r, &table),
            // Not in `Vendor::ALL`: no receiver is one.
            Vendor::Schedule => None,
        }
    }

    fn wechat_mp(
        &mut self,
        prefix: &str,
        r: &RawReceiver,
        table: &Range<usize>,
    ) -> Option<Credentials> {
        let vendor = Vendor::WechatMp;
        let mode = match self.string(&r.mode, &format!("{prefix}.mode")).as_deref() {
            None | Some("safe") => MpMode::Safe,
            Some("compat") => MpMode::Compat,
            Some("plaintext") => MpMode::Plaintext,
            Some(other) => {
                let span = r.mode.as_ref().map(Spanned::span);
                self.err(
                    span,
                    format!("{prefix}.mode"),
                    format!("{other:?} is not one of \"safe\", \"compat\", \"plaintext\""),
                );
                return None;
            }
        };
        let envelope = if mode == MpMode::Plaintext && r.encoding_aes_key.is_none() {
            None
        } else {
            Some(self.envelope(prefix, vendor, r, table)?)
        };
        let token = match &envelope {
            Some(e) => e.token().clone(),
            None => Secret::new(self.required(prefix, "token", &r.token, table, vendor)?),
        };
        Some(Credentials::WechatMp {
            token,
            envelope,
            mode,
        })
    }

    fn feishu(
        &mut self,
        prefix: &str,
        r: &RawReceiver,
        table: &Range<usize>,
    ) -> Option<Credentials> {
        let vendor = Vendor::Feishu;
        let token = self.required(
            prefix,
            "verification_token",
            &r.verification_token,
            table,
            vendor,
        );
        let encrypt_key = self.string(&r.encrypt_key, &format!("{prefix}.encrypt_key"));
        if encrypt_key.as_deref() == Some("") {
            let span = r.encrypt_key.as_ref().map(Spanned::span);
            self.err(
                span,
                format!("{prefix}.encrypt_key"),
                "is empty; leave the key out when the app has no Encrypt Key",
            );
            return None;
        }
        Some(Credentials::Feishu {
            verification_token: Secret::new(token?),
            encrypt_key: encrypt_key.map(|k| Box::new(FeishuKey::new(Secret::new(k)))),
        })
    }

    fn dingtalk_stream(
        &mut self,
        prefix: &str,
        r: &RawReceiver,
        table: &Range<usize>,
    ) -> Option<Credentials> {
        let vendor = Vendor::DingTalkStream;
        let client_id = self.required(prefix, "client_id", &r.client_id, table, vendor);
        let secret = self.required(prefix, "client_secret", &r.client_secret, table, vendor);
        let topics = self.stream_topics(prefix, &r.topics);
        let api_base = self.base_url(prefix, "api_base", &r.api_base, "https://api.dingtalk.com");
        let keepalive = self.keepalive(prefix, &r.keepalive);
        Some(Credentials::DingTalkStream(super::DingTalkStream {
            client_id: client_id?,
            client_secret: Secret::new(secret?),
            topics: topics?,
            api_base: api_base?,
            keepalive: keepalive?,
        }))
    }

    fn feishu_ws(
        &mut self,
        prefix: &str,
        r: &RawReceiver,
        table: &Range<usize>,
    ) -> Option<Credentials> {
        let vendor = Vendor::FeishuWs;
        let app_id = self.required(prefix, "app_id", &r.app_id, table, vendor);
        let secret = self.required(prefix, "app_secret", &r.app_secret, table, vendor);
        let default = match self
            .string(&r.domain, &format!("{prefix}.domain"))
            .as_deref()
        {
            None | Some("feishu") => "https://open.feishu.cn",
            Some("lark") => "https://open.larksuite.com",
            Some(other) => {
                let span = r.domain.as_ref().map(Spanned::span);
                self.err(
                    span,
                    format!("{prefix}.domain"),
                    format!("{other:?} is not one of \"feishu\", \"lark\""),
                );
                return None;
            }
        };
        let api_base = self.base_url(prefix, "api_base", &r.api_base, default);
        let keepalive = self.keepalive(prefix, &r.keepalive);
        Some(Credentials::FeishuWs(super::FeishuWs {
            app_id: app_id?,
            app_secret: Secret::new(secret?),
            api_base: api_base?,
            keepalive: keepalive?,
        }))
    }

    fn wecom_aibot(
        &mut self,
        prefix: &str,
        r: &RawReceiver,
        table: &Range<usize>,
    ) -> Option<Credentials> {
        let vendor = Vendor::WecomAibot;
        let bot_id = self.required(prefix, "bot_id", &r.bot_id, table, vendor);
        let secret = self.required(prefix, "secret", &r.secret, table, vendor);
        let ws_url = self.base_url(
            prefix,
            "ws_url",
            &r.ws_url,
            "wss://openws.work.weixin.qq.com",
        );
        let keepalive = self.keepalive(prefix, &r.keepalive);
        Some(Credentials::WecomAibot(super::WecomAibot {
            bot_id: bot_id?,
            secret: Secret::new(secret?),
            ws_url: ws_url?,
            keepalive: keepalive?,
        }))
    }

    /// A stream receiver's `keepalive` (default 30 s, at least 100 ms).
    fn keepalive(&mut self, prefix: &str, value: &S<String>) -> Option<Duration> {
        let Some(text) = self.string(value, &format!("{prefix}.keepalive")) else {
            return Some(Duration::from_secs(30));
        };
        let span = value.as_ref().map(Spanned::span);
        let parsed = if let Some(ms) = text.strip_suffix("ms") {
            ms.trim()
                .parse()
                .map(Duration::from_millis)
                .map_err(|_| format!("{text:?} is not a duration"))
        } else {
            super::parse_duration(&text)
        };
        match parsed {
            Ok(d) if d >= Duration::from_millis(100) => Some(d),
            Ok(_) => {
                self.err(
                    span,
                    format!("{prefix}.keepalive"),
                    "must be at least 100ms",
                );
                None
            }
            Err(e) => {
                self.err(span, format!("{prefix}.keepalive"), e);
                None
            }
        }
    }

    /// `topics` of a DingTalk Stream receiver; default events and robot messages.
    fn stream_topics(
        &mut self,
        prefix: &str,
        value: &S<Vec<String>>,
    ) -> Option<Vec<super::StreamTopic>> {
        use super::StreamTopic;
        let Some(list) = value else {
            return Some(vec![StreamTopic::Events, StreamTopic::RobotMessages]);
        };
        let mut topics = Vec::new();
        for name in list.get_ref() {
            match StreamTopic::ALL.into_iter().find(|t| t.as_str() == name) {
                Some(t) if !topics.contains(&t) => topics.push(t),
                Some(_) => {}
                None => {
                    let names: Vec<_> = StreamTopic::ALL.iter().map(|t| t.as_str()).collect();
                    self.err(
                        Some(list.span()),
                        format!("{prefix}.topics"),
                        format!("{name:?} is not one of {}", names.join(", ")),
                    );
                    return None;
                }
            }
        }
        if topics.is_empty() {
            self.err(
                Some(list.span()),
                format!("{prefix}.topics"),
                "is empty: subscribe to something",
            );
            return None;
        }
        Some(topics)
    }

    /// An http(s):// or ws(s):// base URL (tests and private deployments), or `default`.
    fn base_url(
        &mut self,
        prefix: &str,
        key: &str,
        value: &S<String>,
        default: &str,
    ) -> Option<String> {
        let Some(url) = self.string(value, &format!("{prefix}.{key}")) else {
            return Some(default.to_owned());
        };
        let schemes: &[&str] = if default.starts_with("ws") {
            &["wss://", "ws://"]
        } else {
            &["https://", "http://"]
        };
        if !schemes.iter().any(|s| url.starts_with(s)) {
            let span = value.as_ref().map(Spanned::span);
            self.err(
                span,
                format!("{prefix}.{key}"),
                format!("must start with {}", schemes.join(" or ")),
            );
            return None;
        }
        Some(url.trim_end_matches('/').to_owned())
    }
}

/// The receiver keys each vendor takes besides `name`, `vendor`, `path`.
fn vendor_keys(vendor: Vendor) -> &'static [&'static str] {
    match vendor {
        Vendor::WeCom => &[
            "token",
            "encoding_aes_key",
            "previous_encoding_aes_key",
            "receive_id",
            "suite",
        ],
        Vendor::WechatMp => &[
            "token",
            "encoding_aes_key",
            "previous_encoding_aes_key",
            "receive_id",
            "mode",
        ],
        Vendor::DingTalk => &[
            "token",
            "encoding_aes_key",
            "previous_encoding_aes_key",
            "receive_id",
        ],
        Vendor::Feishu => &["verification_token", "encrypt_key"],
        Vendor::DingTalkRobot => &["app_secret"],
        Vendor::DingTalkStream => &[
            "client_id",
            "client_secret",
            "topics",
            "api_base",
            "keepalive",
        ],
        Vendor::FeishuWs => &["app_id", "app_secret", "domain", "api_base", "keepalive"],
        Vendor::WecomAibot => &["bot_id", "secret", "ws_url", "keepalive"],
        Vendor::Schedule => &[],
        Vendor::Webhook => &[
            "auth",
            "secret",
            "secrets",
            "auth_header",
            "auth_query",
            "algorithm",
            "encoding",
            "prefix",
            "dedupe_key",
            "kind",
            "recipe",
            "timestamp",
            "reply",
            "reply_type",
            "url_check",
            "allow_ips",
            "trusted_proxies",
            "users",
        ],
    }
}
