//! The admin API over HTTP against the real app: without credentials nothing (not even a
//! count) is told; a viewer reads but cannot write; an operator's writes need the console's
//! CSRF header and are stored in the audit trail; a dead delivery is retried, a timer
//! cancelled, an event replayed through the rules loaded now (once per unfinished rule);
//! the live tail shows a callback as it is committed.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use common::start_file;
use serde_json::Value;

const CONFIG: &str = r#"
[server]
listen = "${HOOKGATE_LISTEN}"
admin_listen = "127.0.0.1:0"

[store]
path = "${HOOKGATE_DB}"

[delivery]
give_up_after = 0

[admin]
users = ["ann:${ANN_PASSWORD}"]
tokens = ["grafana:sha256:SHA", "deploy:${DEPLOY_TOKEN}"]
operators = ["ann", "deploy"]

[[receivers]]
name = "forms"
vendor = "webhook"
path = "/hooks/forms"
auth = "none"
kind = "{{ type }}"
dedupe_key = "{{ id }}"

[[rules]]
name = "forward"
receiver = "forms"
[[rules.actions]]
kind = "http"
url = "http://127.0.0.1:9/nobody-listens"
body = "{{ id }}"

[[rules]]
name = "remind"
receiver = "forms"
[[rules.actions]]
kind = "log"
after = "1h"
key = "item-{{ id }}"
message = "reminder {{ id }}"
"#;

const VIEWER_TOKEN: &str = "viewer-token-for-dashboards";
const DEPLOY_TOKEN: &str = "deploy-token-0123456789abcdef";

struct Api(SocketAddr);

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        csrf: bool,
        body: &str,
    ) -> (u16, Value, String) {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.0,
            body.len()
        );
        if let Some(a) = auth {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        if csrf {
            req.push_str("X-Hookgate-CSRF: 1\r\n");
        }
        req.push_str("\r\n");
        req.push_str(body);
        let r = common::raw(self.0, req.as_bytes()).await;
        let json = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        (r.status, json, r.head)
    }
}

