//! Judging a probe's reply: first what the HTTP status says about the path to hookgate (a
//! redirect, the proxy's own 404 or 502, hookgate's refusal with the vendor code), then
//! whether the body is exactly what the vendor needs.

use serde_json::Value;

use super::{Expect, Probe};
use crate::clock::now_ms;
use crate::config::{Credentials, Receiver};
use crate::crypto::Freshness;
use crate::crypto::envelope::Signed;

/// How one probe went: `ok` and a one-line verdict.
#[derive(Debug)]
pub struct Verdict {
    pub ok: bool,
    pub line: String,
    /// The request never reached an HTTP answer because the server's TLS certificate is
    /// not trusted here: not something the proxy between does to the request.
    pub untrusted: bool,
}

impl Verdict {
    pub(super) fn bad(line: String) -> Self {
        Self {
            ok: false,
            line,
            untrusted: false,
        }
    }

    fn good(line: String) -> Self {
        Self {
            ok: true,
            line,
            untrusted: false,
        }
    }
}

/// What came back.
pub(super) struct Reply {
    pub status: u16,
    pub location: String,
    pub body: Vec<u8>,
    /// How long it took.
    pub ms: u128,
    /// hookgate's `x-hookgate-outcome`: `accepted`, `duplicate`, `url_check`.
    pub outcome: Option<String>,
}

impl Reply {
    pub(super) fn judge(&self, receiver: &Receiver, probe: &Probe) -> Verdict {
        if let Some(verdict) = self.by_status(receiver, probe) {
            return verdict;
        }
        match self.body_matches(receiver, &probe.expect) {
            Ok(()) if self.outcome.as_deref() == Some("duplicate") => Verdict::good(format!(
                "OK: {} answered exactly as the vendor expects ({} ms), but hookgate had stored this event before: a duplicate, so nothing was stored and no rule ran. --fresh sends it with new ids",
                probe.what, self.ms
            )),
            Ok(()) => Verdict::good(format!(
                "OK: {} answered exactly as the vendor expects ({} ms)",
                probe.what, self.ms
            )),
            Err(e) => Verdict::bad(e),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The verdict when the status alone decides it (anything but a 200 to look into).
    fn by_status(&self, receiver: &Receiver, probe: &Probe) -> Option<Verdict> {
        let (status, text, ms) = (self.status, self.text(), self.ms);
        let from_hookgate =
            text.starts_with("rejected") || text.starts_with("hookgate:") || text == "not found\n";
        let bad = |line: String| Some(Verdict::bad(line));
        match (status, &probe.expect) {
            (301 | 302 | 303 | 307 | 308, _) => bad(format!(
                "redirected ({status}) to {:?}: vendors do not follow redirects; give the vendor the final URL",
                self.location
            )),
            (404, _) if text == "not found\n" => bad(format!(
                "hookgate answered 404: the request reached it but not on {:?}; the proxy rewrites the path (a prefix?) or the receiver's path differs",
                receiver.path
            )),
            (404, _) => {
                bad("404 from the proxy, not hookgate: this path is not routed to hookgate".into())
            }
            (502..=504, _) if !from_hookgate => bad(format!(
                "HTTP {status} from the proxy: it cannot reach hookgate (upstream address or hookgate down)"
            )),
            (403, Expect::Refused(code))
                if code.map_or(text.starts_with("rejected"), |c| {
                    text.starts_with(&format!("rejected ({c})"))
                }) =>
            {
                Some(Verdict::good(format!(
                    "OK: {} reached hookgate's {} receiver and was refused as it must be ({ms} ms)",
                    probe.what, receiver.name
                )))
            }
            (400..=499, _) if text.starts_with("rejected") => bad(refusal(status, &text)),
            (200, _) => None,
            _ => bad(format!(
                "HTTP {status}: {}",
                crate::actions::error::snippet(&text)
            )),
        }
    }

    /// Whether a 200's body is what the vendor needs, and if not, why.
    fn body_matches(&self, receiver: &Receiver, expect: &Expect) -> Result<(), String> {
        let text = self.text();
        match expect {
            Expect::Exact(want) if self.body == *want => Ok(()),
            Expect::Exact(want) => Err(format!(
                "the reply is not what the vendor needs: got {:?} ({} bytes), want {:?} exactly (no quotes, BOM, newline or wrapping)",
                text.chars().take(120).collect::<String>(),
                self.body.len(),
                String::from_utf8_lossy(want)
            )),
            Expect::DingTalkSuccess => dingtalk_success(receiver, &self.body),
            Expect::Challenge(c) => match serde_json::from_slice::<Value>(&self.body) {
                Ok(v) if v["challenge"] == c.as_str() => Ok(()),
                _ => Err(format!(
                    "the reply must be {{\"challenge\":\"{c}\"}}; got {:?}",
                    text.chars().take(120).collect::<String>()
                )),
            },
            Expect::Ok => Ok(()),
            Expect::Refused(Some(code)) => Err(format!(
                "a wrongly signed robot message was accepted (200), want 403 with {code}"
            )),
            Expect::Refused(None) => Err(
                "an unsigned request was accepted (200), want 403: check the receiver's auth"
                    .into(),
            ),
        }
    }
}

/// hookgate's refusal, diagnosed from the vendor code it tells (its log line has the reason).
fn refusal(status: u16, text: &str) -> String {
    let why = text.trim_end();
    let hint = if why.ends_with("(-40001)") || why.ends_with("(900005)") {
        "signature mismatch: the query string or body changed on the way (a proxy re-encoding echostr: + / = must arrive as %2B %2F %3D and be decoded once), or the token differs from the vendor console's"
    } else if ["(-40007)", "(-40008)", "(-40010)", "(900008)", "(900009)"]
        .iter()
        .any(|c| why.ends_with(c))
    {
        "the body does not decrypt: encoding_aes_key differs from the console's EncodingAESKey (aes_key)"
    } else if why.ends_with("(-40005)") || why.ends_with("(900010)") {
        "receive id mismatch: receive_id is not the id this app's messages are sealed for (CorpID / AppID / AppKey / SuiteKey)"
    } else if status == 403 {
        "the signature, token or timestamp did not pass (a clock more than the window apart?); hookgate's log line for this request says which"
    } else {
        "see hookgate's log line for this request"
    };
    format!("hookgate refused it with HTTP {status}: {why} -- {hint}")
}

/// The reply DingTalk needs: the map, signed, decrypting to "success".
fn dingtalk_success(receiver: &Receiver, body: &[u8]) -> Result<(), String> {
    let Credentials::DingTalk { envelope } = &receiver.credentials else {
        return Err("not a DingTalk receiver".into());
    };
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        format!(
            "the reply must be the encrypted success map; got {:?}",
            String::from_utf8_lossy(body)
                .chars()
                .take(120)
                .collect::<String>()
        )
    })?;
    let (Some(sig), Some(ts), Some(nonce), Some(encrypt)) = (
        v["msg_signature"].as_str(),
        v["timeStamp"].as_str(),
        v["nonce"].as_str(),
        v["encrypt"].as_str(),
    ) else {
        return Err("the reply map lacks msg_signature, timeStamp, nonce or encrypt".into());
    };
    let signed = Signed {
        timestamp: ts,
        nonce,
        signature: sig,
    };
    let fresh = Freshness {
        now_ms: now_ms(),
        window_secs: 0,
    };
    let opened = envelope
        .open(&signed, encrypt, fresh)
        .map_err(|e| format!("the reply does not open: {e}"))?;
    if opened.into_inner().message == b"success" {
        Ok(())
    } else {
        Err("the reply decrypts to something other than \"success\"".into())
    }
}
