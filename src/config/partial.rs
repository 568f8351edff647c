//! What the commands that only read the store need from a config file: `[store]` and
//! `[delivery] give_up_after`, with only their own `${VAR}`s filled. The rest of the file is
//! not validated, so `hookgate events list` runs without the receivers' secrets.

use serde::Deserialize;
use toml::de::DeTable;

use super::raw::{RawDelivery, RawStore};
use super::validate::Ctx;
use super::{ConfigError, StoreConfig};

/// `[store]`, and how long a retried delivery may keep failing.
#[derive(Debug, Clone)]
pub struct StoreOnly {
    pub store: StoreConfig,
    pub give_up_after: std::time::Duration,
}

#[derive(Debug, Default, Deserialize)]
struct Partial {
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    delivery: RawDelivery,
}

/// Validates only `[store]` and `[delivery]` of a config file's text.
pub fn parse_store(
    src: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<StoreOnly, Vec<ConfigError>> {
    let mut ctx = Ctx::new(src, lookup);
    let doc = DeTable::parse(src).map_err(|e| vec![ctx.toml_error(&e)])?;
    let raw: Partial =
        serde_ignored::deserialize(toml::de::Deserializer::from(doc.clone()), |_| {})
            .map_err(|e| vec![ctx.value_error(&e, &doc)])?;
    let store = ctx.store(&raw.store);
    let delivery = ctx.delivery(&raw.delivery);
    if ctx.errors.is_empty() {
        Ok(StoreOnly {
            store,
            give_up_after: delivery.give_up_after,
        })
    } else {
        Err(std::mem::take(&mut ctx.errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_store_and_delivery_are_read_and_their_variables_filled() {
        let src = r#"
[server]
listen = "${UNSET_LISTEN}"
[store]
path = "${DIR}/h.db"
[delivery]
give_up_after = 60
[[receivers]]
name = "x"
vendor = "wecom"
token = "${UNSET_SECRET}"
"#;
        let lookup = |n: &str| (n == "DIR").then(|| "/data".to_owned());
        let only = parse_store(src, &lookup).unwrap();
        assert_eq!(only.store.path, std::path::PathBuf::from("/data/h.db"));
        assert_eq!(only.give_up_after.as_secs(), 60);
        // The full config needs the secrets.
        assert!(super::super::parse(src, &lookup).is_err());
        let bad = parse_store("[store]\npath = \"${NOPE}\"\n", &lookup).unwrap_err();
        assert!(bad[0].to_string().contains("NOPE"), "{bad:?}");
    }
}
