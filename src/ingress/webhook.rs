//! `vendor = "webhook"`: a signed POST from any system. The proof of origin (`auth`) is
//! checked over the body's exact bytes before anything else, and every failure of it is one
//! answer (403, the detail only in the log). The body (JSON, form-encoded or XML) becomes the
//! event's fields; a form is stored as the JSON object of its fields, a JSON value that is
//! not an object as `{"body": …}`. The receiver's `kind` and `dedupe_key` templates see the
//! fields, `headers` and `query` (without what carried the proof); answered `{"ok":true}`.

use minijinja::Value as Jinja;
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value, json};

use super::{Accepted, Method, Query, Reply, Request, event, require_post};
use crate::config::{AuthAt, Receiver, Webhook, WebhookAuth};
use crate::crypto::webhook::{
    StandardError, digest, encoded_matches, hmac_matches, standard_verify, token_matches,
};
use crate::crypto::{OpenError, Verified};
use crate::event::Event;
use crate::template::Template;

/// Headers that carry credentials: never shown to templates.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "webhook-signature",
];

pub(super) fn open(
    receiver: &Receiver,
    w: &Webhook,
    req: &Request<'_>,
) -> Result<Accepted, OpenError> {
    let query = Query::parse(req.query);
    if req.method == Method::Get && w.url_check.is_some() {
        verify(receiver, &w.auth, req, &query).map_err(OpenError::unauthenticated)?;
        let ctx = context(&Map::new(), &w.auth, req, &query);
        return Ok(Accepted {
            reply: reply(receiver, w, w.url_check.as_ref(), &ctx),
            event: None,
        });
    }
    require_post(req)?;
    verify(receiver, &w.auth, req, &query).map_err(OpenError::unauthenticated)?;
    let raw = normalize(req.headers.get("content-type"), req.body)?;
    // Checked by `verify` (or, with `auth = "none"`, accepted as configured).
    let event = event(receiver, Verified::new(raw), req.now_ms)?;
    let ctx = (w.kind.is_some() || w.dedupe_key.is_some() || w.reply.is_some())
        .then(|| context(event.fields(), &w.auth, req, &query));
    let event = retag(event, w, req, ctx.as_ref())?;
    let reply = match &ctx {
        Some(ctx) => reply(receiver, w, w.reply.as_ref(), ctx),
        None => Reply::json(&json!({ "ok": true })),
    };
    Ok(Accepted {
        reply,
        event: Some(event),
    })
}

/// The receiver's `reply` (or `url_check`) rendered; `{"ok":true}` without one, or when it
/// fails (logged).
fn reply(receiver: &Receiver, w: &Webhook, template: Option<&Template>, ctx: &Jinja) -> Reply {
    let Some(t) = template else {
        return Reply::json(&json!({ "ok": true }));
    };
    match t.render(ctx) {
        Ok(text) => Reply {
            status: 200,
            content_type: if w.reply_json {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            },
            body: text.into_bytes(),
        },
        Err(e) => {
            tracing::warn!(receiver = %receiver.name, error = %e, "The webhook's reply template failed; answered {{\"ok\":true}}.");
            Reply::json(&json!({ "ok": true }))
        }
    }
}

