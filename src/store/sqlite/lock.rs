//! Named locks on a SQLite store: a SQLite file belongs to the one process whose writer
//! thread holds it (another `hookgate serve` on the same file is not supported), so the
//! process-local lock the store takes first is all there is; nothing is held in the file.

use super::Sqlite;
use crate::store::StoreError;

/// What a SQLite store holds for a named lock besides the process-local mutex: nothing.
pub struct Held;

impl Held {
    /// Always held: the process holds it for as long as it runs.
    pub async fn alive(&self) -> bool {
        true
    }
}

impl Sqlite {
    pub(in crate::store) async fn lock(&self, _name: &str) -> Result<Held, StoreError> {
        Ok(Held)
    }
}
