//! A `log` line, with the delivery's rule, receiver and id as fields.

use super::Rendered;
use crate::actions::Attempt;

impl Rendered {
    /// As `explain` shows it.
    pub fn describe(&self) -> String {
        format!("level: {}\nmessage: {}", self.level, self.message)
    }

    pub fn send(&self, a: Attempt<'_>) {
        let message = &self.message;
        macro_rules! at {
            ($lvl:ident) => {
                tracing::$lvl!(rule = %a.rule, receiver = %a.receiver, delivery = a.delivery_id, "{message}")
            };
        }
        match self.level {
            tracing::Level::ERROR => at!(error),
            tracing::Level::WARN => at!(warn),
            tracing::Level::DEBUG => at!(debug),
            tracing::Level::TRACE => at!(trace),
            _ => at!(info),
        }
    }
}
