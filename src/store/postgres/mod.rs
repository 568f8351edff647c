//! PostgreSQL backend, for several replicas on one database. Accepts are group-committed: a
//! few writer tasks each take every callback queued and store them with one `unnest` insert
//! per table in one transaction (unique (receiver, dedupe_key) makes a retry that lands on
//! another replica a duplicate). Claims use `FOR UPDATE SKIP LOCKED` and a lease that the
//! owner renews; a replica that stops renewing loses its claims to the others. Rate limits and
//! named locks go through the database, so they hold across replicas. A replica that commits
//! new deliveries says so on a NOTIFY channel every replica LISTENs to, so idle workers
//! elsewhere pick the work up at once instead of at their next poll. The same file set as
//! `sqlite/`, by concern: `schema`, `accept`, `deliveries`, `registry`, `rate`, `read`,
//! `notify`, `lock`, `operator`, `retention`.

/// Advisory lock keys are per database; the name is qualified by the schema (the store), so
/// two hookgate installations in one database do not serialise each other's locks.
macro_rules! lock_key {
    ($name:literal) => {
        concat!(
            "hashtextextended(coalesce(current_schema(), '') || ':' || ",
            $name,
            ", 0)"
        )
    };
}

mod accept;
mod deliveries;
pub(super) mod lock;
mod notify;
mod operator;
mod rate;
mod read;
mod registry;
mod retention;
mod schema;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::error::SqlState;

use crate::store::StoreConfig;
use crate::store::StoreError;
use accept::{AcceptOp, write_loop};
use notify::{Announcer, due_channel, listen};
use schema::migrate;

/// An open failure with its causes: "TLS handshake" alone does not say the certificate was
/// refused.
fn opening(shown: &str, e: &(dyn std::error::Error + Send + Sync + 'static)) -> StoreError {
    StoreError::Open {
        path: shown.to_owned(),
        source: Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(causes(e))),
    }
}

/// What a URL leaves unsaid: our application name, a connect timeout, TCP keepalives.
fn defaults(pg: &mut tokio_postgres::Config) {
    if pg.get_application_name().is_none() {
        pg.application_name("hookgate");
    }
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(CONNECT_TIMEOUT);
    }
    pg.keepalives_idle(Duration::from_secs(30));
}