/// The proof of origin `auth` asks for.
fn verify(
    receiver: &Receiver,
    auth: &WebhookAuth,
    req: &Request<'_>,
    query: &Query<'_>,
) -> Result<(), OpenError> {
    let carried = |at: &AuthAt| match at {
        AuthAt::Header(h) => req.headers.get(h),
        AuthAt::Query(q) => query.get(q),
    };
    match auth {
        WebhookAuth::None => Ok(()),
        WebhookAuth::Token {
            at,
            prefix,
            secrets,
        } => {
            let given = carried(at).ok_or(OpenError::Missing("token"))?;
            let given = strip_prefix(given.trim(), prefix).ok_or(OpenError::BadToken)?;
            let secrets: Vec<&[u8]> = secrets.iter().map(|s| s.expose().as_bytes()).collect();
            token_matches(&secrets, given)
                .then_some(())
                .ok_or(OpenError::BadToken)
        }
        WebhookAuth::Hmac {
            at,
            prefix,
            algorithm,
            encoding,
            secrets,
        } => {
            let given = carried(at).ok_or(OpenError::Missing("signature"))?;
            let given = strip_prefix(given.trim(), prefix).ok_or(OpenError::BadSignature)?;
            let secrets: Vec<&[u8]> = secrets.iter().map(|s| s.expose().as_bytes()).collect();
            hmac_matches(*algorithm, *encoding, &secrets, &[req.body], given, "")
                .then_some(())
                .ok_or(OpenError::BadSignature)
        }
        WebhookAuth::Recipe { at, prefix, .. } => {
            let given = carried(at).ok_or(OpenError::Missing("signature"))?;
            let given = strip_prefix(given.trim(), prefix).ok_or(OpenError::BadSignature)?;
            recipe_matches(receiver, auth, req, query, given)
        }
        WebhookAuth::StandardWebhooks { keys } => {
            let header = |name: &'static str| req.headers.get(name).ok_or(OpenError::Missing(name));
            let (id, ts, sig) = (
                header("webhook-id")?,
                header("webhook-timestamp")?,
                header("webhook-signature")?,
            );
            let keys: Vec<&[u8]> = keys.iter().map(|k| k.expose().as_slice()).collect();
            let window = i64::try_from(receiver.timestamp_window).unwrap_or(i64::MAX);
            let window = if window == 0 { i64::MAX } else { window };
            standard_verify(&keys, id, ts, sig, req.body, req.now_ms / 1000, window).map_err(|e| {
                match e {
                    StandardError::OutsideTolerance(..) | StandardError::BadTimestamp(_) => {
                        OpenError::StaleTimestamp {
                            timestamp: ts.chars().take(40).collect(),
                            window_secs: receiver.timestamp_window,
                        }
                    }
                    StandardError::NoMatch => OpenError::BadSignature,
                }
            })
        }
    }
}

/// A signature recipe: the claimed time within the window, then the recipe rendered with
/// each secret, digested, compared with `given`.
fn recipe_matches(
    receiver: &Receiver,
    auth: &WebhookAuth,
    req: &Request<'_>,
    query: &Query<'_>,
    given: &str,
) -> Result<(), OpenError> {
    let WebhookAuth::Recipe {
        recipe,
        algorithm,
        encoding,
        timestamp,
        timezone,
        secrets,
        ..
    } = auth
    else {
        return Err(OpenError::BadSignature);
    };
    let headers: Map<String, Value> = req
        .headers
        .all()
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let params: Map<String, Value> = query
        .pairs()
        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
        .collect();
    let mut ctx = Map::new();
    ctx.insert("body".into(), String::from_utf8_lossy(req.body).into());
    ctx.insert("headers".into(), Value::Object(headers));
    ctx.insert("query".into(), Value::Object(params));
    if let Some(t) = timestamp {
        let claimed = t
            .render(&Jinja::from(minijinja::value::Serde(&ctx)))
            .unwrap_or_default();
        let stale = || OpenError::StaleTimestamp {
            timestamp: claimed.chars().take(40).collect(),
            window_secs: receiver.timestamp_window,
        };
        let at = crate::time::parse_time(&claimed, timezone).ok_or_else(stale)?;
        let skew_ms = (req.now_ms - at.as_millisecond()).unsigned_abs();
        let window = receiver.timestamp_window;
        if window > 0 && skew_ms > window.saturating_mul(1000) {
            return Err(stale());
        }
    }
    for secret in secrets {
        ctx.insert("secret".into(), secret.expose().as_str().into());
        let Ok(text) = recipe.render(&Jinja::from(minijinja::value::Serde(&ctx))) else {
            continue;
        };
        if encoded_matches(&digest(*algorithm, text.as_bytes()), *encoding, given) {
            return Ok(());
        }
    }
    Err(OpenError::BadSignature)
}

/// `Bearer abc` → `abc` for prefix `Bearer ` (the prefix's case does not matter).
fn strip_prefix<'a>(given: &'a str, prefix: &str) -> Option<&'a str> {
    let head = given.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| given[prefix.len()..].trim_start())
}

