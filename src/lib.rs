//! hookgate: a webhook callback gateway for WeCom, WeChat MP, DingTalk and Feishu/Lark.
//!
//! The modules, in the order an event travels through them (`ARCHITECTURE.md` has the map):
//!
//! - `app` (feature `server`): the composition root that `serve` and the tests start.
//! - [`config`]: the TOML file, `${VAR}` substitution and validation into a [`config::Config`].
//! - `server` (feature `server`): the hyper service; routes a path to its receiver, enforces
//!   body limits and timeouts, answers only after the event is committed.
//! - [`ingress`]: one file per vendor; reads a request, verifies and decrypts it through
//!   [`crypto`], decides the vendor-exact reply and yields a verified [`event::Event`].
//! - [`crypto`]: pure signature and AES schemes over bytes.
//! - [`event`]: decrypted XML/JSON → `Event` (kind, dedupe key, fields).
//! - `stream` (feature `server`): receivers that connect out (DingTalk Stream, Feishu long
//!   connection, WeCom AI bots) and feed the same intake.
//! - `intake` (feature `server`): the one way an event becomes durable: the rules plan its
//!   deliveries, the store commits them with it.
//! - [`rules`]: which events fire which actions; [`template`] the Jinja environment that
//!   renders them; [`time`] the times and durations rules write.
//! - `store` (feature `server`): the durable store behind one boundary (SQLite or PostgreSQL).
//! - `delivery` (feature `server`): the worker that runs stored deliveries with retries.
//! - [`actions`]: one folder per action kind (keys, validated spec, render; with the
//!   `server` feature, sending), each failure typed for the worker.
//! - `cli` (feature `server`): the `hookgate` command line.

/// mimalloc for the binary, its tests and benches alike (they run the same app): glibc's
/// malloc took about a fifth of the CPU under load (#19). Not in the `server`-less build
/// (`fuzz/` brings its own).
#[cfg(feature = "server")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod actions;
pub mod config;
pub mod crypto;
pub mod event;
pub mod ingress;
pub mod rules;
pub mod schedule;
pub mod secret;
pub mod store;
pub mod template;
pub mod time;

#[cfg(feature = "server")]
pub mod admin;
#[cfg(feature = "server")]
pub mod app;
#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "server")]
pub mod clock;
#[cfg(feature = "server")]
pub mod delivery;
#[cfg(feature = "server")]
pub mod intake;
#[cfg(feature = "server")]
pub mod loaded;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod operate;
#[cfg(feature = "server")]
pub mod retention;
#[cfg(feature = "server")]
pub mod scheduler;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod simulate;
#[cfg(feature = "server")]
pub mod stream;
#[cfg(feature = "server")]
pub mod tls;
