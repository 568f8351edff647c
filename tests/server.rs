//! Integration tests: the real server on 127.0.0.1:0, driven over TCP through every vendor's
//! flow, retries, replays, tampering, garbage and oversized bodies.

mod common;

use common::{enc, now_ms, start};
use hookgate::crypto::envelope::{AesKey, Envelope, Signed};
use hookgate::crypto::feishu::FeishuKey;
use hookgate::crypto::{Freshness, robot};
use serde_json::json;

const TOKEN: &str = "gwCallbackToken2024";
const KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const OLD_KEY: &str = "Gw7aT1kQ9zXcV3bN5mL2pR8sD4fH6jK0yU1iO3eW5qA";
const CORP: &str = "ww8f3c1e2d4b5a6978";

fn receivers() -> String {
    format!(
        r#"
[[receivers]]
name = "hr"
vendor = "wecom"
path = "/wecom"
token = "{TOKEN}"
encoding_aes_key = "{KEY}"
receive_id = "{CORP}"

[[receivers]]
name = "suite"
vendor = "wecom"
path = "/suite"
token = "{TOKEN}"
encoding_aes_key = "{KEY}"
receive_id = "suite1"
suite = true

[[receivers]]
name = "mp"
vendor = "wechat_mp"
path = "/mp"
token = "{TOKEN}"
encoding_aes_key = "{KEY}"
receive_id = "wxapp"

[[receivers]]
name = "ding"
vendor = "dingtalk"
path = "/ding"
token = "{TOKEN}"
encoding_aes_key = "{KEY}"
previous_encoding_aes_key = "{OLD_KEY}"
receive_id = "dingappkey"

[[receivers]]
name = "lark"
vendor = "feishu"
path = "/lark"
verification_token = "vtok"
encrypt_key = "lark-key"

[[receivers]]
name = "bot"
vendor = "dingtalk_robot"
path = "/bot"
app_secret = "bot-secret"
"#
    )
}

fn envelope(key: &str, receive_id: &str) -> Envelope {
    Envelope::new(
        TOKEN.into(),
        vec![AesKey::from_encoding_aes_key(key).unwrap()],
        receive_id.into(),
    )
}

fn wecom_post(env: &Envelope, plaintext: &str, ts: &str) -> (String, String) {
    common::wecom_post(env, CORP, plaintext, ts)
}

const CONTACT: &str = "<xml><ToUserName><![CDATA[ww8f3c1e2d4b5a6978]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>\
<CreateTime>1700000100</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event>\
<ChangeType>create_user</ChangeType><UserID><![CDATA[lisi]]></UserID><Name><![CDATA[李四]]></Name><Department><![CDATA[1,2]]></Department></xml>";

#[tokio::test]
async fn wecom_url_check_event_and_retries() {
    let srv = start("", &receivers()).await;
    let env = envelope(KEY, CORP);
    let ts = (now_ms() / 1000).to_string();

    // URL check: echostr percent-encoded once; reply is the bare plaintext.
    let sealed = env.seal(0, b"6286071826452372153", &ts, "n");
    let q = format!(
        "msg_signature={}&timestamp={ts}&nonce=n&echostr={}",
        sealed.msg_signature,
        enc(&sealed.encrypt)
    );
    let r = srv.get(&format!("/wecom?{q}")).await;
    assert_eq!((r.status, r.text().as_str()), (200, "6286071826452372153"));

    // The same callback three times (vendor retries): three 200s with empty bodies, one event.
    for _ in 0..3 {
        let (q, body) = wecom_post(&env, CONTACT, &ts);
        let r = srv
            .post(
                &format!("/wecom?{q}"),
                &[("Content-Type", "text/xml")],
                body.as_bytes(),
            )
            .await;
        assert_eq!((r.status, r.body.len()), (200, 0), "{}", r.text());
    }
    let events = srv.events();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        (e.receiver.as_str(), e.vendor.as_str(), e.kind.as_str()),
        ("hr", "wecom", "change_contact/create_user")
    );
    assert_eq!(e.fields["Name"], "李四");
    assert_eq!(e.raw, CONTACT);

    // JSON flavour of the same envelope.
    let sealed = env.seal(
        0,
        br#"{"msgid":"j1","msgtype":"text","text":{"content":"hi"}}"#,
        &ts,
        "n2",
    );
    let q = format!(
        "msg_signature={}&timestamp={ts}&nonce=n2",
        sealed.msg_signature
    );
    let body = json!({"tousername": CORP, "encrypt": sealed.encrypt, "agentid": 218}).to_string();
    let r = srv.post(&format!("/wecom?{q}"), &[], body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(srv.events()[0].dedupe_key, "msgid=j1");
    srv.stop().await;
}

