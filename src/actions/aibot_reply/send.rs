//! Sends a bot reply through the connection registry ([`Replies`]): queued behind other
//! replies to the same push, then WeCom's receipt.

use super::Rendered;
use crate::actions::replies::{Replies, ReplyError};
use crate::actions::{ActionError, Attempt};

impl Rendered {
    /// As `explain` shows it.
    pub fn describe(&self) -> String {
        format!(
            "{} over {:?}'s connection, req_id {}\n{}",
            self.cmd,
            self.receiver,
            self.req_id,
            serde_json::to_string_pretty(&self.body).unwrap_or_default()
        )
    }

    pub async fn send(&self, replies: &Replies, a: Attempt<'_>) -> Result<(), ActionError> {
        let mut body = self.body.clone();
        // A stream reply needs an id; one per delivery, finished unless told.
        if body["msgtype"] == "stream"
            && let Some(stream) = body.get_mut("stream").and_then(|s| s.as_object_mut())
        {
            stream
                .entry("id")
                .or_insert_with(|| format!("hookgate-{}", a.delivery_id).into());
            stream.entry("finish").or_insert(true.into());
        }
        replies
            .send(&self.receiver, self.cmd, &self.req_id, body)
            .await
            .map_err(ActionError::from)
    }
}

impl From<ReplyError> for ActionError {
    fn from(e: ReplyError) -> Self {
        match e {
            // Not this delivery's failure: it waits (no attempt spent) for a claim by the
            // replica that holds the connection.
            ReplyError::Elsewhere(_) => {
                Self::throttled(e.to_string(), std::time::Duration::from_secs(1))
            }
            e if e.transient() => Self::retryable(e.to_string()),
            e => Self::permanent(e.to_string()),
        }
    }
}