/// The connection pool; every wait on it is bounded by [`CONNECT_TIMEOUT`].
fn pool(
    pg: &tokio_postgres::Config,
    tls: &tokio_postgres_rustls::MakeRustlsConnect,
    size: usize,
) -> Result<Pool, deadpool_postgres::BuildError> {
    let manager = Manager::from_config(
        pg.clone(),
        tls.clone(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
}

/// Brings the schema up to date; the schema versions and the schema the store lives in.
/// Failures other than a schema from the future go through `open_error`.
async fn prepare(
    pool: &Pool,
    open_error: impl Fn(Box<dyn std::error::Error + Send + Sync>) -> StoreError,
) -> Result<((i64, i64), String), StoreError> {
    let mut client = pool.get().await.map_err(|e| open_error(e.into()))?;
    let versions = migrate(&mut client).await.map_err(|e| match e {
        e @ StoreError::TooNew { .. } => e,
        other => open_error(other.into()),
    })?;
    let schema: String = client
        .query_one("SELECT coalesce(current_schema(), '')", &[])
        .await
        .map_err(|e| open_error(e.into()))?
        .get(0);
    Ok((versions, schema))
}

impl Postgres {
    pub(in crate::store) async fn open(
        url: &str,
        config: &StoreConfig,
        health: Arc<crate::store::Health>,
    ) -> Result<Self, StoreError> {
        let (mut pg, verify) =
            crate::store::settings::parse_postgres_url(url, config.ca_file.is_some()).map_err(
                |e| StoreError::Open {
                    path: "store.url".into(),
                    source: Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(e)),
                },
            )?;
        let shown = describe(&pg);
        let open_error = |e: Box<dyn std::error::Error + Send + Sync>| opening(&shown, &*e);
        defaults(&mut pg);
        let tls = crate::tls::client(verify, config.ca_file.as_deref())
            .map(tokio_postgres_rustls::MakeRustlsConnect::new)
            .map_err(|e| open_error(e.into()))?;
        let pool = pool(&pg, &tls, config.pool_size).map_err(|e| open_error(e.into()))?;
        let (versions, schema) = prepare(&pool, open_error).await?;
        let (accepts, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let due = Arc::new(tokio::sync::Notify::new());
        let channel = due_channel(&schema);
        let announcer = Arc::new(Announcer {
            pool: pool.clone(),
            channel: channel.clone(),
            running: false.into(),
            dirty: false.into(),
        });
        for _ in 0..WRITERS {
            tokio::spawn(write_loop(
                pool.clone(),
                rx.clone(),
                due.clone(),
                announcer.clone(),
                health.clone(),
            ));
        }
        let (listening, stop) = oneshot::channel();
        tokio::spawn(listen(pg, tls, channel, due.clone(), stop));
        let owner = format!(
            "{}-{}-{:08x}",
            hostname(),
            std::process::id(),
            rand::random::<u32>()
        );
        tracing::info!(database = %shown, replica = %owner, schema = versions.1, "PostgreSQL store ready.");
        Ok(Self {
            pool,
            shown,
            owner,
            lease_ms: i64::try_from(config.lease.as_millis()).unwrap_or(i64::MAX / 4),
            versions,
            accepts,
            due,
            announcer,
            _listening: listening,
        })
    }

    pub(in crate::store) fn schema_versions(&self) -> (i64, i64) {
        self.versions
    }

    pub(in crate::store) fn location(&self) -> String {
        self.shown.clone()
    }

    pub(in crate::store) fn maintain_every(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.lease_ms / 3).unwrap_or(1000).max(200))
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(unavailable)
    }

    /// The database answers and takes writes (a standby after a failover does not).
    pub(in crate::store) async fn ping(&self) -> Result<(), StoreError> {
        let row = self
            .client()
            .await?
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(db_error)?;
        if row.get::<_, bool>(0) {
            return Err(StoreError::Unavailable(Arc::from(Box::<
                dyn std::error::Error + Send + Sync,
            >::from(
                "the database is a read-only standby".to_owned(),
            ))));
        }
        Ok(())
    }
}

/// Most callbacks one transaction takes.
const MAX_BATCH: usize = 256;

/// Callbacks waiting for a writer before `accept` itself waits (backpressure).
const QUEUE: usize = 4096;

/// Transactions storing callbacks at once, per process (2 measured best on 2 cores: bigger
/// batches, fewer commits).
const WRITERS: usize = 2;

/// A callback answered 503 rather than waiting longer for the database: vendors give up
/// after about 5 s and retry.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(3);

/// Connecting, and waiting for a pooled connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A batch that lost a deadlock or serialization race runs again this many times.
const RETRIES: usize = 3;

pub(super) struct Postgres {
    pool: Pool,
    /// host:port/dbname, for logs.
    shown: String,
    /// This process, in `claimed_by`: a claim is renewed and finished only by its owner.
    owner: String,
    lease_ms: i64,
    versions: (i64, i64),
    accepts: mpsc::Sender<AcceptOp>,
    due: Arc<tokio::sync::Notify>,
    announcer: Arc<Announcer>,
    /// Dropped with the store: ends its LISTEN connection.
    _listening: oneshot::Sender<()>,
}

/// A statement prepared once per connection.
async fn cached(
    client: &deadpool_postgres::Object,
    sql: &str,
) -> Result<tokio_postgres::Statement, StoreError> {
    client.prepare_cached(sql).await.map_err(db_error)
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(Arc::new(e))
}

/// A driver error: the connection's (retryable) or the query's.
fn db_error(e: tokio_postgres::Error) -> StoreError {
    if is_connection(&e) {
        unavailable(e)
    } else {
        StoreError::Query(Arc::new(e))
    }
}

/// The connection failed (closed, I/O), as opposed to the server refusing a statement.
fn is_connection(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || std::error::Error::source(e)
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
}

fn is_race(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

/// An error and its sources, `: `-separated.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text = format!("{text}: {s_text}");
        }
        next = s.source();
    }
    text
}

/// host:port/dbname, never the password.
fn describe(pg: &tokio_postgres::Config) -> String {
    let host = match pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{host}:{port}/{}",
        pg.get_dbname().unwrap_or("postgres")
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "hookgate".into())
}
