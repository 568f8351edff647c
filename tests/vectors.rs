//! Every known-answer vector in `fixtures/vectors.json` (copied from the project's protocol
//! research), positive and negative, against the crypto primitives and the vendor `open` paths.

use hookgate::config::{self, Receiver};
use hookgate::crypto::envelope::{self, AesKey, Envelope, Signed};
use hookgate::crypto::feishu::FeishuKey;
use hookgate::crypto::{Freshness, OpenError, check_timestamp, robot};
use hookgate::ingress::{self, HeaderList, Method, Query, Request};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("fixtures/vectors.json")).unwrap()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no string {key}", v["id"]))
}

fn list<'a>(v: &'a Value, section: &str, name: &str) -> &'a Vec<Value> {
    v[section][name].as_array().unwrap()
}

const NO_WINDOW: Freshness = Freshness {
    now_ms: 0,
    window_secs: 0,
};

fn envelope(token: &str, key: &str, receive_id: &str) -> Envelope {
    Envelope::new(
        token.into(),
        vec![AesKey::from_encoding_aes_key(key).unwrap()],
        receive_id.into(),
    )
}

fn wx_envelope(v: &Value) -> Envelope {
    envelope(s(v, "token"), s(v, "encoding_aes_key"), s(v, "receive_id"))
}

fn ding_envelope(v: &Value) -> Envelope {
    envelope(s(v, "token"), s(v, "aes_key"), s(v, "owner_key"))
}

fn q(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

/// A receiver built through the real config path, with the timestamp window off (the
/// vectors' timestamps are years old).
fn receiver(vendor: &str, keys: &[(&str, &str)]) -> Receiver {
    let mut src = format!(
        "[[receivers]]\nname = \"t\"\nvendor = \"{vendor}\"\npath = \"/t\"\ntimestamp_window = 0\n"
    );
    for (k, v) in keys {
        src.push_str(&format!("{k} = {}\n", q(v)));
    }
    config::parse(&src, &|_| None).unwrap().receivers.remove(0)
}

fn wx_receiver(vendor: &str, v: &Value) -> Receiver {
    receiver(
        vendor,
        &[
            ("token", s(v, "token")),
            ("encoding_aes_key", s(v, "encoding_aes_key")),
            ("receive_id", s(v, "receive_id")),
        ],
    )
}

fn random(v: &Value) -> [u8; 16] {
    hex::decode(s(v, "random_hex")).unwrap().try_into().unwrap()
}

fn request<'a>(
    method: Method,
    query: &'a str,
    headers: &'a HeaderList<'a>,
    body: &'a [u8],
) -> Request<'a> {
    Request {
        method,
        query,
        headers,
        body,
        now_ms: 0,
        peer: None,
    }
}

const NO_HEADERS: &HeaderList<'static> = &HeaderList(&[]);

#[test]
fn all_72_vectors_are_covered() {
    let v = vectors();
    let mut n = 0;
    for section in ["wecom", "dingtalk", "feishu"] {
        for list in v[section].as_object().unwrap().values() {
            n += list.as_array().unwrap().len();
        }
    }
    assert_eq!(n, 72);
}

