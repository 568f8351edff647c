//! The webhook receiver's tests: every scheme accepts what it should and refuses the rest
//! alike; bodies, templates, replies, URL checks and client addresses.

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
            peer: None,
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
fn basic_auth_with_passwords_from_the_environment() {
    let r = receiver("auth = \"basic\"\nusers = [\"yida:p@ss:w0rd\", \"e10:other\"]");
    use base64::Engine;
    let basic = |pair: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    for pair in ["yida:p@ss:w0rd", "e10:other"] {
        assert!(
            post(&r, "", &[("authorization", &basic(pair))], b"{}").is_ok(),
            "{pair}"
        );
    }
    for pair in ["yida:other", "e10:p@ss:w0rd", "yida", ":"] {
        refused(post(&r, "", &[("authorization", &basic(pair))], b"{}"));
    }
    refused(post(&r, "", &[("authorization", "Basic !!")], b"{}"));
    refused(post(&r, "", &[], b"{}"));
}

#[test]
fn basic_auth_with_htpasswd_bcrypt_hashes() {
    // OpenBSD's bcrypt test vector ("U*U"), as htpasswd -B writes it ($2y$) and as $2a$.
    let r = receiver(
        "auth = \"basic\"\nusers = [\"yida:$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW\", \"e10:$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW\", \"jdy:plain\"]",
    );
    use base64::Engine;
    let basic = |pair: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    for pair in ["yida:U*U", "e10:U*U", "jdy:plain"] {
        assert!(
            post(&r, "", &[("authorization", &basic(pair))], b"{}").is_ok(),
            "{pair}"
        );
    }
    for pair in ["yida:U*V", "nobody:U*U", "jdy:U*U", "e10:plain"] {
        refused(post(&r, "", &[("authorization", &basic(pair))], b"{}"));
    }
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
    // Event data cannot make the kind or the key unbounded.
    let long = format!(r#"{{"op":"{}"}}"#, "長".repeat(300));
    let headers = [("x-key", "k"), ("x-delivery", &*"d".repeat(300))];
    let tagged = post(&r, "", &headers, long.as_bytes())
        .unwrap()
        .event
        .unwrap();
    assert_eq!(tagged.kind().chars().count(), crate::event::MAX_KIND);
    assert!(tagged.dedupe_key().starts_with("sha256=") && tagged.dedupe_key().len() == 71);
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
                peer: None,
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
            peer: None,
        },
    );
    assert_eq!(none.unwrap_err().status(), 405);
}

#[test]
fn allow_ips_see_through_trusted_proxies_only() {
    let r = receiver(
        "auth = \"none\"\nallow_ips = [\"10.1.0.0/16\", \"203.0.113.7\"]\n\
         trusted_proxies = [\"127.0.0.1\", \"192.168.0.0/24\"]",
    );
    let from = |peer: &str, xff: Option<&str>| {
        let headers: Vec<(&str, &str)> = xff.map(|x| ("x-forwarded-for", x)).into_iter().collect();
        open(
            &r,
            &Request {
                method: Method::Post,
                query: "",
                headers: &HeaderList(&headers),
                body: b"{}",
                now_ms: NOW_MS,
                peer: Some(peer.parse().unwrap()),
            },
        )
    };
    assert!(from("10.1.2.3", None).is_ok());
    assert!(from("203.0.113.7", None).is_ok());
    assert!(matches!(
        from("10.2.0.1", None).unwrap_err().error,
        OpenError::NotAllowed(_)
    ));
    // Behind the proxies: the rightmost address they did not add.
    assert!(from("127.0.0.1", Some("198.51.100.1, 10.1.9.9, 192.168.0.5")).is_ok());
    assert_eq!(
        from("127.0.0.1", Some("10.1.9.9, 198.51.100.1"))
            .unwrap_err()
            .status(),
        403
    );
    assert!(from("127.0.0.1", Some("10.1.9.9, junk")).is_err());
    // A client that is not a trusted proxy cannot claim an address.
    assert!(from("198.51.100.1", Some("10.1.2.3")).is_err());
    // Unknown peer (no socket): refused.
    let unknown = open(
        &r,
        &Request {
            method: Method::Post,
            query: "",
            headers: &HeaderList(&[]),
            body: b"{}",
            now_ms: NOW_MS,
            peer: None,
        },
    );
    assert!(unknown.is_err());
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
    assert!(errors("auth = \"basic\"").contains("receivers[0].users: missing"));
    assert!(
        errors("auth = \"basic\"\nusers = [\"a:$2y$10$abc\"]").contains("\"a\": not a bcrypt hash")
    );
    assert!(
        errors("auth = \"basic\"\nusers = [\"a:$apr1$xyz$abc\"]")
            .contains("only bcrypt password hashes are taken (htpasswd -nB name)")
    );
    assert!(
        errors("auth = \"basic\"\nusers = [\"nopassword\"]").contains("must be \"name:password\"")
    );
    assert!(
        errors("auth = \"none\"\nusers = [\"a:b\"]").contains("applies only to auth = \"basic\"")
    );
    assert!(
        errors("auth = \"recipe\"\nauth_header = \"a\"\nsecret = \"s\"")
            .contains("receivers[0].recipe: missing")
    );
    assert!(
        errors("auth = \"token\"\nauth_header = \"a\"\nsecret = \"s\"\nrecipe = \"x\"")
            .contains("applies only to auth = \"recipe\"")
    );
    assert!(errors("auth = \"magic\"").contains("is not one of none, basic, token, hmac"));
    assert!(
        errors("auth = \"hmac\"\nsecret = \"s\"").contains("receivers[0].auth_header: missing")
    );
    assert!(
        errors("auth = \"token\"\nauth_header = \"a\"\nauth_query = \"b\"\nsecret = \"s\"")
            .contains("not both")
    );
    assert!(
        errors("auth = \"token\"\nauth_header = \"a\"").contains("receivers[0].secrets: missing")
    );
    assert!(errors("auth = \"token\"\nauth_header = \"a\"\nsecret = \"\"").contains("is empty"));
    assert!(
        errors("auth = \"hmac\"\nauth_header = \"a\"\nsecret = \"s\"\nalgorithm = \"crc32\"")
            .contains("is not one of sha256")
    );
    assert!(
        errors("auth = \"standard_webhooks\"\nsecret = \"whsec_!\"")
            .contains("not a whsec_<base64> secret")
    );
    assert!(
        errors("auth = \"none\"\nallow_ips = [\"10.0.0.0/33\"]")
            .contains("is not an IP address or a CIDR network")
    );
    assert!(
        errors("auth = \"standard_webhooks\"\nsecret = \"whsec_AAAA\"\nprefix = \"v1,\"")
            .contains("does not apply to auth")
    );
    assert!(errors("auth = \"none\"\ntoken = \"t\"").contains("does not apply to vendor webhook"));
}