/// The body as the store keeps it: JSON object or XML text.
fn normalize(content_type: Option<&str>, body: &[u8]) -> Result<String, OpenError> {
    let text = std::str::from_utf8(body).map_err(|_| OpenError::NotUtf8)?;
    let trimmed = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    let form = content_type.is_some_and(|c| {
        c.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    if form {
        return Ok(Value::Object(form_fields(trimmed)).to_string());
    }
    if trimmed.is_empty() {
        return Ok("{}".to_owned());
    }
    if trimmed.starts_with('<') {
        return Ok(trimmed.to_owned());
    }
    match serde_json::from_str::<Value>(trimmed) {
        Ok(Value::Object(_)) => Ok(trimmed.to_owned()),
        Ok(other) => Ok(json!({ "body": other }).to_string()),
        Err(e) => Err(OpenError::malformed("body", e)),
    }
}

/// `a=1&b=x+y&a=2` → `{"a": ["1", "2"], "b": "x y"}`.
fn form_fields(text: &str) -> Map<String, Value> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_decode_str(&s).decode_utf8_lossy().into_owned()
    };
    let mut out = Map::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode(k), Value::String(decode(v)));
        match out.get_mut(&k) {
            Some(Value::Array(items)) => items.push(v),
            Some(first) => *first = Value::Array(vec![first.take(), v]),
            None => {
                out.insert(k, v);
            }
        }
    }
    out
}

/// The event under the receiver's `kind` and `dedupe_key`, when it has them; a Standard
/// Webhooks `webhook-id` is the default key (a retry carries the same one).
fn retag(
    event: Event,
    w: &Webhook,
    req: &Request<'_>,
    ctx: Option<&Jinja>,
) -> Result<Event, OpenError> {
    let standard_id = match w.auth {
        WebhookAuth::StandardWebhooks { .. } => req
            .headers
            .get("webhook-id")
            .map(|id| format!("webhook-id={id}")),
        _ => None,
    };
    let Some(ctx) = ctx else {
        return event
            .retag(None, standard_id)
            .map_err(|e| OpenError::malformed("event kind or key", e));
    };
    let render = |t: &Option<Template>, what: &str| {
        let t = t.as_ref()?;
        match t.render(ctx) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(receiver = %event.receiver(), error = %e, "The webhook's {what} template failed; the default is used.");
                None
            }
        }
    };
    let kind = render(&w.kind, "kind");
    let key = render(&w.dedupe_key, "dedupe_key").or(standard_id);
    event
        .retag(kind, key)
        .map_err(|e| OpenError::malformed("event kind or key", e))
}

/// What the receiver's templates see: the fields, `headers` and `query`, without the
/// headers and parameter that carried the proof.
fn context(
    fields: &Map<String, Value>,
    auth: &WebhookAuth,
    req: &Request<'_>,
    query: &Query<'_>,
) -> Jinja {
    let hidden_at = match auth {
        WebhookAuth::Token { at, .. }
        | WebhookAuth::Hmac { at, .. }
        | WebhookAuth::Recipe { at, .. } => Some(at),
        _ => None,
    };
    let headers: Map<String, Value> = req
        .headers
        .all()
        .into_iter()
        .filter(|(k, _)| !SECRET_HEADERS.contains(&k.as_str()))
        .filter(|(k, _)| !matches!(hidden_at, Some(AuthAt::Header(h)) if h == k))
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let params: Map<String, Value> = query
        .pairs()
        .filter(|(k, _)| !matches!(hidden_at, Some(AuthAt::Query(q)) if q == k))
        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
        .collect();
    let mut top = fields.clone();
    top.insert("headers".into(), Value::Object(headers));
    top.insert("query".into(), Value::Object(params));
    Jinja::from(minijinja::value::Serde(Value::Object(top)))
}

#[cfg(test)]
mod tests {
    use super::super::{HeaderList, Method, open};
    use super::*;
    use crate::crypto::webhook::{Algorithm, hmac};

    const NOW_MS: i64 = 1_614_265_330_000;

    fn receiver(keys: &str) -> Receiver {
        let src = format!(
            "[[receivers]]\nname = \"w\"\nvendor = \"webhook\"\npath = \"/w\"\n{keys}\n\
             [[rules]]\nname = \"r\"\n[[rules.actions]]\nkind = \"log\"\nmessage = \"x\"\n"
        );
        let config = crate::config::parse(&src, &|_| None).unwrap_or_else(|e| panic!("{e:?}"));
        config.receivers.into_iter().next().unwrap()
    }