#[tokio::test]
async fn wecom_suite_replies_success() {
    let srv = start("", &receivers()).await;
    let ts = (now_ms() / 1000).to_string();
    let ticket = "<xml><SuiteId><![CDATA[suite1]]></SuiteId><InfoType><![CDATA[suite_ticket]]></InfoType><TimeStamp>1700000000</TimeStamp><SuiteTicket><![CDATA[t]]></SuiteTicket></xml>";
    let (q, body) = wecom_post(&envelope(KEY, "suite1"), ticket, &ts);
    let r = srv.post(&format!("/suite?{q}"), &[], body.as_bytes()).await;
    assert_eq!((r.status, r.text().as_str()), (200, "success"));
    assert_eq!(srv.events()[0].kind, "suite_ticket");
    srv.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_stored() {
    let srv = start("body_limit = 4096", &receivers()).await;
    let env = envelope(KEY, CORP);
    let now = (now_ms() / 1000).to_string();

    // A replay from ten minutes ago, correctly signed: 403.
    let old = (now_ms() / 1000 - 600).to_string();
    let (q, body) = wecom_post(&env, CONTACT, &old);
    assert_eq!(
        srv.post(&format!("/wecom?{q}"), &[], body.as_bytes())
            .await
            .status,
        403
    );

    // A tampered signature: 403 with -40001.
    let (q, body) = wecom_post(&env, CONTACT, &now);
    let tampered = q.replacen("msg_signature=", "msg_signature=0", 1);
    let r = srv
        .post(&format!("/wecom?{tampered}"), &[], body.as_bytes())
        .await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("-40001"), "{}", r.text());

    // Encrypted for another corp: 403 with -40005.
    let (q, body) = wecom_post(&envelope(KEY, "wwSomeoneElse"), CONTACT, &now);
    let r = srv.post(&format!("/wecom?{q}"), &[], body.as_bytes()).await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("-40005"), "{}", r.text());

    // Garbage bodies and missing parameters: 400.
    let (q, _) = wecom_post(&env, CONTACT, &now);
    for garbage in [
        &b"\xff\xfe\x00garbage"[..],
        b"<xml><Encrypt>",
        b"{\"encrypt\": 5}",
        b"",
        b"<xml></xml>",
    ] {
        let r = srv.post(&format!("/wecom?{q}"), &[], garbage).await;
        assert_eq!(r.status, 400, "{garbage:?}: {}", r.text());
    }
    assert_eq!(
        srv.post("/wecom?timestamp=1", &[], b"<xml/>").await.status,
        400
    );

    // Oversized: 413, whether declared up front or streamed.
    let big = vec![b'a'; 5000];
    assert_eq!(srv.post("/wecom?x=1", &[], &big).await.status, 413);
    let chunked = format!(
        "POST /wecom?x=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n1388\r\n{}\r\n0\r\n\r\n",
        "a".repeat(5000)
    );
    assert_eq!(common::raw(srv.addr, chunked.as_bytes()).await.status, 413);

    // Not HTTP at all, unknown paths, other methods.
    let _ = common::raw(
        srv.addr,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    )
    .await;
    assert_eq!(srv.get("/nope").await.status, 404);
    assert_eq!(srv.send("PUT", "/ding?x=1", &[], b"").await.status, 405);

    // Nothing was stored, and the server still answers.
    assert!(srv.events().is_empty());
    let hint = srv.get("/wecom").await;
    assert_eq!(hint.status, 200);
    // The hint names no receiver or vendor.
    assert!(hint.text().contains("callback URL"), "{}", hint.text());
    assert!(!hint.text().contains("hr") && !hint.text().contains("wecom"));
    srv.stop().await;
}