#[test]
fn wecom_official_vectors_open() {
    let v = vectors();
    for x in list(&v, "wecom", "official") {
        let exp = &x["expected"];
        let signed = Signed {
            timestamp: s(x, "timestamp"),
            nonce: s(x, "nonce"),
            signature: s(x, "msg_signature"),
        };
        let opened = wx_envelope(x)
            .open(&signed, s(x, "encrypt"), NO_WINDOW)
            .unwrap_or_else(|e| panic!("{}: {e}", x["id"]));
        assert_eq!(
            opened.get().message,
            s(exp, "plaintext").as_bytes(),
            "{}",
            x["id"]
        );
        // A raw query must yield the same ciphertext after exactly one percent-decoding.
        if let Some(raw) = x["raw_query"].as_str() {
            let query = Query::parse(raw);
            let field = if x["kind"] == "verify_url" {
                "echostr"
            } else {
                "msg_signature"
            };
            let expected = if field == "echostr" {
                s(x, "encrypt")
            } else {
                s(x, "msg_signature")
            };
            assert_eq!(query.get(field), Some(expected), "{}", x["id"]);
        }
        if let Some(body) = exp["http_response_body"].as_str() {
            let r = wx_receiver("wecom", x);
            let raw = x["raw_query"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    let enc: String = percent_encoding::utf8_percent_encode(
                        s(x, "encrypt"),
                        percent_encoding::NON_ALPHANUMERIC,
                    )
                    .collect();
                    format!(
                        "msg_signature={}&timestamp={}&nonce={}&echostr={enc}",
                        s(x, "msg_signature"),
                        s(x, "timestamp"),
                        s(x, "nonce")
                    )
                });
            let out = ingress::open(&r, &request(Method::Get, &raw, NO_HEADERS, b"")).unwrap();
            assert_eq!(out.reply.body, body.as_bytes(), "{}", x["id"]);
            assert!(out.event.is_none());
        }
    }
}

#[test]
fn wechat_mp_official_safe_mode_post() {
    let v = vectors();
    let x = list(&v, "wecom", "official")
        .iter()
        .find(|x| x["id"] == "wechat_mp.official_style.safe_mode.decrypt_msg")
        .unwrap();
    let r = wx_receiver("wechat_mp", x);
    let out = ingress::open(
        &r,
        &request(
            Method::Post,
            s(x, "raw_query"),
            NO_HEADERS,
            s(x, "post_body").as_bytes(),
        ),
    )
    .unwrap();
    assert_eq!(out.event.unwrap().raw(), s(&x["expected"], "plaintext"));
    assert_eq!(out.reply.body, b"success");
}

#[test]
fn wechat_mp_plain_signatures() {
    let v = vectors();
    for x in list(&v, "wecom", "wechat_mp_plain_signature") {
        let mut parts = [
            s(x, "token").as_bytes(),
            s(x, "timestamp").as_bytes(),
            s(x, "nonce").as_bytes(),
        ];
        assert_eq!(
            &envelope::signature(&mut parts),
            s(x, "expected_signature").as_bytes(),
            "{}",
            x["id"]
        );
    }
    // And through a receiver: the GET URL check echoes echostr after the 3-part check.
    let x = &list(&v, "wecom", "wechat_mp_plain_signature")[0];
    let r = receiver(
        "wechat_mp",
        &[("token", s(x, "token")), ("mode", "plaintext")],
    );
    let query = format!(
        "signature={}&timestamp={}&nonce={}&echostr=hello123",
        s(x, "expected_signature"),
        s(x, "timestamp"),
        s(x, "nonce")
    );
    let out = ingress::open(&r, &request(Method::Get, &query, NO_HEADERS, b"")).unwrap();
    assert_eq!(out.reply.body, b"hello123");
    let tampered = query.replace("&nonce=", "&nonce=1");
    let err = ingress::open(&r, &request(Method::Get, &tampered, NO_HEADERS, b"")).unwrap_err();
    assert_eq!((err.code, err.status()), (Some(-40001), 403));
}

