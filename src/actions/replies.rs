//! The WeCom AI bot connections this process holds, by receiver: the `wecom_aibot_reply`
//! action's way onto a held connection. The stream receiver registers its connection here
//! (or marks the bot as held by another replica); a reply is queued to it and settled by
//! WeCom's receipt. Neither side imports the other: both import this.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// How long a reply waits for WeCom's receipt on the connection (the SDKs wait 5 s).
pub const RECEIPT_WAIT: Duration = Duration::from_secs(5);

/// Why a reply did not go out, or what WeCom's receipt said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// Another replica holds the bot's lock and its connection.
    #[error("another replica holds the connection of {0:?}")]
    Elsewhere(String),
    #[error("the connection of {0:?} is not up (reconnecting or stopped)")]
    NotHeld(String),
    #[error("the bot connection closed")]
    Closed,
    #[error("the bot connection closed before WeCom's receipt")]
    ClosedBeforeReceipt,
    #[error("no receipt from WeCom within {} s", .0.as_secs())]
    NoReceipt(Duration),
    /// The receipt's errcode was not 0.
    #[error("WeCom errcode {code}: {msg}{}", if *.code == 846_605 { " (the push's req_id is not valid on the bot's connection: it reconnected since, or the reply came too late)" } else { "" })]
    Refused { code: i64, msg: String },
    /// The frame could not be written to the connection.
    #[error("{cmd}: {reason}")]
    Write { cmd: &'static str, reason: String },
}

impl ReplyError {
    /// Whether sending again later may work: system busy (-1) and the frequency limit
    /// (45009) do; another refusal will not.
    pub fn transient(&self) -> bool {
        !matches!(self, Self::Refused { code, .. } if !matches!(code, -1 | 45_009))
    }
}

/// What a receipt frame's errcode means for the reply.
pub fn receipt(frame: &Value) -> Result<(), ReplyError> {
    match frame["errcode"].as_i64().unwrap_or(0) {
        0 => Ok(()),
        code => Err(ReplyError::Refused {
            code,
            msg: frame["errmsg"].as_str().unwrap_or("").to_owned(),
        }),
    }
}

/// A reply on its way to the bot connection.
pub struct Outgoing {
    pub cmd: &'static str,
    pub req_id: String,
    pub body: Value,
    /// Settled by the connection: the receipt, a timeout, or its own end.
    pub done: oneshot::Sender<Result<(), ReplyError>>,
}

/// The bot connections this process holds, by receiver.
#[derive(Default)]
pub struct Replies {
    links: Mutex<HashMap<String, Holder>>,
}

enum Holder {
    /// Connected here.
    Here(mpsc::Sender<Outgoing>),
    /// Another replica holds the bot's lock (and its connection).
    Elsewhere,
}

impl Replies {
    /// Sends `cmd` for `req_id` over `receiver`'s connection and waits for WeCom's receipt.
    pub async fn send(
        &self,
        receiver: &str,
        cmd: &'static str,
        req_id: &str,
        body: Value,
    ) -> Result<(), ReplyError> {
        let link = match self.links.lock().expect("replies lock").get(receiver) {
            Some(Holder::Here(link)) => link.clone(),
            Some(Holder::Elsewhere) => return Err(ReplyError::Elsewhere(receiver.to_owned())),
            None => return Err(ReplyError::NotHeld(receiver.to_owned())),
        };
        let (done, receipt) = oneshot::channel();
        let out = Outgoing {
            cmd,
            req_id: req_id.to_owned(),
            body,
            done,
        };
        if link.send(out).await.is_err() {
            return Err(ReplyError::Closed);
        }
        // The connection settles every reply (receipt, timeout, its own end); this bound only
        // guards against a reply queued behind many others for the same req_id.
        match tokio::time::timeout(RECEIPT_WAIT * 4, receipt).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ReplyError::ClosedBeforeReceipt),
            Err(_) => Err(ReplyError::NoReceipt(RECEIPT_WAIT * 4)),
        }
    }

    /// The connection for `receiver` is up here.
    pub fn register(&self, receiver: &str, link: mpsc::Sender<Outgoing>) {
        self.links
            .lock()
            .expect("replies lock")
            .insert(receiver.to_owned(), Holder::Here(link));
    }

    /// The connection `link` ended (a newer one for the receiver stays).
    pub fn unregister(&self, receiver: &str, link: &mpsc::Sender<Outgoing>) {
        let mut links = self.links.lock().expect("replies lock");
        if let Some(Holder::Here(l)) = links.get(receiver)
            && l.same_channel(link)
        {
            links.remove(receiver);
        }
    }

    /// Whether another replica holds `receiver`'s bot (this one waits on standby).
    pub fn standby(&self, receiver: &str, standby: bool) {
        let mut links = self.links.lock().expect("replies lock");
        if standby {
            links.insert(receiver.to_owned(), Holder::Elsewhere);
        } else if matches!(links.get(receiver), Some(Holder::Elsewhere)) {
            links.remove(receiver);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_reply_waits_on_a_standby_replica_and_fails_without_a_connection() {
        let replies = Replies::default();
        let body = json!({"msgtype": "text", "text": {"content": "x"}});
        let e = replies
            .send("bot", "aibot_respond_msg", "R", body.clone())
            .await
            .unwrap_err();
        assert_eq!(e, ReplyError::NotHeld("bot".into()));
        replies.standby("bot", true);
        let e = replies
            .send("bot", "aibot_respond_msg", "R", body.clone())
            .await
            .unwrap_err();
        assert_eq!(e, ReplyError::Elsewhere("bot".into()));

        // Connected here: the reply reaches the connection, which settles it.
        let (link, mut out) = mpsc::channel(1);
        replies.register("bot", link.clone());
        let conn = tokio::spawn(async move {
            let o: Outgoing = out.recv().await.unwrap();
            assert_eq!((o.cmd, o.req_id.as_str()), ("aibot_respond_msg", "R"));
            let _ = o.done.send(receipt(&json!({"errcode": 0})));
        });
        replies
            .send("bot", "aibot_respond_msg", "R", body)
            .await
            .unwrap();
        conn.await.unwrap();
        // A standby mark does not displace a live connection; unregistering leaves nothing.
        replies.standby("bot", false);
        assert!(matches!(
            replies.links.lock().unwrap().get("bot"),
            Some(Holder::Here(_))
        ));
        replies.unregister("bot", &link);
        assert!(replies.links.lock().unwrap().is_empty());
    }

    #[test]
    fn receipts_map_to_outcomes() {
        assert!(receipt(&json!({"errcode": 0, "errmsg": "ok"})).is_ok());
        let busy = receipt(&json!({"errcode": -1, "errmsg": "system busy"})).unwrap_err();
        assert!(busy.transient());
        let gone = receipt(&json!({"errcode": 846605, "errmsg": "invalid req_id"})).unwrap_err();
        assert!(
            !gone.transient() && gone.to_string().contains("846605"),
            "{gone}"
        );
    }
}
