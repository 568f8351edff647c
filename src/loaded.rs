//! What one config builds for the running process: the callback receivers by path, the
//! rules, the action clients and the delivery and server settings. Built whole from a
//! validated [`Config`] and swapped whole on reload ([`Current`]), so a request or a
//! delivery runs with one config from start to end.

use std::collections::HashMap;
use std::sync::Arc;

use crate::actions::Actions;
use crate::actions::replies::Replies;
use crate::config::{Config, DeliveryConfig, Receiver, ServerConfig};
use crate::metrics::Metrics;
use crate::rules::RuleSet;
use crate::store::Store;

/// The loaded config state, swapped in one step on reload.
pub type Current = Arc<arc_swap::ArcSwap<Loaded>>;

/// Why a validated config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Actions(#[from] crate::actions::BuildError),
}

pub struct Loaded {
    /// The receivers that take callbacks, by path (stream receivers have none).
    pub receivers: HashMap<String, Receiver>,
    pub rules: RuleSet,
    pub actions: Actions,
    pub delivery: DeliveryConfig,
    pub server: ServerConfig,
    /// `[delivery] give_up_after` in ms: a delivery's retry window from when it is due.
    pub give_up_after_ms: i64,
    /// `[admin]`: who may use the admin API and console.
    pub admin: crate::config::AdminConfig,
    /// `[store] keep_events`, `keep_deliveries`: what the background prune lets go.
    pub retention: crate::store::Retention,
    /// Each receiver's `redact`: fields blanked before the event is stored or matched.
    pub redact: HashMap<String, Arc<[String]>>,
}

impl Loaded {
    /// Builds everything `config` asks for; nothing connects yet.
    pub fn build(
        config: &Config,
        store: &Store,
        metrics: &Arc<Metrics>,
        replies: &Arc<Replies>,
    ) -> Result<Self, LoadError> {
        let receivers = config
            .receivers
            .iter()
            .filter(|r| !r.is_stream())
            .map(|r| (r.path.clone(), r.clone()))
            .collect();
        Ok(Self {
            receivers,
            rules: RuleSet::new(config),
            actions: Actions::new(
                &config.connections,
                &config.outbound,
                store,
                metrics.clone(),
                replies.clone(),
            )?,
            delivery: config.delivery.clone(),
            server: config.server.clone(),
            give_up_after_ms: i64::try_from(config.delivery.give_up_after.as_millis())
                .unwrap_or(i64::MAX),
            admin: config.admin.clone(),
            retention: config.store.retention,
            redact: config
                .receivers
                .iter()
                .filter(|r| !r.redact.is_empty())
                .map(|r| (r.name.clone(), r.redact.clone().into()))
                .collect(),
        })
    }
}