#[test]
fn wecom_generated_vectors_decrypt_and_encrypt_byte_exact() {
    let v = vectors();
    for x in list(&v, "wecom", "generated") {
        let env = wx_envelope(x);
        let sealed = env.seal_with_random(
            0,
            &random(x),
            s(x, "plaintext").as_bytes(),
            s(x, "timestamp"),
            s(x, "nonce"),
        );
        assert_eq!(sealed.encrypt, s(x, "encrypt"), "{}", x["id"]);
        assert_eq!(sealed.msg_signature, s(x, "msg_signature"), "{}", x["id"]);
        let exp = &x["expected"];
        if let Some(xml) = exp["reply_xml"]
            .as_str()
            .or(exp["reply_if_encrypted_xml"].as_str())
        {
            assert_eq!(
                sealed.to_xml(s(x, "timestamp"), s(x, "nonce")),
                xml,
                "{}",
                x["id"]
            );
        }
        let vendor = if x["scheme"] == "wechat_mp" {
            "wechat_mp"
        } else {
            "wecom"
        };
        let r = wx_receiver(vendor, x);
        match x["kind"].as_str().unwrap() {
            "verify_url" => {
                let out = ingress::open(
                    &r,
                    &request(Method::Get, s(x, "raw_query"), NO_HEADERS, b""),
                )
                .unwrap();
                assert_eq!(out.reply.status, 200);
                assert_eq!(
                    out.reply.body,
                    s(exp, "http_response_body").as_bytes(),
                    "{}",
                    x["id"]
                );
            }
            "decrypt_msg" => {
                let out = ingress::open(
                    &r,
                    &request(
                        Method::Post,
                        s(x, "raw_query"),
                        NO_HEADERS,
                        s(x, "post_body").as_bytes(),
                    ),
                );
                match s(exp, "plaintext") {
                    // An empty message decrypts but is not an event: 400 -40002, never a panic.
                    "" => {
                        let signed = Signed {
                            timestamp: s(x, "timestamp"),
                            nonce: s(x, "nonce"),
                            signature: s(x, "msg_signature"),
                        };
                        assert!(
                            env.open(&signed, s(x, "encrypt"), NO_WINDOW)
                                .unwrap()
                                .get()
                                .message
                                .is_empty()
                        );
                        assert_eq!(out.unwrap_err().code, Some(-40002));
                    }
                    plain if !plain.starts_with('<') => {
                        let signed = Signed {
                            timestamp: s(x, "timestamp"),
                            nonce: s(x, "nonce"),
                            signature: s(x, "msg_signature"),
                        };
                        assert_eq!(
                            env.open(&signed, s(x, "encrypt"), NO_WINDOW)
                                .unwrap()
                                .get()
                                .message,
                            plain.as_bytes()
                        );
                    }
                    plain => {
                        let out = out.unwrap_or_else(|e| panic!("{}: {e}", x["id"]));
                        assert_eq!(out.event.unwrap().raw(), plain, "{}", x["id"]);
                    }
                }
            }
            "encrypt_reply" => {}
            other => panic!("unknown kind {other}"),
        }
    }
}

#[test]
fn wecom_negative_vectors_reject_with_the_official_code() {
    let v = vectors();
    for x in list(&v, "wecom", "negative") {
        let exp = &x["expected"];
        let code = exp["official_error_code"].as_i64().unwrap() as i32;
        if exp["result"] == "reject_config" {
            let err = AesKey::from_encoding_aes_key(s(x, "encoding_aes_key"))
                .err()
                .expect("must reject");
            assert_eq!(envelope::KeyError::CODE, code, "{}: {err}", x["id"]);
            let src = format!(
                "[[receivers]]\nname = \"t\"\nvendor = \"wecom\"\npath = \"/t\"\ntoken = \"t\"\nreceive_id = \"\"\nencoding_aes_key = {}\n",
                q(s(x, "encoding_aes_key"))
            );
            let errors = config::parse(&src, &|_| None).unwrap_err();
            assert!(
                errors[0].to_string().starts_with(
                    "line 7: receivers[0].encoding_aes_key: malformed EncodingAESKey (-40004)"
                ),
                "{errors:?}"
            );
            continue;
        }
        let signed = Signed {
            timestamp: s(x, "timestamp"),
            nonce: s(x, "nonce"),
            signature: s(x, "msg_signature"),
        };
        let err = wx_envelope(x)
            .open(&signed, s(x, "encrypt"), NO_WINDOW)
            .expect_err(s(x, "id"));
        if x["id"] == "wecom.neg.wrong_aes_key" {
            // Garbage plaintext: any of the post-decryption errors, never a successful parse.
            assert!(
                matches!(err.wxbiz_code(), Some(-40007 | -40008 | -40005)),
                "{err:?}"
            );
        } else {
            assert_eq!(err.wxbiz_code(), Some(code), "{}: {err}", x["id"]);
        }
    }
}

