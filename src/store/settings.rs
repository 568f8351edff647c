//! `[store]` as validated: the SQLite file and its `synchronous`, or a PostgreSQL URL with its
//! pool, lease and CA file. Pure, so `config` can hold it without the runtime; with the
//! runtime, the URL's libpq `sslmode` meanings too (`verify-ca`/`verify-full`, which the
//! driver does not know, become `require` plus the verification [`crate::tls`] does).

use std::path::PathBuf;
use std::time::Duration;

use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The SQLite file (the default store), unless `url` names a PostgreSQL database.
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// `postgres://…`: the store shared by several replicas.
    pub url: Option<Secret<String>>,
    /// PostgreSQL connections per process.
    pub pool_size: usize,
    /// How long a replica's claim on a running delivery lasts without renewal; after that
    /// another replica runs it (PostgreSQL only: one SQLite file has one process).
    pub lease: Duration,
    /// CA certificates (PEM) for TLS to PostgreSQL; else the system's.
    pub ca_file: Option<PathBuf>,
    /// Retention: what is older goes, in the background (see [`Retention`]).
    pub retention: Retention,
}

/// How long stored events and deliveries are kept; `None` keeps them for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// An event older than this goes with its deliveries once they have all finished.
    pub keep_events: Option<Duration>,
    /// An event's deliveries (their attempts, errors, kept results) go once all of them
    /// finished longer ago than this; the event stays until `keep_events`.
    pub keep_deliveries: Option<Duration>,
    /// How often the background prune runs.
    pub every: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep_events: None,
            keep_deliveries: None,
            every: Duration::from_secs(600),
        }
    }
}

impl StoreConfig {
    /// The embedded store at `path` with the defaults.
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            synchronous: Synchronous::Full,
            url: None,
            pool_size: 16,
            lease: Duration::from_secs(30),
            ca_file: None,
            retention: Retention::default(),
        }
    }

    /// `url` in place of the file.
    pub fn postgres(url: impl Into<String>) -> Self {
        Self {
            url: Some(Secret::new(url.into())),
            ..Self::sqlite("")
        }
    }
}

/// SQLite's `synchronous`: `Full` fsyncs every commit; `Normal` survives a process crash but
/// may lose the last commits on power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    Full,
    Normal,
}

#[cfg(feature = "server")]
pub use crate::tls::Verify;

#[cfg(feature = "server")]
/// The driver's config for `url` and what to verify of the server's certificate.
pub fn parse_postgres_url(
    url: &str,
    has_ca_file: bool,
) -> Result<(tokio_postgres::Config, Verify), String> {
    let mut verify = if has_ca_file {
        Verify::Full
    } else {
        Verify::Nothing
    };
    let mut text = url.to_owned();
    for (mode, v) in [("verify-full", Verify::Full), ("verify-ca", Verify::Chain)] {
        let param = format!("sslmode={mode}");
        if let Some(at) = text.find(&param) {
            text.replace_range(at..at + param.len(), "sslmode=require");
            verify = v;
        }
    }
    let config = text
        .parse::<tokio_postgres::Config>()
        .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
    Ok((config, verify))
}

#[cfg(all(test, feature = "server"))]
mod tests {
    use super::*;

    #[test]
    fn sslmodes_the_driver_lacks_become_require_plus_checks() {
        let (c, v) = parse_postgres_url("postgres://u:p@db/h?sslmode=verify-full", false).unwrap();
        assert_eq!(
            (c.get_ssl_mode(), v),
            (tokio_postgres::config::SslMode::Require, Verify::Full)
        );
        let (_, v) = parse_postgres_url("postgres://db/h?sslmode=verify-ca", true).unwrap();
        assert_eq!(v, Verify::Chain);
        assert_eq!(
            parse_postgres_url("postgres://db/h", false).unwrap().1,
            Verify::Nothing
        );
        assert_eq!(
            parse_postgres_url("postgres://db/h", true).unwrap().1,
            Verify::Full
        );
        let e = parse_postgres_url("postgres://db/h?sslmode=sometimes", false).unwrap_err();
        assert!(e.contains("not a PostgreSQL URL"), "{e}");
        assert!(!e.contains(":p@"), "{e}");
    }
}
