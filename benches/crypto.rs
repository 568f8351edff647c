//! Verify + decrypt + parse, per vendor, through the same `ingress::open` the server calls.
//! `cargo bench --bench crypto`; compare with `openssl speed -evp aes-256-cbc`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hookgate::config;
use hookgate::crypto::Freshness;
use hookgate::crypto::envelope::{AesKey, Envelope, Signed};
use hookgate::ingress::{self, HeaderList, Method, Request};
use std::hint::black_box;

const KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";

fn receivers() -> config::Config {
    let src = format!(
        "[[receivers]]\nname = \"w\"\nvendor = \"wecom\"\npath = \"/w\"\ntoken = \"tok\"\nencoding_aes_key = \"{KEY}\"\nreceive_id = \"ww1\"\ntimestamp_window = 0\n\
         [[receivers]]\nname = \"d\"\nvendor = \"dingtalk\"\npath = \"/d\"\ntoken = \"tok\"\nencoding_aes_key = \"{KEY}\"\nreceive_id = \"ding1\"\ntimestamp_window = 0\n\
         [[receivers]]\nname = \"h\"\nvendor = \"webhook\"\npath = \"/h\"\nauth = \"hmac\"\nauth_query = \"sig\"\nsecret = \"tok\"\n"
    );
    config::parse(&src, &|_| None).unwrap()
}

/// A WeCom text message padded to about 1 KiB of XML.
fn wecom_xml() -> String {
    let content = "消息内容 hookgate benchmark ".repeat(30);
    let xml = format!(
        "<xml><ToUserName><![CDATA[ww1]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName>\
         <CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>\
         <MsgId>7281936450123456789</MsgId><AgentID>1000002</AgentID></xml>"
    );
    xml.chars().take(1024 - 200).collect::<String>()
        + "]]></Content><MsgId>7281936450123456789</MsgId><AgentID>1000002</AgentID></xml>"
}

fn bench(c: &mut Criterion) {
    let config = receivers();
    let (wecom, ding, hook) = (
        &config.receivers[0],
        &config.receivers[1],
        &config.receivers[2],
    );
    let env = |rid: &str| {
        Envelope::new(
            "tok".into(),
            vec![AesKey::from_encoding_aes_key(KEY).unwrap()],
            rid.into(),
        )
    };

    let xml = wecom_xml();
    let sealed = env("ww1").seal(0, xml.as_bytes(), "1700000000", "nonce");
    let query = format!(
        "msg_signature={}&timestamp=1700000000&nonce=nonce",
        sealed.msg_signature
    );
    let body = format!(
        "<xml><ToUserName><![CDATA[ww1]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>",
        sealed.encrypt
    );
    let headers = HeaderList(&[]);

    let mut g = c.benchmark_group("wecom_1k");
    g.throughput(Throughput::Bytes(xml.len() as u64));
    let signed = Signed {
        timestamp: "1700000000",
        nonce: "nonce",
        signature: &sealed.msg_signature,
    };
    let wenv = env("ww1");
    g.bench_function("verify_decrypt", |b| {
        b.iter(|| {
            wenv.open(
                black_box(&signed),
                black_box(&sealed.encrypt),
                Freshness {
                    now_ms: 0,
                    window_secs: 0,
                },
            )
            .unwrap()
        })
    });
    // The same plaintext to a webhook receiver, its HMAC-SHA256 in the query.
    let mac = hookgate::crypto::webhook::hmac(
        hookgate::crypto::webhook::Algorithm::Sha256,
        b"tok",
        &[xml.as_bytes()],
    );
    let hook_query = format!(
        "sig={}",
        mac.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    g.bench_function("webhook_hmac_open_parse", |b| {
        b.iter(|| {
            let req = Request {
                method: Method::Post,
                query: &hook_query,
                headers: &headers,
                body: black_box(xml.as_bytes()),
                now_ms: 0,
                peer: None,
            };
            ingress::open(hook, &req).unwrap()
        })
    });
    g.bench_function("open_verify_decrypt_parse", |b| {
        b.iter(|| {
            let req = Request {
                method: Method::Post,
                query: &query,
                headers: &headers,
                body: black_box(body.as_bytes()),
                now_ms: 0,
                peer: None,
            };
            ingress::open(wecom, &req).unwrap()
        })
    });
    g.finish();

    let event = r#"{"EventType":"user_add_org","TimeStamp":"1700000000456","UserId":["0119296xxx1","manager4220"],"OptStaffId":"manager4220","CorpId":"dingcorp1234567890abcdef","eventId":"c7c7120f2c07419ebdba0318c8"}"#;
    let sealed = env("ding1").seal(0, event.as_bytes(), "1700000000456", "nonce");
    let query = format!(
        "signature={}&timestamp=1700000000456&nonce=nonce",
        sealed.msg_signature
    );
    let body = format!("{{\"encrypt\":\"{}\"}}", sealed.encrypt);
    let mut g = c.benchmark_group("dingtalk");
    g.throughput(Throughput::Bytes(event.len() as u64));
    g.bench_function("open_verify_decrypt_parse_reply", |b| {
        b.iter(|| {
            let req = Request {
                method: Method::Post,
                query: &query,
                headers: &headers,
                body: black_box(body.as_bytes()),
                now_ms: 0,
                peer: None,
            };
            ingress::open(ding, &req).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
