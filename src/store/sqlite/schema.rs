//! The SQLite schema: the steps of [`crate::store::migrations`] applied in order, each in
//! its own transaction with the `user_version` bump.

use rusqlite::{Connection, TransactionBehavior};

use crate::store::migrations::STEPS;
pub(super) enum Migration {
    TooNew(i64),
    Sql(rusqlite::Error),
}

/// Applies the missing steps of [`STEPS`], each in its own transaction with the version
/// bump; returns the version found and the version now.
pub(super) fn migrate(conn: &mut Connection) -> Result<(i64, i64), Migration> {
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(Migration::Sql)?;
    let known = STEPS.len() as i64;
    if found > known {
        return Err(Migration::TooNew(found));
    }
    for (i, step) in STEPS.iter().enumerate().skip(found as usize) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(Migration::Sql)?;
        tx.execute_batch(step.sqlite).map_err(Migration::Sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(Migration::Sql)?;
        tx.commit().map_err(Migration::Sql)?;
    }
    Ok((found, known))
}