    fn post(
        r: &Receiver,
        query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Accepted, super::super::Rejected> {
        let headers = HeaderList(headers);
        open(
            r,
            &Request {
                method: Method::Post,
                query,
                headers: &headers,
                body,
                now_ms: NOW_MS,
            },
        )
    }

    fn refused(result: Result<Accepted, super::super::Rejected>) -> OpenError {
        let e = result.expect_err("refused");
        assert_eq!((e.status(), e.code), (403, None), "{e}");
        e.error
    }

    #[test]
    fn tokens_in_a_header_or_the_query_with_rotation() {
        let r = receiver(
            "auth = \"token\"\nauth_header = \"Authorization\"\nprefix = \"Bearer \"\nsecrets = [\"old\", \"new\"]",
        );
        let body = br#"{"status":"firing"}"#;
        for token in ["Bearer new", "bearer old"] {
            let ok = post(&r, "", &[("authorization", token)], body).unwrap();
            assert_eq!(ok.event.unwrap().kind(), "webhook");
        }
        refused(post(&r, "", &[("authorization", "Bearer nope")], body));
        refused(post(&r, "", &[("authorization", "new")], body));
        assert!(matches!(
            refused(post(&r, "", &[], body)),
            OpenError::Unauthenticated(e) if *e == OpenError::Missing("token")
        ));
        let q = receiver("auth = \"token\"\nauth_query = \"key\"\nsecret = \"k 1\"");
        assert!(post(&q, "key=k%201&x=1", &[], body).is_ok());
        refused(post(&q, "key=k2", &[], body));
    }

    #[test]
    fn hmac_of_the_exact_body_in_any_algorithm_and_encoding() {
        let r = receiver(
            "auth = \"hmac\"\nauth_header = \"X-Hub-Signature-256\"\nprefix = \"sha256=\"\nsecret = \"s\"",
        );
        let body = br#"{"a": 1}"#;
        let sig = format!(
            "sha256={}",
            hex::encode(hmac(Algorithm::Sha256, b"s", &[body]))
        );
        assert!(post(&r, "", &[("x-hub-signature-256", &sig)], body).is_ok());
        // Re-serialised JSON is another body.
        refused(post(
            &r,
            "",
            &[("x-hub-signature-256", &sig)],
            br#"{"a":1}"#,
        ));
        refused(post(&r, "", &[("x-hub-signature-256", &sig[7..])], body));
        let b64 = receiver(
            "auth = \"hmac\"\nauth_query = \"sign\"\nalgorithm = \"md5\"\nencoding = \"base64\"\nsecret = \"s\"",
        );
        use base64::Engine;
        let mac = hmac(Algorithm::Md5, b"s", &[body]);
        let sig = base64::engine::general_purpose::STANDARD.encode(mac);
        let query = format!(
            "sign={}",
            sig.replace('+', "%2B")
                .replace('/', "%2F")
                .replace('=', "%3D")
        );
        assert!(post(&b64, &query, &[], body).is_ok());
    }

    #[test]
    fn standard_webhooks_window_and_id_as_the_dedupe_key() {
        let r = receiver(
            "auth = \"standard_webhooks\"\nsecrets = [\"whsec_AAAA\", \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]",
        );
        let body = br#"{"test": 2432232314}"#;
        let headers = |ts: &'static str| {
            [
                ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
                ("webhook-timestamp", ts),
                (
                    "webhook-signature",
                    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                ),
            ]
        };
        let ok = post(&r, "", &headers("1614265330"), body).unwrap();
        assert_eq!(
            ok.event.unwrap().dedupe_key(),
            "webhook-id=msg_p5jXN8AQM9LWM0D4loKWxJek"
        );
        // Signed for another time: the signature no longer matches; an old one is stale.
        refused(post(&r, "", &headers("1614265331"), body));
        assert!(matches!(
            refused(post(&r, "", &headers("1614264000"), body)),
            OpenError::Unauthenticated(e) if matches!(*e, OpenError::StaleTimestamp { .. })
        ));
        refused(post(&r, "", &headers("1614265330")[..2], body));
    }

