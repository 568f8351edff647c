//! How an attempt of an action failed, typed where the delivery worker decides on it: a
//! [`Disposition`] (retry with backoff, wait for a budget without spending an attempt, or
//! give up), the vendor's errcode when there is one, and the reason for the log and
//! `hookgate deliveries list`.

use std::time::Duration;

/// What the worker does with a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Try again after the backoff, or after `after` if the sink asked for longer (HTTP
    /// `Retry-After`).
    Retry { after: Option<Duration> },
    /// Not the delivery's failure: the target's rate budget or the vendor's throttle. The
    /// delivery waits this long without spending an attempt.
    Throttled(Duration),
    /// Repeating will not help: the delivery is dead.
    Permanent,
}

/// Why an action did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ActionError {
    pub disposition: Disposition,
    pub reason: String,
    /// The vendor's errcode, when the vendor answered with one.
    pub errcode: Option<i64>,
}

impl ActionError {
    fn new(disposition: Disposition, reason: impl Into<String>) -> Self {
        Self {
            disposition,
            reason: reason.into(),
            errcode: None,
        }
    }

    pub fn retryable(reason: impl Into<String>) -> Self {
        Self::new(Disposition::Retry { after: None }, reason)
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        Self::new(Disposition::Permanent, reason)
    }

    pub fn throttled(reason: impl Into<String>, wait: Duration) -> Self {
        Self::new(Disposition::Throttled(wait), reason)
    }

    /// The same error, carrying the vendor's errcode.
    pub fn with_errcode(mut self, code: i64) -> Self {
        self.errcode = Some(code);
        self
    }

    /// Whether the worker tries again (after a backoff or a throttle).
    pub fn is_retryable(&self) -> bool {
        self.disposition != Disposition::Permanent
    }
}

/// A request that got no answer, in one line: the host (never the URL: it may carry a
/// token), what failed, and every cause in the chain (`qyapi.weixin.qq.com: cannot connect:
/// tcp connect error: Connection refused (os error 111)`).
pub fn transport(e: &reqwest::Error) -> String {
    let host = e
        .url()
        .and_then(|u| {
            let host = u.host_str()?;
            Some(match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_owned(),
            })
        })
        .unwrap_or_else(|| "the server".into());
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_builder() {
        "not a valid request"
    } else if e.is_body() || e.is_decode() {
        "reading the answer"
    } else {
        "request failed"
    };
    let mut line = format!("{host}: {what}");
    push_causes(&mut line, std::error::Error::source(e));
    if line.contains("tunnel error") {
        line.push_str(" -- the egress proxy refused the tunnel: check [outbound] proxy (or the connection's proxy)");
    }
    line
}

/// `e` and each error under it, one line: `Connection error: Connection refused (os
/// error 111)`.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut line = one_line(&e.to_string());
    push_causes(&mut line, e.source());
    line
}

fn push_causes(line: &mut String, mut cause: Option<&dyn std::error::Error>) {
    let mut seen: Vec<String> = Vec::new();
    while let Some(c) = cause {
        let text = one_line(&c.to_string());
        if !text.is_empty() && !seen.contains(&text) && !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
            seen.push(text);
        }
        cause = c.source();
    }
}

/// An answer that is not the one hoped for, in one line: `HTTP 502 Bad Gateway: <the
/// page's title or the body's start>`; a 407 is the egress proxy refusing its credentials.
pub fn status_line(status: u16, reason: &str, body: &str) -> String {
    if status == 407 {
        return format!(
            "HTTP 407 {reason} from the egress proxy: check the user and password in [outbound] proxy (or the connection's proxy)"
        );
    }
    let shown = snippet(body);
    if shown.is_empty() {
        format!("HTTP {status} {reason}")
    } else {
        format!("HTTP {status} {reason}: {shown}")
    }
}

/// The most of an answer's body an error quotes.
const SNIPPET: usize = 200;

/// A body for a log line: an HTML page by its title (else its text without tags), all
/// whitespace runs one space, cut at 200 characters.
pub fn snippet(body: &str) -> String {
    let trimmed = body.trim_start();
    let head = trimmed
        .get(..512.min(trimmed.len()))
        .unwrap_or(trimmed)
        .to_ascii_lowercase();
    let looks_html = head.starts_with('<')
        && ["<html", "<!doctype html", "<head", "<body", "<title"]
            .iter()
            .any(|t| head.contains(t));
    let text = if looks_html {
        let lower = trimmed.to_ascii_lowercase();
        match (lower.find("<title>"), lower.find("</title>")) {
            (Some(a), Some(b)) if b > a + 7 => trimmed[a + 7..b].to_owned(),
            _ => strip_tags(trimmed),
        }
    } else {
        trimmed.to_owned()
    };
    let line = one_line(&text);
    if line.chars().count() > SNIPPET {
        let cut: String = line.chars().take(SNIPPET).collect();
        format!("{cut}…")
    } else {
        line
    }
}

fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// Every run of whitespace (newlines included) as one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_one_short_line_and_html_pages_their_title() {
        let page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
        assert_eq!(snippet(page), "502 Bad Gateway");
        assert_eq!(
            snippet("<html><body><h1>Oops</h1>\n<p>try\nlater</p></body></html>"),
            "Oops try later"
        );
        assert_eq!(
            snippet("{\"errcode\": 1,\n \"errmsg\": \"x\"}"),
            "{\"errcode\": 1, \"errmsg\": \"x\"}"
        );
        let long = "x".repeat(500);
        assert_eq!(snippet(&long).chars().count(), SNIPPET + 1);
        assert_eq!(
            status_line(502, "Bad Gateway", page),
            "HTTP 502 Bad Gateway: 502 Bad Gateway"
        );
        assert!(status_line(407, "Proxy Authentication Required", "").contains("[outbound] proxy"));
        assert_eq!(status_line(404, "Not Found", ""), "HTTP 404 Not Found");
    }

    /// The old line was `request: error sending request`: no host, no cause.
    #[tokio::test]
    async fn a_failed_request_names_its_host_and_cause_not_its_url() {
        crate::tls::install_provider();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let e = reqwest::Client::new()
            .get(format!("http://{addr}/hook?access_token=SECRET"))
            .send()
            .await
            .unwrap_err();
        let line = transport(&e);
        assert!(
            line.starts_with(&format!("{addr}: cannot connect: ")),
            "{line}"
        );
        assert!(
            line.contains("refused") && !line.contains("SECRET"),
            "{line}"
        );
        assert!(!line.contains('\n'), "{line}");
    }
}
