//! What the gateway remembers between deliveries: vendor access tokens, the group chats
//! `group_create` made (one per connection and key) and the last slot of each scheduled rule,
//! shared by every replica.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{Postgres, db_error};
use crate::store::sql;
use crate::store::{GroupRow, StoreError};
impl Postgres {
    pub(in crate::store) async fn schedule_known(
        &self,
        rule: &str,
        written: &str,
        latest_ms: i64,
    ) -> Result<i64, StoreError> {
        let client = self.client().await?;
        client
            .execute(
                sql::SCHEDULE_KNOWN.postgres(),
                &[&rule, &written, &latest_ms],
            )
            .await
            .map_err(db_error)?;
        let row = client
            .query_one(sql::SCHEDULE_LAST.postgres(), &[&rule])
            .await
            .map_err(db_error)?;
        Ok(row.get(0))
    }

    pub(in crate::store) async fn schedule_handled(
        &self,
        rule: &str,
        slot_ms: i64,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(sql::SCHEDULE_HANDLED.postgres(), &[&rule, &slot_ms])
            .await
            .map_err(db_error)
            .map(drop)
    }

    pub(in crate::store) async fn token(
        &self,
        key: &str,
    ) -> Result<Option<(String, i64)>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(sql::TOKEN.postgres(), &[&key])
            .await
            .map_err(db_error)?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    pub(in crate::store) async fn put_token(
        &self,
        key: String,
        token: String,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(sql::PUT_TOKEN.postgres(), &[&key, &token, &expires_at_ms])
            .await
            .map_err(db_error)
            .map(drop)
    }

    pub(in crate::store) async fn forget_token(
        &self,
        key: String,
        token: String,
    ) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(sql::FORGET_TOKEN.postgres(), &[&key, &token])
            .await
            .map_err(db_error)
            .map(drop)
    }

    pub(in crate::store) async fn group(
        &self,
        connection: &str,
        key: &str,
    ) -> Result<Option<GroupRow>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(sql::GROUP.postgres(), &[&connection, &key])
            .await
            .map_err(db_error)?;
        Ok(row.as_ref().map(row_to_group))
    }

    pub(in crate::store) async fn groups(&self, limit: usize) -> Result<Vec<GroupRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .client()
            .await?
            .query(sql::GROUPS.postgres(), &[&limit])
            .await
            .map_err(db_error)?;
        Ok(rows.iter().map(row_to_group).collect())
    }

    /// Records a group (chat id "" = being created); a row that has a chat id keeps it
    /// (first one wins).
    pub(in crate::store) async fn put_group(&self, g: GroupRow) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                sql::PUT_GROUP.postgres(),
                &[
                    &g.connection,
                    &g.key,
                    &g.chat_id,
                    &g.open_conversation_id,
                    &g.name,
                    &g.created_at_ms,
                    &g.updated_at_ms,
                ],
            )
            .await
            .map_err(db_error)
            .map(drop)
    }

    /// Removes a key from the registry; whether it was there.
    pub(in crate::store) async fn forget_group(
        &self,
        connection: String,
        key: String,
    ) -> Result<bool, StoreError> {
        self.client()
            .await?
            .execute(sql::FORGET_GROUP.postgres(), &[&connection, &key])
            .await
            .map_err(db_error)
            .map(|n| n > 0)
    }
}

pub(super) fn row_to_group(r: &Row) -> GroupRow {
    GroupRow {
        connection: r.get(0),
        key: r.get(1),
        chat_id: r.get(2),
        open_conversation_id: r.get(3),
        name: r.get(4),
        created_at_ms: r.get(5),
        updated_at_ms: r.get(6),
    }
}