fn basic(user: &str, pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

async fn post_form(srv: &common::TestServer, id: &str) {
    let body = format!(r#"{{"id":"{id}","type":"submitted"}}"#);
    let r = srv
        .post(
            "/hooks/forms",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_csrf_retry_cancel_replay_audit_and_the_live_tail() {
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(VIEWER_TOKEN.as_bytes()));
    let config = CONFIG.replace("SHA", &sha);
    let vars = [
        ("ANN_PASSWORD", "ann-secret-pw"),
        ("DEPLOY_TOKEN", DEPLOY_TOKEN),
    ];
    let srv = start_file(&config, &vars).await;
    let api = Api(srv.admin_addr().expect("admin listener"));
    let viewer = format!("Bearer {VIEWER_TOKEN}");
    let ann = basic("ann", "ann-secret-pw");

    // The live tail, open before the callback arrives.
    let mut tail = tokio::net::TcpStream::connect(api.0).await.unwrap();
    let head = format!("GET /api/v1/tail HTTP/1.1\r\nHost: x\r\nAuthorization: {viewer}\r\n\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut tail, head.as_bytes())
        .await
        .unwrap();
    let mut seen = Vec::new();
    read_until(&mut tail, &mut seen, ":tail").await;

    post_form(&srv, "f-1").await;
    read_until(&mut tail, &mut seen, "\"dedupe_key\":\"f-1\"").await;
    let shown = String::from_utf8_lossy(&seen).to_string();
    assert!(
        shown.contains("event: callback") && shown.contains("\"actions\":2"),
        "{shown}"
    );

    // Without credentials (or with wrong ones): 401, and nothing about the store.
    for auth in [
        None,
        Some("Bearer nope-nope-nope-nope"),
        Some(basic("ann", "wrong").as_str()),
    ] {
        let (status, body, head) = api.call("GET", "/api/v1/events", auth, false, "").await;
        assert_eq!(status, 401, "{auth:?}");
        assert!(!body.to_string().contains("f-1"));
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: basic"),
            "{head}"
        );
    }
    // A viewer reads events, and the event with its deliveries.
    let (status, page, _) = api
        .call(
            "GET",
            "/api/v1/events?receiver=forms",
            Some(&viewer),
            false,
            "",
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let id = page["items"][0]["id"].as_i64().unwrap();
    assert_eq!(page["items"][0]["dedupe_key"], "f-1");
    let (_, me, _) = api
        .call("GET", "/api/v1/whoami", Some(&viewer), false, "")
        .await;
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some("grafana"), Some("viewer"))
    );

    // The forward goes dead (nobody listens, no retry window); its attempt is recorded.
    let dead = eventually_json(&api, &viewer, "/api/v1/deliveries?status=dead&rule=forward").await;
    let dead_id = dead["items"][0]["id"].as_i64().unwrap();
    // /metrics tells the dead letters and timers by rule.
    let scrape = common::raw(
        api.0,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&scrape.body).to_string();
    assert!(
        text.contains("hookgate_dead_deliveries{rule=\"forward\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("hookgate_scheduled_timers{rule=\"remind\"} 1"),
        "{text}"
    );
    assert_eq!(
        dead["items"][0]["attempt_log"][0]["outcome"], "dead",
        "{dead}"
    );
    let (_, event, _) = api
        .call(
            "GET",
            &format!("/api/v1/events/{id}"),
            Some(&viewer),
            false,
            "",
        )
        .await;
    assert_eq!(
        event["rules"],
        serde_json::json!(["forward", "remind"]),
        "{event}"
    );
    assert_eq!(event["event"]["fields"]["id"], "f-1");

    // A viewer may not write; an operator without the CSRF header may not either.
    let retry = format!("/api/v1/deliveries/{dead_id}/retry");
    assert_eq!(
        api.call("POST", &retry, Some(&viewer), true, "").await.0,
        403
    );
    let (status, body, _) = api.call("POST", &retry, Some(&ann), false, "").await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("X-Hookgate-CSRF"));
    let (status, body, _) = api.call("POST", &retry, Some(&ann), true, "").await;
    assert_eq!((status, body["queued"].as_i64()), (200, Some(1)), "{body}");

    // The timer is cancelled by key. Then both rules have finished for the event (dead,
    // cancelled), so a replay plans both again through the rules loaded now.
    let cancel = api
        .call(
            "POST",
            "/api/v1/deliveries/cancel",
            Some(&format!("Bearer {DEPLOY_TOKEN}")),
            true,
            r#"{"key":"item-f-1"}"#,
        )
        .await;
    assert_eq!(
        (cancel.0, cancel.1["cancelled"].as_i64()),
        (200, Some(1)),
        "{}",
        cancel.1
    );
    eventually_json(&api, &viewer, "/api/v1/deliveries?status=dead&rule=forward").await;
    let (status, replayed, _) = api
        .call(
            "POST",
            &format!("/api/v1/events/{id}/replay"),
            Some(&ann),
            true,
            "",
        )
        .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(
        (replayed["replay"].as_i64(), replayed["deliveries"].as_i64()),
        (Some(1), Some(2)),
        "{replayed}"
    );
    // Replayed again at once: the new reminder is a timer still pending, so its rule is
    // left out (it would run twice).
    let (_, again, _) = api
        .call(
            "POST",
            &format!("/api/v1/events/{id}/replay"),
            Some(&ann),
            true,
            "",
        )
        .await;
    assert!(again["unfinished"].as_i64().unwrap() >= 1, "{again}");
    let (_, timers, _) = api
        .call("GET", "/api/v1/timers", Some(&viewer), false, "")
        .await;
    assert_eq!(timers["items"][0]["replay"].as_i64(), Some(1), "{timers}");

    // Every write is in the audit trail, with who did it.
    let (_, trail, _) = api
        .call("GET", "/api/v1/audit", Some(&viewer), false, "")
        .await;
    let rows: Vec<(String, String)> = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["who"].as_str().unwrap().to_owned(),
                r["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = |w: &str, a: &str| (w.to_owned(), a.to_owned());
    assert_eq!(
        rows,
        vec![
            want("ann", "replay"),
            want("ann", "replay"),
            want("deploy", "cancel"),
            want("ann", "retry")
        ]
    );

    // Explain a pasted body; the rules carry their config lines.
    let ask =
        serde_json::json!({"receiver": "forms", "body": r#"{"id":"x","type":"t"}"#}).to_string();
    let (status, explained, _) = api
        .call("POST", "/api/v1/explain", Some(&ann), true, &ask)
        .await;
    assert_eq!(status, 200, "{explained}");
    assert_eq!(explained["rules"][0]["fires"], true);
    assert!(
        explained["rules"][1]["actions"][0]["rendered"]
            .as_str()
            .unwrap()
            .contains("reminder x"),
        "{explained}"
    );
    let (_, rules, _) = api
        .call("GET", "/api/v1/rules", Some(&viewer), false, "")
        .await;
    assert_eq!(rules[0]["name"], "forward");
    assert!(rules[0]["line"].as_u64().unwrap() > 20, "{rules}");
    srv.stop().await;
}

async fn eventually_json(api: &Api, auth: &str, path: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        let (_, body, _) = api.call("GET", path, Some(auth), false, "").await;
        if body["items"].as_array().is_some_and(|a| !a.is_empty()) {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path}: nothing after 10 s: {last}");
}

async fn read_until(stream: &mut tokio::net::TcpStream, seen: &mut Vec<u8>, needle: &str) {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(seen).contains(needle) {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in {}", String::from_utf8_lossy(seen)))
            .unwrap();
        assert!(n > 0, "the tail closed");
        seen.extend_from_slice(&buf[..n]);
    }
}

/// The real binary, started from a file: a reload through the API swaps a good file in and
/// answers 422 with the problems of a broken one (the running config stays); the console's
/// page comes with its security headers and holds no data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_through_the_api_and_the_console_page() {
    let dir = tempfile::tempdir().unwrap();
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = dir.path().join("hookgate.toml");
    let write = |rule: &str| {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"{admin}\"\n[store]\npath = \"var/h.db\"\n\
             [admin]\ntokens = [\"ops:{DEPLOY_TOKEN}\"]\noperators = [\"ops\"]\n\
             [[receivers]]\nname = \"forms\"\nvendor = \"webhook\"\npath = \"/f\"\nauth = \"none\"\n\
             [[rules]]\nname = \"{rule}\"\n[[rules.actions]]\nkind = \"log\"\nmessage = \"x\"\n"
        );
        std::fs::write(&config, text).unwrap();
    };
    write("first");
    let _served = common::Served::start(&config, &[]);
    let api = Api(admin);
    let auth = format!("Bearer {DEPLOY_TOKEN}");
    let mut up = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(admin).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the admin listener did not come up");
    write("second");
    let (status, body, _) = api
        .call("POST", "/api/v1/reload", Some(&auth), true, "")
        .await;
    assert_eq!(
        (status, body["reloaded"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    let (_, rules, _) = api
        .call("GET", "/api/v1/rules", Some(&auth), false, "")
        .await;
    assert_eq!(rules[0]["name"], "second", "{rules}");
    std::fs::write(&config, "[server]\nlisten = \"nope\"\n").unwrap();
    let (status, body, _) = api
        .call("POST", "/api/v1/reload", Some(&auth), true, "")
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("server.listen"),
        "{body}"
    );
    let (_, rules, _) = api
        .call("GET", "/api/v1/rules", Some(&auth), false, "")
        .await;
    assert_eq!(rules[0]["name"], "second", "the running config stays");
    // The page: no credentials needed (it holds nothing), a strict policy.
    let page = common::raw(
        admin,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let head = page.head.to_ascii_lowercase();
    assert_eq!(page.status, 200);
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );
    assert!(
        head.contains("x-frame-options: deny") && head.contains("nosniff"),
        "{head}"
    );
    assert!(String::from_utf8_lossy(&page.body).contains("/console.js"));
}