#[test]
fn dingtalk_official_vectors() {
    let v = vectors();
    for x in list(&v, "dingtalk", "callback_official") {
        let env = ding_envelope(x);
        let exp = &x["expected"];
        if x["kind"] == "encrypt" {
            let sealed = env.seal_with_random(
                0,
                &random(x),
                s(x, "plaintext").as_bytes(),
                s(x, "timestamp"),
                s(x, "nonce"),
            );
            assert_eq!(
                (sealed.encrypt.as_str(), sealed.msg_signature.as_str()),
                (s(exp, "encrypt"), s(exp, "msg_signature"))
            );
            continue;
        }
        let signed = Signed {
            timestamp: s(x, "timestamp"),
            nonce: s(x, "nonce"),
            signature: s(x, "signature"),
        };
        let body: Value = serde_json::from_str(s(x, "request_body")).unwrap();
        let opened = env
            .open(&signed, s(&body, "encrypt"), NO_WINDOW)
            .unwrap_or_else(|e| panic!("{}: {e}", x["id"]));
        assert_eq!(
            opened.get().message,
            s(exp, "plaintext").as_bytes(),
            "{}",
            x["id"]
        );
    }
}

fn ding_receiver(x: &Value) -> Receiver {
    receiver(
        "dingtalk",
        &[
            ("token", s(x, "token")),
            ("encoding_aes_key", s(x, "aes_key")),
            ("receive_id", s(x, "owner_key")),
        ],
    )
}

