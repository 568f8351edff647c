//! `[outbound]`: where actions may read local files and which hosts event data may send to.
//! Event fields are hostile even when signed, so a robot webhook goes only to its vendor's
//! host or an allow-listed one, an `http` URL whose host comes from a template must match
//! the allow-list, and image/file paths resolve inside `media_dir`. The policy and its static
//! checks (what `hookgate check` reports) are pure; `enforce.rs` applies the same to
//! rendered values when actions send.

#[cfg(feature = "server")]
mod enforce;
mod policy;

#[cfg(feature = "server")]
pub use enforce::{Outbound, is_public, through, through_choice};
pub use policy::{
    HostPattern, OutboundConfig, ProxyChoice, ProxyConfig, UrlTarget, media_paths, url_target,
};