    #[test]
    fn bodies_become_fields_and_templates_name_kind_and_key() {
        let r = receiver(
            "auth = \"token\"\nauth_header = \"X-Key\"\nsecret = \"k\"\n\
             kind = \"{{ op }}{{ status }}\"\ndedupe_key = \"{{ headers['x-delivery'] }}|{{ headers['x-key'] }}|{{ query.t }}\"",
        );
        let form = post(
            &r,
            "t=7",
            &[
                ("x-key", "k"),
                ("x-delivery", "d-1"),
                (
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                ),
            ],
            b"op=data_create&name=a+b%26c&tag=1&tag=2",
        )
        .unwrap()
        .event
        .unwrap();
        assert_eq!(form.kind(), "data_create");
        // The header that carried the token is not shown to templates.
        assert_eq!(form.dedupe_key(), "d-1||7");
        assert_eq!(form.fields()["name"], "a b&c");
        assert_eq!(form.fields()["tag"], serde_json::json!(["1", "2"]));
        let array = post(&r, "", &[("x-key", "k")], b"[1,2]")
            .unwrap()
            .event
            .unwrap();
        assert_eq!(array.fields()["body"], serde_json::json!([1, 2]));
        // An empty kind keeps the default; a failing template too.
        assert_eq!(array.kind(), "webhook");
        let xml = post(&r, "", &[("x-key", "k")], b"<xml><status>ok</status></xml>");
        assert_eq!(xml.unwrap().event.unwrap().kind(), "ok");
        let bad = post(&r, "", &[("x-key", "k")], b"{nope").unwrap_err();
        assert_eq!(bad.status(), 400);
    }

