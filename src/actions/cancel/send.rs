//! A `cancel` sends nothing: it was applied when its event was stored.

use super::Rendered;

impl Rendered {
    /// As `explain` shows it.
    pub fn describe(&self) -> String {
        let key = &self.key;
        if self.rules.is_empty() {
            format!("cancels every pending delivery with key {key:?}")
        } else {
            format!(
                "cancels the pending deliveries with key {key:?} of rules {:?}",
                self.rules
            )
        }
    }
}