#[test]
fn dingtalk_generated_vectors_through_the_receiver() {
    let v = vectors();
    for x in list(&v, "dingtalk", "callback_generated") {
        let env = ding_envelope(x);
        let exp = &x["expected"];
        if x["kind"] == "encrypt_success_response" {
            let resp = &exp["response_json"];
            let sealed =
                env.seal_with_random(0, &random(x), b"success", s(x, "timestamp"), s(x, "nonce"));
            assert_eq!(
                (sealed.encrypt.as_str(), sealed.msg_signature.as_str()),
                (s(resp, "encrypt"), s(resp, "msg_signature"))
            );
            continue;
        }
        let sealed = env.seal_with_random(
            0,
            &random(x),
            s(x, "plaintext").as_bytes(),
            s(x, "timestamp"),
            s(x, "nonce"),
        );
        assert_eq!(sealed.encrypt, s(x, "encrypt"), "{}", x["id"]);
        let out = ingress::open(
            &ding_receiver(x),
            &request(
                Method::Post,
                s(x, "raw_query"),
                NO_HEADERS,
                s(x, "request_body").as_bytes(),
            ),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", x["id"]));
        // Every accepted callback gets the encrypted success map, which must open to "success".
        let reply: Value = serde_json::from_slice(&out.reply.body).unwrap();
        let signed = Signed {
            timestamp: s(&reply, "timeStamp"),
            nonce: s(&reply, "nonce"),
            signature: s(&reply, "msg_signature"),
        };
        assert_eq!(
            env.open(&signed, s(&reply, "encrypt"), NO_WINDOW)
                .unwrap()
                .get()
                .message,
            b"success"
        );
        assert_eq!(out.reply.content_type, "application/json");
        let plain = s(exp, "plaintext");
        match out.event {
            Some(e) => assert_eq!(e.raw(), plain),
            None => assert!(plain.contains("check_url"), "{}", x["id"]),
        }
    }
}

#[test]
fn dingtalk_negative_vectors() {
    let v = vectors();
    for x in list(&v, "dingtalk", "callback_negative") {
        let signed = Signed {
            timestamp: s(x, "timestamp"),
            nonce: s(x, "nonce"),
            signature: s(x, "signature"),
        };
        let err = ding_envelope(x)
            .open(&signed, s(x, "encrypt"), NO_WINDOW)
            .expect_err(s(x, "id"));
        let code = x["expected"]["wxbiz_equivalent_code"].as_i64().unwrap() as i32;
        assert_eq!(err.wxbiz_code(), Some(code), "{}: {err}", x["id"]);
        assert!(
            err.dingtalk_code()
                .is_some_and(|c| (900004..=900010).contains(&c)),
            "{}",
            x["id"]
        );
    }
}

#[test]
fn dingtalk_robot_signatures() {
    let v = vectors();
    for x in list(&v, "dingtalk", "robot_sign") {
        let id = s(x, "id");
        match id {
            "dingtalk.robot.neg.stale_timestamp" => {
                robot::verify(s(x, "secret"), s(x, "timestamp_ms"), s(x, "sign")).unwrap();
                let now: i64 = s(x, "now_ms").parse().unwrap();
                assert!(matches!(
                    check_timestamp(s(x, "timestamp_ms"), now, 3600),
                    Err(OpenError::StaleTimestamp { .. })
                ));
                assert!(check_timestamp(s(x, "timestamp_ms"), now - 2, 3600).is_ok());
            }
            "dingtalk.robot.neg.wrong_secret" => {
                assert_eq!(
                    robot::verify(s(x, "secret"), s(x, "timestamp_ms"), s(x, "sign")),
                    Err(OpenError::BadSignature)
                );
            }
            "dingtalk.robot.neg.sign_urlencoded_twice" => {
                let once = Query::parse(&format!("sign={}", s(x, "sign_as_received")))
                    .get("sign")
                    .unwrap()
                    .to_owned();
                assert_eq!(
                    robot::verify(s(x, "secret"), s(x, "timestamp_ms"), &once),
                    Err(OpenError::BadSignature)
                );
            }
            _ => {
                let sign = robot::sign(s(x, "secret"), s(x, "timestamp_ms"));
                assert_eq!(sign, s(x, "expected_sign_base64"), "{id}");
                let encoded: String = percent_encoding::utf8_percent_encode(
                    &sign,
                    percent_encoding::NON_ALPHANUMERIC,
                )
                .collect();
                assert_eq!(encoded, s(x, "expected_sign_urlencoded"), "{id}");
                robot::verify(s(x, "secret"), s(x, "timestamp_ms"), &sign).unwrap();
                if let Some(h) = x.get("http_headers") {
                    let r = receiver("dingtalk_robot", &[("app_secret", s(x, "secret"))]);
                    let headers = [("timestamp", s(h, "timestamp")), ("sign", s(h, "sign"))];
                    let body = br#"{"msgtype":"text","text":{"content":"hi"},"msgId":"m1"}"#;
                    let out =
                        ingress::open(&r, &request(Method::Post, "", &HeaderList(&headers), body))
                            .unwrap();
                    assert_eq!(out.event.unwrap().dedupe_key(), "msgId=m1");
                }
            }
        }
    }
}

#[test]
fn feishu_vectors() {
    let v = vectors();
    for x in list(&v, "feishu", "official") {
        let key = FeishuKey::new(s(x, "encrypt_key").into());
        assert_eq!(
            key.decrypt(s(x, "encrypt")).unwrap(),
            s(x, "expected_plaintext")
        );
    }
    for x in list(&v, "feishu", "generated") {
        let key = FeishuKey::new(s(x, "encrypt_key").into());
        assert_eq!(
            key.decrypt(s(x, "encrypt")).unwrap(),
            s(x, "plaintext"),
            "{}",
            x["id"]
        );
        let iv: [u8; 16] = hex::decode(s(x, "iv_hex")).unwrap().try_into().unwrap();
        assert_eq!(
            key.encrypt(&iv, s(x, "plaintext").as_bytes()),
            s(x, "encrypt"),
            "{}",
            x["id"]
        );
        let h = &x["headers"];
        let headers = [
            ("X-Lark-Request-Timestamp", s(h, "X-Lark-Request-Timestamp")),
            ("X-Lark-Request-Nonce", s(h, "X-Lark-Request-Nonce")),
            ("X-Lark-Signature", s(h, "X-Lark-Signature")),
        ];
        let plain: Value = serde_json::from_str(s(x, "plaintext")).unwrap();
        let token = plain["token"]
            .as_str()
            .or(plain["header"]["token"].as_str())
            .unwrap();
        let r = receiver(
            "feishu",
            &[
                ("verification_token", token),
                ("encrypt_key", s(x, "encrypt_key")),
            ],
        );
        let out = ingress::open(
            &r,
            &request(
                Method::Post,
                "",
                &HeaderList(&headers),
                s(x, "raw_body").as_bytes(),
            ),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", x["id"]));
        match x["id"].as_str().unwrap() {
            "feishu.gen.url_verification" => {
                assert_eq!(out.reply.body, br#"{"challenge":"ajls384kdjx98XX"}"#);
                assert!(out.event.is_none());
            }
            "feishu.gen.v2_event" => {
                let e = out.event.unwrap();
                assert_eq!(
                    (e.kind(), e.dedupe_key()),
                    (
                        "im.chat.member.user.added_v1",
                        "header.event_id=5e3702a84e847582be8db7fb73283c02"
                    )
                );
            }
            _ => {
                let e = out.event.unwrap();
                assert_eq!(
                    (e.kind(), e.dedupe_key()),
                    ("add_user_to_chat", "uuid=bfad5c5a4e3fdc2ae3fc5b2f6c3d1e0a")
                );
            }
        }
        // A wrong verification token is refused even with a good signature.
        let wrong = receiver(
            "feishu",
            &[
                ("verification_token", "nope"),
                ("encrypt_key", s(x, "encrypt_key")),
            ],
        );
        let err = ingress::open(
            &wrong,
            &request(
                Method::Post,
                "",
                &HeaderList(&headers),
                s(x, "raw_body").as_bytes(),
            ),
        )
        .unwrap_err();
        assert_eq!(
            (err.error.clone(), err.status()),
            (OpenError::BadToken, 403)
        );
    }
    for x in list(&v, "feishu", "negative") {
        let key = FeishuKey::new(s(x, "encrypt_key").into());
        match x["id"].as_str().unwrap() {
            "feishu.neg.bad_signature" | "feishu.neg.body_reserialized" => {
                let h = &x["headers"];
                let err = key.verify_signature(
                    s(h, "X-Lark-Request-Timestamp"),
                    s(h, "X-Lark-Request-Nonce"),
                    s(x, "raw_body").as_bytes(),
                    s(h, "X-Lark-Signature"),
                );
                assert_eq!(err, Err(OpenError::BadSignature), "{}", x["id"]);
            }
            "feishu.neg.wrong_encrypt_key" => assert!(key.decrypt(s(x, "encrypt")).is_err()),
            "feishu.neg.iv_only" => assert_eq!(
                key.decrypt(s(x, "encrypt")),
                Err(OpenError::CipherLength(16))
            ),
            other => panic!("unknown vector {other}"),
        }
    }
    for x in list(&v, "feishu", "custom_bot_sign") {
        assert_eq!(
            robot::feishu_bot_sign(s(x, "secret"), s(x, "timestamp_s")),
            s(x, "expected_sign")
        );
    }
}

#[test]
fn rust_base64_trailing_bits_pitfall() {
    let v = vectors();
    let p = &v["pitfall_checks"]["rust_base64_trailing_bits"];
    assert!(AesKey::from_encoding_aes_key(s(p, "encoding_aes_key")).is_ok());
}
