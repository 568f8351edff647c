//! `vendor = "webhook"` receivers as written → [`Webhook`]: which proof of origin a request
//! must carry (`auth`), with which secrets (several: rotation), where, and the `kind` and
//! `dedupe_key` templates.

use std::ops::Range;

use toml::Spanned;

use super::raw::{RawReceiver, S};
use super::validate::Ctx;
use super::{AuthAt, BasicUser, Credentials, Password, Recipe, Webhook, WebhookAuth};
use crate::crypto::webhook::{Algorithm, Encoding, standard_secret};
use crate::secret::Secret;

const AUTHS: &str = "none, basic, token, hmac, recipe, standard_webhooks";

impl Ctx<'_> {
    pub(super) fn webhook(
        &mut self,
        prefix: &str,
        r: &RawReceiver,
        table: &Range<usize>,
    ) -> Option<Credentials> {
        let key = format!("{prefix}.auth");
        let auth = match self.string(&r.auth, &key).as_deref() {
            None => {
                if r.auth.is_none() {
                    self.err(
                        Some(table.clone()),
                        key,
                        format!("missing (one of {AUTHS}; \"none\" only on a trusted network)"),
                    );
                }
                None
            }
            Some("none") => Some(WebhookAuth::None),
            Some("basic") => self.basic_auth(prefix, r, table),
            Some("token") => self.token_auth(prefix, r, table),
            Some("hmac") => self.hmac_auth(prefix, r, table),
            Some("recipe") => self.recipe_auth(prefix, r, table),
            Some("standard_webhooks") => self.standard_auth(prefix, r, table),
            Some(other) => {
                let span = r.auth.as_ref().map(Spanned::span);
                self.err(span, key, format!("{other:?} is not one of {AUTHS}"));
                None
            }
        };
        if !matches!(auth, Some(WebhookAuth::Recipe(_)) | None) {
            for (key, value) in [("recipe", &r.recipe), ("timestamp", &r.timestamp)] {
                if let Some(v) = value {
                    let message = "applies only to auth = \"recipe\"";
                    self.err(Some(v.span()), format!("{prefix}.{key}"), message);
                }
            }
        }
        if let (Some(users), false) = (
            &r.users,
            matches!(auth, Some(WebhookAuth::Basic { .. }) | None),
        ) {
            let message = "applies only to auth = \"basic\"";
            self.err(Some(users.span()), format!("{prefix}.users"), message);
        }
        let kind = self.check().template(&format!("{prefix}.kind"), &r.kind);
        let dedupe_key = self
            .check()
            .template(&format!("{prefix}.dedupe_key"), &r.dedupe_key);
        let reply = self.check().template(&format!("{prefix}.reply"), &r.reply);
        let url_check = self
            .check()
            .template(&format!("{prefix}.url_check"), &r.url_check);
        let key = format!("{prefix}.reply_type");
        let reply_json = match self.string(&r.reply_type, &key).as_deref() {
            None | Some("json") => true,
            Some("text") => false,
            Some(other) => {
                let span = r.reply_type.as_ref().map(Spanned::span);
                self.err(span, key, format!("{other:?} is not one of json, text"));
                true
            }
        };
        let allow_ips = self.networks(&format!("{prefix}.allow_ips"), &r.allow_ips);
        let trusted_proxies =
            self.networks(&format!("{prefix}.trusted_proxies"), &r.trusted_proxies);
        Some(Credentials::Webhook(Box::new(Webhook {
            auth: auth?,
            kind,
            dedupe_key,
            reply,
            reply_json,
            url_check,
            allow_ips,
            trusted_proxies,
        })))
    }

    /// Addresses and CIDR networks (`10.0.0.0/8`, `203.0.113.7`, `2001:db8::/32`).
    fn networks(&mut self, key: &str, raw: &S<Vec<Spanned<String>>>) -> Vec<ipnet::IpNet> {
        let mut out = Vec::new();
        for item in raw
            .as_ref()
            .map(|l| l.get_ref().as_slice())
            .unwrap_or_default()
        {
            let Some(text) = self.string(&Some(item.clone()), key) else {
                continue;
            };
            let text = text.trim();
            let parsed = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(n) => out.push(n),
                Err(_) => self.err(
                    Some(item.span()),
                    key,
                    format!("{text:?} is not an IP address or a CIDR network"),
                ),
            }
        }
        out
    }

    /// `users = ["name:password", …]`: passwords through `${VAR}`, or bcrypt hashes as
    /// `htpasswd -nB name` prints them.
    fn basic_auth(
        &mut self,
        prefix: &str,
        r: &RawReceiver,
        table: &Range<usize>,
    ) -> Option<WebhookAuth> {
        let key = format!("{prefix}.users");
        let Some(list) = &r.users else {
            let message = "missing (users = [\"name:${PASSWORD_VAR}\"])";
            self.err(Some(table.clone()), key, message);
            return None;
        };
        let users = self.basic_users(&key, list.get_ref());
        if users.is_empty() {
            return None;
        }
        Some(WebhookAuth::Basic { users })
    }

    /// `"name:password"` entries: the password through `${VAR}`, or a bcrypt hash as
    /// `htpasswd -nB name` prints it (`$apr1$` and `{SHA}` are refused by name).
    pub(super) fn basic_users(&mut self, key: &str, list: &[Spanned<String>]) -> Vec<BasicUser> {
        let mut users = Vec::new();
        for item in list {
            let Some(text) = self.string(&Some(item.clone()), key) else {
                continue;
            };
            match text.split_once(':') {
                Some((name, pw)) if !name.is_empty() && pw.starts_with("$2") => {
                    match pw.parse::<bcrypt::HashParts>() {
                        Ok(_) => users.push(BasicUser {
                            name: name.to_owned(),
                            password: Password::Bcrypt(pw.to_owned()),
                        }),
                        Err(e) => {
                            let message = format!("{name:?}: not a bcrypt hash ({e})");
                            self.err(Some(item.span()), key, message);
                        }
                    }
                }
                Some((_, pw)) if pw.starts_with("$apr1$") || pw.starts_with("{SHA}") => {
                    let message = "only bcrypt password hashes are taken (htpasswd -nB name), or the password through ${VAR}";
                    self.err(Some(item.span()), key, message);
                }
                Some((name, pw)) if !name.is_empty() && !pw.is_empty() => {
                    users.push(BasicUser {
                        name: name.to_owned(),
                        password: Password::Plain(Secret::new(pw.to_owned())),
                    });
                }
                _ => self.err(Some(item.span()), key, "must be \"name:password\""),
            }
        }
        users
    }

    /// `secret` and/or `secrets`: at least one, none empty.
    fn webhook_secrets(
        &mut self,
        prefix: &str,
        r: &RawReceiver,
        table: &Range<usize>,
    ) -> Option<Vec<String>> {
        let mut out = Vec::new();
        let mut ok = true;
        let listed = r.secrets.as_ref().map(|s| s.get_ref().as_slice());
        let one = r.secret.iter();
        for (i, s) in one.chain(listed.unwrap_or_default()).enumerate() {
            let key = if i == 0 && r.secret.is_some() {
                format!("{prefix}.secret")
            } else {
                format!("{prefix}.secrets")
            };
            match self.string(&Some(s.clone()), &key) {
                Some(v) if !v.is_empty() => out.push(v),
                Some(_) => {
                    self.err(Some(s.span()), key, "is empty");
                    ok = false;
                }
                None => ok = false,
            }
        }
        if out.is_empty() && ok {
            self.err(
                Some(table.clone()),
                format!("{prefix}.secrets"),
                "missing (secret = \"…\" or secrets = [\"…\", \"…\"] while rotating)",
            );
        }
        (ok && !out.is_empty()).then_some(out)
    }

    /// `auth_header` or `auth_query`, exactly one.
    fn auth_at(&mut self, prefix: &str, r: &RawReceiver, table: &Range<usize>) -> Option<AuthAt> {
        let header = self.string(&r.auth_header, &format!("{prefix}.auth_header"));
        let query = self.string(&r.auth_query, &format!("{prefix}.auth_query"));
        match (header, query) {
            (Some(h), None) if !h.trim().is_empty() => {
                Some(AuthAt::Header(h.trim().to_ascii_lowercase()))
            }
            (None, Some(q)) if !q.trim().is_empty() => Some(AuthAt::Query(q.trim().to_owned())),
            (Some(_), Some(_)) => {
                let span = r.auth_query.as_ref().map(Spanned::span);
                let key = format!("{prefix}.auth_query");
                self.err(span, key, "give auth_header or auth_query, not both");
                None
            }
            _ => {
                let key = format!("{prefix}.auth_header");
                let message =
                    "missing (the header, or auth_query: the query parameter, that carries it)";
                self.err(Some(table.clone()), key, message);
                None
            }
        }
    }

    fn token_auth(
        &mut self,
        prefix: &str,
        r: &RawReceiver,
        table: &Range<usize>,
    ) -> Option<WebhookAuth> {
        let at = self.auth_at(prefix, r, table);
        let prefix_text = self.string(&r.prefix, &format!("{prefix}.prefix"));
        let secrets = self.webhook_secrets(prefix, r, table);
        Some(WebhookAuth::Token {
            at: at?,
            prefix: prefix_text.unwrap_or_default(),
            secrets: secrets?.into_iter().map(Secret::new).collect(),
        })
    }

    /// `algorithm` (default sha256) and `encoding` (default hex).
    fn digest_of(
        &mut self,
        prefix: &str,
        r: &RawReceiver,
    ) -> (Option<Algorithm>, Option<Encoding>) {
        let key = format!("{prefix}.algorithm");
        let algorithm = match self.string(&r.algorithm, &key) {
            None => Some(Algorithm::Sha256),
            Some(a) => Algorithm::parse(&a).or_else(|| {
                let span = r.algorithm.as_ref().map(Spanned::span);
                self.err(
                    span,
                    key,
                    format!("{a:?} is not one of sha256, sha1, sha512, md5"),
                );
                None
            }),
        };
        let key = format!("{prefix}.encoding");
        let encoding = match self.string(&r.encoding, &key) {
            None => Some(Encoding::Hex),
            Some(e) => Encoding::parse(&e).or_else(|| {
                let span = r.encoding.as_ref().map(Spanned::span);
                self.err(span, key, format!("{e:?} is not one of hex, base64"));
                None
            }),
        };
        (algorithm, encoding)
    }

    /// `recipe`: what is digested, a template over `body`, `headers`, `query`, `secret`;
    /// `timestamp`: a template for the time the request claims, checked against
    /// `timestamp_window`.
    fn recipe_auth(
        &mut self,
        prefix: &str,
        r: &RawReceiver,
        table: &Range<usize>,
    ) -> Option<WebhookAuth> {
        let at = self.auth_at(prefix, r, table);
        let prefix_text = self.string(&r.prefix, &format!("{prefix}.prefix"));
        let (algorithm, encoding) = self.digest_of(prefix, r);
        let key = format!("{prefix}.recipe");
        if r.recipe.is_none() {
            let message = "missing (what is digested, e.g. \"{{ query.nonce }}:{{ body }}:{{ secret }}:{{ query.timestamp }}\")";
            self.err(Some(table.clone()), &key, message);
        }
        let recipe = self.check().template(&key, &r.recipe);
        let timestamp = self
            .check()
            .template(&format!("{prefix}.timestamp"), &r.timestamp);
        let secrets = self.webhook_secrets(prefix, r, table);
        let timezone = self.timezone();
        Some(WebhookAuth::Recipe(Box::new(Recipe {
            at: at?,
            prefix: prefix_text.unwrap_or_default(),
            recipe: recipe?,
            algorithm: algorithm?,
            encoding: encoding?,
            timestamp,
            timezone,
            secrets: secrets?.into_iter().map(Secret::new).collect(),
        })))
    }

    fn hmac_auth(
        &mut self,
        prefix: &str,
        r: &RawReceiver,
        table: &Range<usize>,
    ) -> Option<WebhookAuth> {
        let at = self.auth_at(prefix, r, table);
        let prefix_text = self.string(&r.prefix, &format!("{prefix}.prefix"));
        let (algorithm, encoding) = self.digest_of(prefix, r);
        let secrets = self.webhook_secrets(prefix, r, table);
        Some(WebhookAuth::Hmac {
            at: at?,
            prefix: prefix_text.unwrap_or_default(),
            algorithm: algorithm?,
            encoding: encoding?,
            secrets: secrets?.into_iter().map(Secret::new).collect(),
        })
    }

    /// Standard Webhooks: the headers are the spec's; the secrets `whsec_<base64>`.
    fn standard_auth(
        &mut self,
        prefix: &str,
        r: &RawReceiver,
        table: &Range<usize>,
    ) -> Option<WebhookAuth> {
        for (key, span) in [
            ("auth_header", &r.auth_header),
            ("auth_query", &r.auth_query),
            ("algorithm", &r.algorithm),
            ("encoding", &r.encoding),
            ("prefix", &r.prefix),
        ] {
            if let Some(s) = span {
                let message = "does not apply to auth = \"standard_webhooks\" (the spec fixes it)";
                self.err(Some(s.span()), format!("{prefix}.{key}"), message);
            }
        }
        let mut keys = Vec::new();
        for text in self.webhook_secrets(prefix, r, table)? {
            match standard_secret(&text) {
                Ok(k) => keys.push(Secret::new(k)),
                Err(e) => {
                    let span = r.secrets.as_ref().map(Spanned::span);
                    let span = span.or_else(|| r.secret.as_ref().map(Spanned::span));
                    self.err(span, format!("{prefix}.secrets"), e);
                    return None;
                }
            }
        }
        Some(WebhookAuth::StandardWebhooks { keys })
    }
}
