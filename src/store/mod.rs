//! The durable store behind one boundary: the callback path calls [`Store::accept`] and
//! answers the vendor only after it returned `Ok`. Two backends with one behaviour: SQLite
//! (embedded, WAL, one process) and PostgreSQL (shared by replicas: claims with leases, rate
//! limits, token refreshes and group creation serialised through the database). Its
//! settings (`settings.rs`) are pure, so the config can name them without the runtime.

pub mod settings;

#[cfg(feature = "server")]
mod handle;
#[cfg(feature = "server")]
mod health;
#[cfg(feature = "server")]
mod lock;
#[cfg(feature = "server")]
mod migrations;
#[cfg(all(test, feature = "server"))]
mod model;
#[cfg(feature = "server")]
mod postgres;
#[cfg(feature = "server")]
mod sql;
#[cfg(feature = "server")]
mod sqlite;
#[cfg(all(test, feature = "server"))]
mod tests;
#[cfg(feature = "server")]
mod types;

pub use settings::{Retention, StoreConfig, Synchronous};

#[cfg(feature = "server")]
pub use handle::Store;
#[cfg(feature = "server")]
pub use health::Health;
#[cfg(feature = "server")]
pub use lock::StoreLock;
#[cfg(feature = "server")]
pub use types::{
    AuditRow, Backlog, Cancel, ClaimedDelivery, DeliveryFilter, DeliveryRow, DeliveryStatus,
    GroupRow, ListFilter, NewDelivery, Outcome, PruneStep, PruneWhat, Pruned, Queued, Replayed,
    RequeueTarget, SignUse, StoreError, Stored, StoredEvent,
};
