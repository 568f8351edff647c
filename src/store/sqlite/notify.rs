//! When the worker should look for due deliveries: woken by the writer after a commit that
//! added or re-queued some, and the earliest due time.

use crate::store::sql;
use std::sync::Arc;

use super::Sqlite;
use crate::store::StoreError;
impl Sqlite {
    pub(in crate::store) fn due_notify(&self) -> Arc<tokio::sync::Notify> {
        self.due.clone()
    }

    /// When the earliest pending delivery is due.
    pub(in crate::store) async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        self.read(move |conn| conn.query_row(sql::NEXT_DUE.sqlite(), [], |r| r.get(0)))
            .await
    }
}
