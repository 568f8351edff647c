//! Runs a `sql` action through the config's database pools; `explain` shows the statement
//! as written and each parameter's value, never the connection's URL.

use super::Rendered;
use crate::actions::ActionError;
use crate::actions::databases::Databases;

impl Rendered {
    /// As `explain` shows it: the connection, the statement, the values bound.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} via {} ({}, at most {} rows)\n{}\n",
            if self.write {
                "write"
            } else {
                "read-only query"
            },
            self.via,
            self.backend.as_str(),
            self.max_rows,
            self.query.trim()
        );
        for (name, value) in &self.values {
            s.push_str(&format!(":{name} = {value:?}\n"));
        }
        s
    }

    pub async fn send(&self, databases: &Databases) -> Result<serde_json::Value, ActionError> {
        databases.query(self).await
    }
}