    /// The Chinese platforms' schemes, each one recipe; digests from Python's hashlib.
    #[test]
    fn recipes_sign_as_jiandaoyun_youshu_and_weaver_do() {
        let jdy = receiver(
            "auth = \"recipe\"\nauth_header = \"X-JDY-Signature\"\nalgorithm = \"sha1\"\nsecrets = [\"old\", \"s3cret\"]\n\
             recipe = \"{{ query.nonce }}:{{ body }}:{{ secret }}:{{ query.timestamp }}\"\n\
             timestamp = \"{{ query.timestamp }}\"\ndedupe_key = \"{{ headers['x-jdy-deliverid'] }}\"",
        );
        let body = br#"{"op":"data_create","data":{"_id":"x"}}"#;
        let sig = "9fc01f06becf536f2138e0a641d5201ec82d0c7a";
        let headers = [("x-jdy-signature", sig), ("x-jdy-deliverid", "dv-1")];
        let q = "nonce=n1&timestamp=1614265330";
        let ok = post(&jdy, q, &headers, body).unwrap().event.unwrap();
        assert_eq!(ok.dedupe_key(), "dv-1");
        refused(post(&jdy, q, &headers, br#"{"op":"data_update"}"#));
        refused(post(&jdy, "nonce=n2&timestamp=1614265330", &headers, body));
        // The nonce and time a signature covers, replayed an hour later, are stale.
        let later = post(&jdy, "nonce=n1&timestamp=1614261730", &headers, body);
        assert!(matches!(
            refused(later),
            OpenError::Unauthenticated(e) if matches!(*e, OpenError::StaleTimestamp { .. })
        ));
        let youshu = receiver(
            "auth = \"recipe\"\nauth_query = \"signature\"\nalgorithm = \"sha1\"\nsecret = \"tok\"\n\
             recipe = \"{{ [query.timestamp, query.nonce, secret] | sort | join('') }}\"",
        );
        let q = "timestamp=1614265330&nonce=n2&signature=0511be8721004a00f8e588b6c06c6b0bffc0edf6";
        assert!(post(&youshu, q, &[], b"{}").is_ok());
        let weaver = receiver(
            "auth = \"recipe\"\nauth_header = \"md5\"\nalgorithm = \"md5\"\nsecret = \"pw\"\n\
             recipe = \"{{ headers.systemid }}{{ secret }}{{ headers.currentdatetime }}\"\n\
             timestamp = \"{{ headers.currentdatetime }}\"",
        );
        let headers = [
            ("systemid", "sys1"),
            ("currentDateTime", "1614265330000"),
            ("md5", "E305C76D4A6BA18D353532B8B8DDFA84"),
        ];
        assert!(post(&weaver, "", &headers, b"{}").is_ok());
        let headers = [("systemid", "sys2"), headers[1], headers[2]];
        refused(post(&weaver, "", &headers, b"{}"));
    }

    /// 有数 checks the URL with a signed GET and wants `{"code":0,"msg":"ok"}`; 每刻 wants
    /// `{"success":true}` for its posts.
    #[test]
    fn replies_and_url_checks_are_the_receivers_own() {
        let r = receiver(
            "auth = \"recipe\"\nauth_query = \"signature\"\nalgorithm = \"sha1\"\nsecret = \"tok\"\n\
             recipe = \"{{ [query.timestamp, query.nonce, secret] | sort | join('') }}\"\n\
             url_check = '{\"code\":0,\"msg\":\"ok\"}'\nreply = '{\"success\":true,\"id\":\"{{ id }}\"}'",
        );
        let q = "timestamp=1614265330&nonce=n2&signature=0511be8721004a00f8e588b6c06c6b0bffc0edf6";
        let get = |query: &str| {
            open(
                &r,
                &Request {
                    method: Method::Get,
                    query,
                    headers: &HeaderList(&[]),
                    body: b"",
                    now_ms: NOW_MS,
                },
            )
        };
        let check = get(q).unwrap();
        assert!(check.event.is_none());
        assert_eq!(check.reply.body, br#"{"code":0,"msg":"ok"}"#);
        refused(get("timestamp=1614265330&nonce=n3&signature=00"));
        let posted = post(&r, q, &[], br#"{"id":"a7"}"#).unwrap();
        assert_eq!(posted.reply.body, br#"{"success":true,"id":"a7"}"#);
        assert_eq!(posted.reply.content_type, "application/json");
        let plain = receiver("auth = \"none\"\nreply = \"OK\"\nreply_type = \"text\"");
        let answer = post(&plain, "", &[], b"{}").unwrap().reply;
        assert_eq!(
            (answer.body.as_slice(), answer.content_type),
            (&b"OK"[..], "text/plain; charset=utf-8")
        );
        // Without url_check, a GET with a query is not for this receiver.
        let none = open(
            &plain,
            &Request {
                method: Method::Get,
                query: "x=1",
                headers: &HeaderList(&[]),
                body: b"",
                now_ms: NOW_MS,
            },
        );
        assert_eq!(none.unwrap_err().status(), 405);
    }

    #[test]
    fn auth_none_is_explicit_and_every_other_scheme_needs_its_parts() {
        let none = receiver("auth = \"none\"");
        assert!(post(&none, "", &[], b"{}").is_ok());
        let errors = |keys: &str| {
            let src = format!(
                "[[receivers]]\nname = \"w\"\nvendor = \"webhook\"\npath = \"/w\"\n{keys}\n\
                 [[rules]]\nname = \"r\"\n[[rules.actions]]\nkind = \"log\"\nmessage = \"x\"\n"
            );
            crate::config::parse(&src, &|_| None)
                .unwrap_err()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(errors("").contains("receivers[0].auth: missing"));
        assert!(
            errors("auth = \"recipe\"\nauth_header = \"a\"\nsecret = \"s\"")
                .contains("receivers[0].recipe: missing")
        );
        assert!(
            errors("auth = \"token\"\nauth_header = \"a\"\nsecret = \"s\"\nrecipe = \"x\"")
                .contains("applies only to auth = \"recipe\"")
        );
        assert!(errors("auth = \"magic\"").contains("is not one of none, token, hmac"));
        assert!(
            errors("auth = \"hmac\"\nsecret = \"s\"").contains("receivers[0].auth_header: missing")
        );
        assert!(
            errors("auth = \"token\"\nauth_header = \"a\"\nauth_query = \"b\"\nsecret = \"s\"")
                .contains("not both")
        );
        assert!(
            errors("auth = \"token\"\nauth_header = \"a\"")
                .contains("receivers[0].secrets: missing")
        );
        assert!(
            errors("auth = \"token\"\nauth_header = \"a\"\nsecret = \"\"").contains("is empty")
        );
        assert!(
            errors("auth = \"hmac\"\nauth_header = \"a\"\nsecret = \"s\"\nalgorithm = \"crc32\"")
                .contains("is not one of sha256")
        );
        assert!(
            errors("auth = \"standard_webhooks\"\nsecret = \"whsec_!\"")
                .contains("not a whsec_<base64> secret")
        );
        assert!(
            errors("auth = \"standard_webhooks\"\nsecret = \"whsec_AAAA\"\nprefix = \"v1,\"")
                .contains("does not apply to auth")
        );
        assert!(
            errors("auth = \"none\"\ntoken = \"t\"").contains("does not apply to vendor webhook")
        );
    }
}
