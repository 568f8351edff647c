//! `[store]` as written → [`StoreConfig`]: the SQLite file and its `synchronous`, or a
//! PostgreSQL URL with its pool, lease and CA file; retention (`keep_events`,
//! `keep_deliveries`, `prune_every`).

use std::time::Duration;

use toml::Spanned;

use super::validate::Ctx;
use super::{Retention, StoreConfig, Synchronous};
use crate::secret::Secret;

impl Ctx<'_> {
    /// `keep_events`, `keep_deliveries`, `prune_every`. An event is its dedupe key: gone,
    /// a vendor's late retry of it would run the rules again, so events stay a day at least.
    fn retention(&mut self, raw: &super::raw::RawStore) -> Retention {
        let mut retention = Retention::default();
        let keys = [
            (
                "keep_events",
                &raw.keep_events,
                86_400,
                "1d: a vendor's late retry of a forgotten event would run the rules again",
            ),
            ("keep_deliveries", &raw.keep_deliveries, 3_600, "1h"),
            ("prune_every", &raw.prune_every, 1, "1s"),
        ];
        let mut read = [None; 3];
        for (slot, (key, value, least, least_text)) in read.iter_mut().zip(keys) {
            let name = format!("store.{key}");
            let Some(text) = self.string(value, &name) else {
                continue;
            };
            let span = value.as_ref().map(Spanned::span);
            match super::parse_duration(&text) {
                Ok(d) if d >= Duration::from_secs(least) => *slot = Some(d),
                Ok(_) => self.err(span, name, format!("must be at least {least_text}")),
                Err(e) => self.err(span, name, e),
            }
        }
        let [events, deliveries, every] = read;
        if let (Some(e), Some(d)) = (events, deliveries)
            && d > e
        {
            let span = raw.keep_deliveries.as_ref().map(Spanned::span);
            self.err(
                span,
                "store.keep_deliveries",
                "must not be longer than keep_events: deliveries go with their event",
            );
        }
        retention.keep_events = events;
        retention.keep_deliveries = deliveries;
        if let Some(every) = every {
            retention.every = every;
        }
        retention
    }

    pub(super) fn store(&mut self, raw: &super::raw::RawStore) -> StoreConfig {
        let path = self
            .string(&raw.path, "store.path")
            .unwrap_or_else(|| "var/hookgate.db".into());
        let synchronous = match self
            .string(&raw.synchronous, "store.synchronous")
            .as_deref()
        {
            None | Some("full") => Synchronous::Full,
            Some("normal") => Synchronous::Normal,
            Some(other) => {
                let span = raw.synchronous.as_ref().map(Spanned::span);
                self.err(
                    span,
                    "store.synchronous",
                    format!("{other:?} is not one of \"full\", \"normal\""),
                );
                Synchronous::Full
            }
        };
        let mut store = StoreConfig {
            synchronous,
            ..StoreConfig::sqlite(path)
        };
        if let Some(url) = self.string(&raw.url, "store.url") {
            let span = raw.url.as_ref().map(Spanned::span);
            if raw.path.is_some() {
                self.err(
                    span.clone(),
                    "store.url",
                    "set either path (SQLite) or url (PostgreSQL), not both",
                );
            }
            if raw.synchronous.is_some() {
                let s = raw.synchronous.as_ref().map(Spanned::span);
                self.err(s, "store.synchronous", "applies to SQLite only; PostgreSQL's durability is the server's synchronous_commit");
            }
            if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
                self.err(
                    span,
                    "store.url",
                    "must start with postgres:// (or postgresql://)",
                );
            } else if let Some(e) = postgres_url_problem(&url) {
                self.err(span, "store.url", e);
            }
            store.url = Some(Secret::new(url));
        } else {
            for (key, set) in [
                ("pool_size", raw.pool_size.as_ref().map(Spanned::span)),
                ("ca_file", raw.ca_file.as_ref().map(Spanned::span)),
                ("lease", raw.lease.as_ref().map(Spanned::span)),
            ] {
                if set.is_some() {
                    self.err(
                        set,
                        format!("store.{key}"),
                        "applies to a PostgreSQL store (url) only",
                    );
                }
            }
        }
        if let Some(n) = &raw.pool_size {
            match usize::try_from(*n.get_ref()) {
                Ok(n @ 1..=1000) => store.pool_size = n,
                _ => self.err(Some(n.span()), "store.pool_size", "must be 1 to 1000"),
            }
        }
        if let Some(text) = self.string(&raw.lease, "store.lease") {
            let span = raw.lease.as_ref().map(Spanned::span);
            match super::parse_duration(&text) {
                Ok(d) if d >= Duration::from_secs(1) => store.lease = d,
                Ok(_) => self.err(span, "store.lease", "must be at least 1s"),
                Err(e) => self.err(span, "store.lease", e),
            }
        }
        store.ca_file = self.string(&raw.ca_file, "store.ca_file").map(Into::into);
        store.retention = self.retention(raw);
        store
    }
}

/// What is wrong with a PostgreSQL URL (the driver's own parser, when it is built in).
#[cfg(feature = "server")]
fn postgres_url_problem(url: &str) -> Option<String> {
    super::parse_postgres_url(url, false).err()
}

#[cfg(not(feature = "server"))]
fn postgres_url_problem(_: &str) -> Option<String> {
    None
}