#[tokio::test]
async fn wechat_mp_safe_mode() {
    let srv = start("", &receivers()).await;
    let env = envelope(KEY, "wxapp");
    let ts = (now_ms() / 1000).to_string();
    // URL check: 3-part signature, plain echostr.
    let mut parts: [&[u8]; 3] = [TOKEN.as_bytes(), ts.as_bytes(), b"77"];
    let sig =
        String::from_utf8(hookgate::crypto::envelope::signature(&mut parts).to_vec()).unwrap();
    let r = srv
        .get(&format!(
            "/mp?signature={sig}&timestamp={ts}&nonce=77&echostr=abc123"
        ))
        .await;
    assert_eq!((r.status, r.text().as_str()), (200, "abc123"));

    let msg = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content><MsgId>99</MsgId></xml>";
    let sealed = env.seal(0, msg.as_bytes(), &ts, "77");
    let q = format!(
        "signature={sig}&timestamp={ts}&nonce=77&openid=o1&encrypt_type=aes&msg_signature={}",
        sealed.msg_signature
    );
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt></xml>",
        sealed.encrypt
    );
    let r = srv.post(&format!("/mp?{q}"), &[], body.as_bytes()).await;
    assert_eq!((r.status, r.text().as_str()), (200, "success"));
    assert_eq!(srv.events()[0].dedupe_key, "MsgId=99");

    // Plaintext is refused in safe mode, even when correctly signed.
    let r = srv
        .post(
            &format!("/mp?signature={sig}&timestamp={ts}&nonce=77"),
            &[],
            msg.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 403);
    srv.stop().await;
}

fn ding_post(env: &Envelope, plaintext: &str) -> (String, String) {
    let ts = now_ms().to_string();
    let sealed = env.seal(0, plaintext.as_bytes(), &ts, "abc");
    let q = format!(
        "signature={}&timestamp={ts}&nonce=abc",
        sealed.msg_signature
    );
    (q, json!({ "encrypt": sealed.encrypt }).to_string())
}

/// Opens DingTalk's encrypted reply map with `env` and returns the plaintext.
fn open_reply(env: &Envelope, reply: &serde_json::Value) -> Vec<u8> {
    let s = |k: &str| reply[k].as_str().unwrap().to_owned();
    let (ts, nonce, sig) = (s("timeStamp"), s("nonce"), s("msg_signature"));
    let signed = Signed {
        timestamp: &ts,
        nonce: &nonce,
        signature: &sig,
    };
    env.open(
        &signed,
        &s("encrypt"),
        Freshness {
            now_ms: 0,
            window_secs: 0,
        },
    )
    .unwrap()
    .into_inner()
    .message
}

