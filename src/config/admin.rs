//! `[admin]`: who may use the admin API and console. Basic users (bcrypt hashes as
//! `htpasswd -nB` prints them, or passwords through `${VAR}`), bearer tokens (`sha256:<hex>`
//! of the token, or the token through `${VAR}`), and which of them are operators.

use std::collections::BTreeSet;

use toml::Spanned;

use super::raw::RawAdmin;
use super::validate::Ctx;
use super::{AdminConfig, AdminToken, ServerConfig, TokenSecret};
use crate::secret::Secret;

/// Shorter plain tokens are guessable.
const MIN_TOKEN: usize = 16;

impl Ctx<'_> {
    pub(super) fn admin(
        &mut self,
        raw: &Option<Spanned<RawAdmin>>,
        server: &ServerConfig,
    ) -> AdminConfig {
        let Some(raw) = raw else {
            return AdminConfig::default();
        };
        let span = raw.span();
        let raw = raw.get_ref();
        let users = match &raw.users {
            Some(list) => self.basic_users("admin.users", list.get_ref()),
            None => Vec::new(),
        };
        let tokens = raw
            .tokens
            .as_ref()
            .map(|list| self.admin_tokens(list.get_ref()))
            .unwrap_or_default();
        let mut names = BTreeSet::new();
        for name in users
            .iter()
            .map(|u| &u.name)
            .chain(tokens.iter().map(|t| &t.name))
        {
            if !names.insert(name.clone()) {
                let message = format!("{name:?} is named twice among users and tokens");
                self.err(Some(span.clone()), "admin", message);
            }
        }
        let mut operators = BTreeSet::new();
        for op in raw.operators.iter().flat_map(|l| l.get_ref()) {
            if names.contains(op.get_ref()) {
                operators.insert(op.get_ref().clone());
            } else {
                let message = format!(
                    "{:?} is not a name in admin.users or admin.tokens",
                    op.get_ref()
                );
                self.err(Some(op.span()), "admin.operators", message);
            }
        }
        let open_on_loopback = raw.open_on_loopback.as_ref().is_some_and(|b| *b.get_ref());
        let loopback = server.admin_listen.is_some_and(|a| a.ip().is_loopback());
        if open_on_loopback && !loopback {
            let span = raw.open_on_loopback.as_ref().map(Spanned::span);
            let message = "applies only when server.admin_listen is a loopback address (127.0.0.1:…, [::1]:…)";
            self.err(span, "admin.open_on_loopback", message);
        }
        if server.admin_listen.is_none() && !names.is_empty() {
            let message = "the admin API and console are served on server.admin_listen: set it (say \"127.0.0.1:9090\")";
            self.err(Some(span), "admin", message);
        }
        AdminConfig {
            users,
            tokens,
            operators,
            open_on_loopback,
        }
    }

    /// `"name:sha256:<hex>"` or `"name:${TOKEN_VAR}"`.
    fn admin_tokens(&mut self, list: &[Spanned<String>]) -> Vec<AdminToken> {
        let key = "admin.tokens";
        let mut out = Vec::new();
        for item in list {
            let Some(text) = self.string(&Some(item.clone()), key) else {
                continue;
            };
            let secret = match text.split_once(':') {
                Some((name, rest)) if !name.is_empty() => match rest.strip_prefix("sha256:") {
                    Some(hex_digest) => match hex::decode(hex_digest.trim())
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    {
                        Some(digest) => Some((name, TokenSecret::Sha256(digest))),
                        None => {
                            self.err(Some(item.span()), key, format!("{name:?}: sha256: takes 64 hex digits (printf %s TOKEN | sha256sum)"));
                            None
                        }
                    },
                    None if rest.chars().count() >= MIN_TOKEN => {
                        Some((name, TokenSecret::Plain(Secret::new(rest.to_owned()))))
                    }
                    None => {
                        self.err(
                            Some(item.span()),
                            key,
                            format!("{name:?}: a token needs at least {MIN_TOKEN} characters"),
                        );
                        None
                    }
                },
                _ => {
                    self.err(
                        Some(item.span()),
                        key,
                        "must be \"name:sha256:<hex>\" or \"name:${TOKEN_VAR}\"",
                    );
                    None
                }
            };
            out.extend(secret.map(|(name, secret)| AdminToken {
                name: name.to_owned(),
                secret,
            }));
        }
        out
    }
}
