//! What the gateway remembers between deliveries: vendor access tokens, the group chats
//! `group_create` made (one per connection and key) and the last slot of each scheduled rule.

use rusqlite::{OptionalExtension, params};

use super::Sqlite;
use crate::store::sql;
use crate::store::{GroupRow, StoreError};
impl Sqlite {
    pub(in crate::store) async fn schedule_known(
        &self,
        rule: &str,
        written: &str,
        latest_ms: i64,
    ) -> Result<i64, StoreError> {
        let (rule, written) = (rule.to_owned(), written.to_owned());
        let key = rule.clone();
        self.write(Box::new(move |tx| {
            tx.execute(
                sql::SCHEDULE_KNOWN.sqlite(),
                params![rule, written, latest_ms],
            )
        }))
        .await?;
        self.read(move |conn| conn.query_row(sql::SCHEDULE_LAST.sqlite(), [&key], |r| r.get(0)))
            .await
    }

    pub(in crate::store) async fn schedule_handled(
        &self,
        rule: &str,
        slot_ms: i64,
    ) -> Result<(), StoreError> {
        let rule = rule.to_owned();
        self.write(Box::new(move |tx| {
            tx.execute(sql::SCHEDULE_HANDLED.sqlite(), params![rule, slot_ms])
        }))
        .await
        .map(drop)
    }

    pub(in crate::store) async fn token(
        &self,
        key: &str,
    ) -> Result<Option<(String, i64)>, StoreError> {
        let key = key.to_owned();
        self.read(move |conn| {
            conn.query_row(sql::TOKEN.sqlite(), [&key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .await
    }

    pub(in crate::store) async fn put_token(
        &self,
        key: String,
        token: String,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        self.write(Box::new(move |tx| {
            tx.execute(sql::PUT_TOKEN.sqlite(), params![key, token, expires_at_ms])
        }))
        .await
        .map(drop)
    }

    pub(in crate::store) async fn forget_token(
        &self,
        key: String,
        token: String,
    ) -> Result<(), StoreError> {
        self.write(Box::new(move |tx| {
            tx.execute(sql::FORGET_TOKEN.sqlite(), params![key, token])
        }))
        .await
        .map(drop)
    }

    pub(in crate::store) async fn group(
        &self,
        connection: &str,
        key: &str,
    ) -> Result<Option<GroupRow>, StoreError> {
        let connection = connection.to_owned();
        let key = key.to_owned();
        self.read(move |conn| {
            conn.query_row(sql::GROUP.sqlite(), [&connection, &key], row_to_group)
                .optional()
        })
        .await
    }

    pub(in crate::store) async fn groups(&self, limit: usize) -> Result<Vec<GroupRow>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(sql::GROUPS.sqlite())?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt.query_map([limit], row_to_group)?;
            rows.collect::<Result<_, _>>()
        })
        .await
    }

    /// Records a group (chat id "" = being created); a row that has a chat id keeps it
    /// (first one wins).
    pub(in crate::store) async fn put_group(&self, g: GroupRow) -> Result<(), StoreError> {
        self.write(Box::new(move |tx| {
            tx.execute(
                sql::PUT_GROUP.sqlite(),
                params![
                    g.connection,
                    g.key,
                    g.chat_id,
                    g.open_conversation_id,
                    g.name,
                    g.created_at_ms,
                    g.updated_at_ms
                ],
            )
        }))
        .await
        .map(drop)
    }

    /// Removes a key from the registry; whether it was there.
    pub(in crate::store) async fn forget_group(
        &self,
        connection: String,
        key: String,
    ) -> Result<bool, StoreError> {
        self.write(Box::new(move |tx| {
            tx.execute(sql::FORGET_GROUP.sqlite(), params![&connection, &key])
        }))
        .await
        .map(|n| n > 0)
    }
}

pub(super) fn row_to_group(r: &rusqlite::Row<'_>) -> rusqlite::Result<GroupRow> {
    Ok(GroupRow {
        connection: r.get(0)?,
        key: r.get(1)?,
        chat_id: r.get(2)?,
        open_conversation_id: r.get(3)?,
        name: r.get(4)?,
        created_at_ms: r.get(5)?,
        updated_at_ms: r.get(6)?,
    })
}