#[tokio::test]
async fn dingtalk_check_url_events_and_key_rotation() {
    let srv = start("", &receivers()).await;
    let env = envelope(KEY, "dingappkey");
    let (q, body) = ding_post(&env, r#"{"EventType":"check_url"}"#);
    let r = srv
        .post(
            &format!("/ding?{q}"),
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200);
    let reply = r.json();
    assert_eq!(reply.as_object().unwrap().len(), 4);
    assert_eq!(open_reply(&env, &reply), b"success");
    assert!(srv.events().is_empty(), "check_url is not an event");

    let event = r#"{"EventType":"user_add_org","TimeStamp":"1700000000456","UserId":["u1"],"CorpId":"dingcorp","eventId":"ev-1"}"#;
    for _ in 0..3 {
        let (q, body) = ding_post(&env, event);
        let r = srv.post(&format!("/ding?{q}"), &[], body.as_bytes()).await;
        assert_eq!(open_reply(&env, &r.json()), b"success");
    }
    assert_eq!(srv.events().len(), 1);
    assert_eq!(srv.events()[0].dedupe_key, "eventId=ev-1");

    // Sealed with the previous key: accepted, and the reply uses that same key.
    let old = envelope(OLD_KEY, "dingappkey");
    let (q, body) = ding_post(&old, r#"{"EventType":"org_dept_create","DeptId":[5]}"#);
    let r = srv
        .post(
            &format!(
                "/ding?msg_signature={}",
                &q["signature=".len()..].replacen("&timestamp=", "&timeStamp=", 1)
            ),
            &[],
            body.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(open_reply(&old, &r.json()), b"success");
    assert_eq!(srv.events().len(), 2);

    // A wrong owner key: 403 with DingTalk's 900010.
    let (q, body) = ding_post(&envelope(KEY, "otherapp"), event);
    let r = srv.post(&format!("/ding?{q}"), &[], body.as_bytes()).await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("900010"), "{}", r.text());
    srv.stop().await;
}

#[tokio::test]
async fn feishu_challenge_events_and_signatures() {
    let srv = start("", &receivers()).await;
    let key = FeishuKey::new("lark-key".into());
    let challenge =
        json!({"challenge": "c-123", "token": "vtok", "type": "url_verification"}).to_string();
    let body = json!({"encrypt": key.encrypt(&[3; 16], challenge.as_bytes())}).to_string();
    let r = srv
        .post(
            "/lark",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .await;
    assert_eq!((r.status, r.json()), (200, json!({"challenge": "c-123"})));

    let event = json!({"schema": "2.0", "header": {"event_id": "e-9", "event_type": "im.message.receive_v1", "token": "vtok", "create_time": "1"}, "event": {"message": {"content": "hi"}}}).to_string();
    let body = json!({"encrypt": key.encrypt(&[4; 16], event.as_bytes())}).to_string();
    let ts = (now_ms() / 1000).to_string();
    let sig = String::from_utf8(key.signature(&ts, "nn", body.as_bytes()).to_vec()).unwrap();
    let headers = [
        ("X-Lark-Request-Timestamp", ts.as_str()),
        ("X-Lark-Request-Nonce", "nn"),
        ("X-Lark-Signature", sig.as_str()),
    ];
    for _ in 0..3 {
        let r = srv.post("/lark", &headers, body.as_bytes()).await;
        assert_eq!((r.status, r.json()), (200, json!({"msg": "success"})));
    }
    assert_eq!(srv.events().len(), 1);
    assert_eq!(srv.events()[0].kind, "im.message.receive_v1");

    // Re-serialised body (same JSON, other bytes): the signature no longer matches.
    let spaced = body.replace("\":\"", "\": \"");
    assert_eq!(
        srv.post("/lark", &headers, spaced.as_bytes()).await.status,
        403
    );
    // An encrypted event without a signature is refused, with no reason given.
    let r = srv.post("/lark", &[], body.as_bytes()).await;
    assert_eq!((r.status, r.text().as_str()), (403, "rejected\n"));
    srv.stop().await;
}

/// Security review, defect 1: unsigned bodies to a Feishu receiver with an Encrypt Key were a
/// CBC padding oracle (bad padding, non-UTF-8, bad JSON and a wrong token answered differently).
#[tokio::test]
async fn feishu_unsigned_bodies_are_no_padding_oracle() {
    let srv = start("", &receivers()).await;
    let key = FeishuKey::new("lark-key".into());
    let post = |body: String| {
        let srv = &srv;
        async move {
            let r = srv.post("/lark", &[], body.as_bytes()).await;
            (r.status, r.text())
        }
    };
    let sealed =
        |iv: [u8; 16], plain: &[u8]| json!({ "encrypt": key.encrypt(&iv, plain) }).to_string();
    // Each failure an attacker could tell apart before: all answer the same.
    let mut bad_padding = base64_decode(&key.encrypt(&[1; 16], b"{}"));
    *bad_padding.last_mut().unwrap() ^= 0x55;
    let event =
        json!({"schema": "2.0", "header": {"event_id": "e-1", "token": "vtok"}}).to_string();
    let answers = [
        post(json!({ "encrypt": base64_encode(&bad_padding) }).to_string()).await,
        post(sealed([2; 16], b"\xff\xfe not utf-8")).await,
        post(sealed([3; 16], b"not json")).await,
        post(sealed(
            [4; 16],
            br#"{"type":"url_verification","token":"wrong","challenge":"c"}"#,
        ))
        .await,
        post(sealed([5; 16], event.as_bytes())).await,
        post(r#"{"encrypt": "%%%"}"#.to_owned()).await,
    ];
    for a in &answers {
        assert_eq!(a, &(403, "rejected\n".to_owned()));
    }
    // The textbook attack on the last byte of a captured block: every guess looks the same,
    // so it learns nothing (and past 20 unsigned decrypts the receiver stops decrypting).
    let captured = base64_decode(&key.encrypt(&[6; 16], event.as_bytes()));
    let block = &captured[16..32];
    let mut seen = std::collections::HashSet::new();
    for guess in 0..=255u8 {
        let mut forged = vec![0u8; 15];
        forged.push(guess);
        forged.extend_from_slice(block);
        seen.insert(post(json!({ "encrypt": base64_encode(&forged) }).to_string()).await);
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(srv.events().is_empty());
    srv.stop().await;
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test]
async fn dingtalk_robot_callbacks() {
    let srv = start("", &receivers()).await;
    let ts = now_ms().to_string();
    let sign = robot::sign("bot-secret", &ts);
    let body = json!({"msgtype": "text", "text": {"content": "hello"}, "msgId": "m-1", "conversationId": "cid1"}).to_string();
    let r = srv
        .post(
            "/bot",
            &[("timestamp", ts.as_str()), ("sign", sign.as_str())],
            body.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(srv.events()[0].kind, "text");

    let stale = (now_ms() - 2 * 3600 * 1000).to_string();
    let stale_sign = robot::sign("bot-secret", &stale);
    let r = srv
        .post(
            "/bot",
            &[("timestamp", stale.as_str()), ("sign", stale_sign.as_str())],
            body.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("310000"));
    let wrong = robot::sign("other", &ts);
    assert_eq!(
        srv.post(
            "/bot",
            &[("timestamp", ts.as_str()), ("sign", wrong.as_str())],
            body.as_bytes()
        )
        .await
        .status,
        403
    );
    // No timestamp/sign: an authentication failure like a wrong sign.
    let r = srv.post("/bot", &[], body.as_bytes()).await;
    assert_eq!((r.status, r.text().as_str()), (403, "rejected (310000)\n"));

    // Security review, defect 2: the sign covers only the timestamp, so a captured pair
    // must not bring in another body (a retry of the same body is deduplicated).
    let pair = [("timestamp", ts.as_str()), ("sign", sign.as_str())];
    let r = srv.post("/bot", &pair, body.as_bytes()).await;
    assert_eq!(r.status, 200, "a retry of the same body");
    let forged = json!({"msgtype": "text", "text": {"content": "evil"}, "msgId": "m-2", "sessionWebhook": "http://10.0.0.1/"}).to_string();
    let r = srv.post("/bot", &pair, forged.as_bytes()).await;
    assert_eq!((r.status, r.text().as_str()), (403, "rejected (310000)\n"));
    assert_eq!(srv.events().len(), 1);
    srv.stop().await;
}

#[tokio::test]
async fn store_failure_answers_503_and_the_retry_is_stored() {
    let srv = start("", &receivers()).await;
    let env = envelope(KEY, CORP);
    let ts = (now_ms() / 1000).to_string();
    // Make every insert fail, as a full disk would.
    srv.fail_inserts(true);
    let (q, body) = wecom_post(&env, CONTACT, &ts);
    let r = srv.post(&format!("/wecom?{q}"), &[], body.as_bytes()).await;
    assert_eq!(r.status, 503);
    assert!(srv.events().is_empty());
    // Security review, defect 7: /readyz said "ready" while every callback got 503; it now
    // fails with the cause, and the failure is counted.
    let r = srv.get("/readyz").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("disk full"), "{}", r.text());
    let metrics = srv.get("/metrics").await.text();
    assert!(
        metrics.contains("hookgate_store_commit_failures_total 1"),
        "{metrics}"
    );
    // The vendor retries after the disk is fixed: stored exactly once, and ready again.
    srv.fail_inserts(false);
    let r = srv.post(&format!("/wecom?{q}"), &[], body.as_bytes()).await;
    assert_eq!(r.status, 200);
    assert_eq!(srv.events().len(), 1);
    let r = srv.get("/readyz").await;
    assert_eq!(r.status, 200, "{}", r.text());
    srv.stop().await;
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let srv = start("header_read_timeout = 1", &receivers()).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"POST /wecom HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the server must close a connection whose headers never finish"
    );
    assert_eq!(srv.get("/wecom").await.status, 200);
    srv.stop().await;
}

#[tokio::test]
async fn concurrent_distinct_callbacks_are_all_stored() {
    let srv = std::sync::Arc::new(start("", &receivers()).await);
    let env = envelope(KEY, CORP);
    let ts = (now_ms() / 1000).to_string();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let msg = format!(
            "<xml><FromUserName>u</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><MsgId>{}</MsgId></xml>",
            i % 32
        );
        let (q, body) = wecom_post(&env, &msg, &ts);
        let srv = srv.clone();
        tasks.push(tokio::spawn(async move {
            srv.post(&format!("/wecom?{q}"), &[], body.as_bytes())
                .await
                .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(srv.events().len(), 32);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let srv = start("", &receivers()).await;
    assert_eq!(srv.get("/healthz").await.text(), "ok\n");
    // Ready once the worker has looped; poll rather than race its first turn.
    let mut ready = srv.get("/readyz").await;
    for _ in 0..50 {
        if ready.status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        ready = srv.get("/readyz").await;
    }
    assert_eq!((ready.status, ready.text().as_str()), (200, "ready\n"));

    let env = envelope(KEY, CORP);
    let ts = (now_ms() / 1000).to_string();
    let (q, body) = wecom_post(&env, CONTACT, &ts);
    for _ in 0..2 {
        assert_eq!(
            srv.post(&format!("/wecom?{q}"), &[], body.as_bytes())
                .await
                .status,
            200
        );
    }
    let tampered = q.replace("msg_signature=", "msg_signature=0");
    assert_eq!(
        srv.post(&format!("/wecom?{tampered}"), &[], body.as_bytes())
            .await
            .status,
        403
    );

    let m = srv.get("/metrics").await;
    assert_eq!(m.status, 200);
    let text = m.text();
    for want in [
        r#"hookgate_callbacks_total{receiver="hr",vendor="wecom",outcome="accepted",reason=""} 1"#,
        r#"hookgate_callbacks_total{receiver="hr",vendor="wecom",outcome="duplicate",reason=""} 1"#,
        r#"hookgate_callbacks_total{receiver="hr",vendor="wecom",outcome="rejected",reason="bad_signature"} 1"#,
        r#"hookgate_callback_seconds_count{receiver="hr"} 3"#,
        "hookgate_deliveries_pending 0",
        "# EOF",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    srv.stop().await;
}

/// Security review, defect 9: idle sockets without a cap made a valid callback wait past the
/// vendor's timeout. Past `max_connections` a socket is closed at once and counted.
#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once() {
    use tokio::io::AsyncReadExt;
    let srv = start("max_connections = 4", &receivers()).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(srv.addr).await.unwrap());
    }
    // Let the server accept all four before the fifth comes.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut fifth = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(std::time::Duration::from_secs(2), fifth.read(&mut buf))
        .await
        .expect("closed at once, not left waiting");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop(idle.pop());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let metrics = srv.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .text()
            .contains("hookgate_connections_refused_total 1"),
        "{}",
        metrics.text()
    );
    srv.stop().await;
}
