//! The real `hookgate` binary: `check` on good and bad files, `serve` on 127.0.0.1:0 with a
//! URL check and an event over HTTP, `events list`/`show`, and shutdown on SIGTERM.

mod common;

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_hookgate");

#[test]
fn check_accepts_the_example_and_names_every_problem() {
    let ok = Command::new(BIN)
        .args(["check", "--config", "config/hookgate.example.toml"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        out.contains("hr") && out.contains("/hooks/wecom/hr") && out.contains("dingtalk_robot"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[receivers]]\nname = \"a\"\nvendor = \"wecom\"\npath = \"/a\"\ntoken = \"${UNSET_FOR_TEST}\"\nencoding_aes_key = \"short\"\nreceive_id = \"\"\ncolour = 1\n").unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&bad)
        .env_remove("UNSET_FOR_TEST")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for line in [
        ":5: receivers[0].token: environment variable UNSET_FOR_TEST is not set",
        ":6: receivers[0].encoding_aes_key: malformed EncodingAESKey (-40004)",
        ":8: receivers[0].colour: unknown key",
    ] {
        assert!(err.contains(line), "missing {line:?} in\n{err}");
    }
}

#[tokio::test]
async fn serve_answers_stores_and_lists() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db/hookgate.db");
    let config = dir.path().join("hookgate.toml");
    let example = std::fs::read_to_string("config/hookgate.example.toml").unwrap();
    std::fs::write(&config, example).unwrap();
    let served = common::Served::start(
        &config,
        &[
            ("HOOKGATE_LISTEN", "127.0.0.1:0".as_ref()),
            ("HOOKGATE_DB", db.as_os_str()),
            ("WECOM_HR_TOKEN", "tok".as_ref()),
        ],
    );
    let addr = served.addr;

    let env = hookgate::crypto::envelope::Envelope::new(
        "tok".into(),
        vec![
            hookgate::crypto::envelope::AesKey::from_encoding_aes_key(
                "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
            )
            .unwrap(),
        ],
        "wx5823bf96d3bd56c7".into(),
    );
    let ts = (common::now_ms() / 1000).to_string();
    let sealed = env.seal(0, b"1616140317555161061", &ts, "n");
    let target = format!(
        "/hooks/wecom/hr?msg_signature={}&timestamp={ts}&nonce=n&echostr={}",
        sealed.msg_signature,
        common::enc(&sealed.encrypt)
    );
    let r = common::raw(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!((r.status, r.text().as_str()), (200, "1616140317555161061"));

    let msg = "<xml><FromUserName>u</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>hi</Content><MsgId>77</MsgId></xml>";
    let sealed = env.seal(0, msg.as_bytes(), &ts, "n");
    let body = format!(
        "<xml><Encrypt><![CDATA[{}]]></Encrypt></xml>",
        sealed.encrypt
    );
    let req = format!(
        "POST /hooks/wecom/hr?msg_signature={}&timestamp={ts}&nonce=n HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        sealed.msg_signature,
        body.len()
    );
    assert_eq!(common::raw(addr, req.as_bytes()).await.status, 200);

    let list = Command::new(BIN)
        .args(["events", "list", "--config"])
        .arg(&config)
        .env("HOOKGATE_DB", &db)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&list.stdout);
    assert!(
        out.contains("MsgId=77") && out.contains(" hr "),
        "{out}{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let show = Command::new(BIN)
        .args(["events", "show", "1", "--config"])
        .arg(&config)
        .env("HOOKGATE_DB", &db)
        .output()
        .unwrap();
    let event: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(event["fields"]["Content"], "hi");

    // SIGTERM: a clean exit.
    let status = served.terminate();
    assert!(status.success(), "{status:?}");
}
