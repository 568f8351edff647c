//! Rules and durable delivery through the real server and worker: a stored callback fires
//! its rule's `http` action once (vendor retries add nothing), signed and carrying its
//! delivery id; failing sinks are retried with backoff, permanent failures go dead and come
//! back with a requeue; an unreachable sink delays, never drops.

mod common;

use common::sink::Sink;
use common::{eventually, now_ms, start, wecom_post};
use hmac::{KeyInit, Mac};
use hookgate::crypto::envelope::{AesKey, Envelope};
use hookgate::store::{DeliveryStatus, RequeueTarget};

const TOKEN: &str = "deliveryToken";
const KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const CORP: &str = "ww8f3c1e2d4b5a6978";

fn contact(user: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>\
         <CreateTime>1700000100</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event>\
         <ChangeType>create_user</ChangeType><UserID><![CDATA[{user}]]></UserID><Name><![CDATA[李四]]></Name></xml>"
    )
}

fn config(sink_url: &str) -> String {
    format!(
        r#"
[delivery]
first_retry = 1
max_backoff = 1

[[receivers]]
name = "hr"
vendor = "wecom"
path = "/wecom"
token = "{TOKEN}"
encoding_aes_key = "{KEY}"
receive_id = "{CORP}"

[[rules]]
name = "forward contacts"
receiver = "hr"
when = {{ Event = "change_contact", ChangeType = ["create_user", "update_user"] }}
[[rules.actions]]
kind = "http"
url = "{sink_url}"
secret = "sink-secret"
headers = {{ X-User = "{{{{ UserID }}}}" }}

[[rules]]
name = "ignored"
when = {{ Event = "click" }}
[[rules.actions]]
kind = "log"
message = "never"
"#
    )
}

fn envelope() -> Envelope {
    Envelope::new(
        TOKEN.into(),
        vec![AesKey::from_encoding_aes_key(KEY).unwrap()],
        CORP.into(),
    )
}

async fn callback(srv: &common::TestServer, user: &str) {
    let ts = (now_ms() / 1000).to_string();
    let (q, body) = wecom_post(&envelope(), CORP, &contact(user), &ts);
    let r = srv.post(&format!("/wecom?{q}"), &[], body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn a_matched_callback_is_forwarded_once_signed_with_its_delivery_id() {
    let sink = Sink::start(&[]).await;
    let srv = start("", &config(&sink.url("/hook"))).await;
    for _ in 0..3 {
        callback(&srv, "lisi").await;
    }
    eventually(10, "the sink got the event", || sink.received().len() == 1).await;
    let d = srv.deliveries();
    assert_eq!(d.len(), 1, "vendor retries add no delivery: {d:?}");
    eventually(10, "delivery done", || {
        srv.deliveries()[0].status == DeliveryStatus::Done
    })
    .await;

    let req = &sink.received()[0];
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/hook"));
    assert_eq!(
        req.header("x-hookgate-delivery"),
        Some(d[0].id.to_string().as_str())
    );
    assert_eq!(req.header("x-user"), Some("lisi"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"sink-secret").unwrap();
    mac.update(req.body.as_bytes());
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(req.header("x-hookgate-signature"), Some(want.as_str()));
    let event: serde_json::Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(event["fields"]["UserID"], "lisi");
    assert_eq!(event["fields"]["Name"], "李四");
    assert_eq!(event["kind"], "change_contact/create_user");
    assert_eq!(event["id"], d[0].event_id);
    srv.stop().await;
}

#[tokio::test]
async fn a_failing_sink_is_retried_until_it_answers() {
    let sink = Sink::start(&[503, 500]).await;
    let srv = start("", &config(&sink.url("/hook"))).await;
    callback(&srv, "wangwu").await;
    eventually(15, "done after two failures", || {
        srv.deliveries()
            .first()
            .is_some_and(|d| d.status == DeliveryStatus::Done)
    })
    .await;
    let d = &srv.deliveries()[0];
    assert_eq!(d.attempts, 3);
    assert_eq!(sink.received().len(), 3);
    // Every attempt of one delivery carries the same idempotency key.
    let ids: Vec<_> = sink
        .received()
        .iter()
        .map(|r| r.header("x-hookgate-delivery").unwrap().to_owned())
        .collect();
    assert!(ids.iter().all(|i| *i == d.id.to_string()), "{ids:?}");
    srv.stop().await;
}

#[tokio::test]
async fn a_permanent_failure_goes_dead_and_a_requeue_sends_it_again() {
    let sink = Sink::start(&[400]).await;
    let srv = start("", &config(&sink.url("/hook"))).await;
    callback(&srv, "zhaoliu").await;
    eventually(10, "dead after a 400", || {
        srv.deliveries()
            .first()
            .is_some_and(|d| d.status == DeliveryStatus::Dead)
    })
    .await;
    let d = srv.deliveries()[0].clone();
    assert_eq!(d.attempts, 1);
    assert!(
        d.last_error.as_deref().unwrap_or("").contains("HTTP 400"),
        "{d:?}"
    );
    let n = srv
        .store
        .requeue(RequeueTarget::AllDead, now_ms(), now_ms() + 60_000)
        .await
        .unwrap();
    assert_eq!(n, 1);
    eventually(10, "done after the requeue", || {
        srv.deliveries()[0].status == DeliveryStatus::Done
    })
    .await;
    assert_eq!(sink.received().len(), 2);
    srv.stop().await;
}

/// Security review, defect 4: a 307 moved the POST, body and custom headers to another host.
#[tokio::test]
async fn a_redirect_is_not_followed_and_names_its_location() {
    let sink = Sink::start(&[307]).await;
    let srv = start("", &config(&sink.url("/hook"))).await;
    callback(&srv, "qianqi").await;
    eventually(10, "dead after a 307", || {
        srv.deliveries()
            .first()
            .is_some_and(|d| d.status == DeliveryStatus::Dead)
    })
    .await;
    let error = srv.deliveries()[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("HTTP 307") && error.contains("/elsewhere"),
        "{error}"
    );
    assert!(
        !error.contains("from-the-redirect"),
        "the query stays out: {error}"
    );
    let paths: Vec<_> = sink.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/hook"]);
    srv.stop().await;
}

#[tokio::test]
async fn an_unreachable_sink_delays_the_delivery_and_never_drops_it() {
    // A port nothing listens on: bind, note it, close.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let srv = start("", &config(&format!("http://{closed}/hook"))).await;
    callback(&srv, "sunqi").await;
    eventually(10, "a failed attempt recorded", || {
        srv.deliveries()
            .first()
            .is_some_and(|d| d.attempts >= 1 && d.last_error.is_some())
    })
    .await;
    let d = srv.deliveries()[0].clone();
    assert_ne!(d.status, DeliveryStatus::Dead, "{d:?}");
    // Where and why, on one line (it was "request: error sending request").
    let error = d.last_error.unwrap();
    assert!(
        error.starts_with(&format!("{closed}: cannot connect: ")) && error.contains("refused"),
        "{error}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn events_no_rule_matches_get_no_delivery() {
    let sink = Sink::start(&[]).await;
    let srv = start("", &config(&sink.url("/hook"))).await;
    let ts = (now_ms() / 1000).to_string();
    let click = format!(
        "<xml><ToUserName>{CORP}</ToUserName><FromUserName>u</FromUserName><CreateTime>1</CreateTime>\
         <MsgType>event</MsgType><Event>enter_agent</Event><AgentID>1</AgentID></xml>"
    );
    let (q, body) = wecom_post(&envelope(), CORP, &click, &ts);
    assert_eq!(
        srv.post(&format!("/wecom?{q}"), &[], body.as_bytes())
            .await
            .status,
        200
    );
    assert_eq!(srv.events().len(), 1);
    assert!(srv.deliveries().is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn the_actions_of_a_rule_run_in_order_and_stop_at_a_dead_one() {
    let sink = Sink::start(&[200, 400]).await;
    let rules = format!(
        r#"
[[receivers]]
name = "hr"
vendor = "wecom"
path = "/wecom"
token = "{TOKEN}"
encoding_aes_key = "{KEY}"
receive_id = "{CORP}"

[[rules]]
name = "chain"
[[rules.actions]]
kind = "http"
url = "{0}/first"
[[rules.actions]]
kind = "http"
url = "{0}/second"
[[rules.actions]]
kind = "http"
url = "{0}/third"
"#,
        format!("http://{}", sink.addr)
    );
    let srv = start("", &rules).await;
    callback(&srv, "lisi").await;
    common::eventually_or(
        10,
        "first done, second dead, third skipped",
        || {
            let d = srv.deliveries();
            d.len() == 3
                && d.iter()
                    .all(|d| matches!(d.status, DeliveryStatus::Done | DeliveryStatus::Dead))
        },
        || format!("{:#?}", srv.deliveries()),
    )
    .await;
    let paths: Vec<String> = sink.received().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        ["/first", "/second"],
        "in order, and nothing after the dead one"
    );
    let mut d = srv.deliveries();
    d.sort_by_key(|d| d.action);
    assert_eq!(
        d.iter().map(|d| d.status).collect::<Vec<_>>(),
        [
            DeliveryStatus::Done,
            DeliveryStatus::Dead,
            DeliveryStatus::Dead
        ]
    );
    assert!(
        d[2].last_error
            .as_deref()
            .unwrap()
            .starts_with("skipped: action 1"),
        "{:?}",
        d[2]
    );
    // Retrying every dead one runs the second again, then the third after it.
    srv.store
        .requeue(RequeueTarget::AllDead, now_ms(), now_ms() + 60_000)
        .await
        .unwrap();
    common::eventually(10, "all done", || {
        srv.deliveries()
            .iter()
            .all(|d| d.status == DeliveryStatus::Done)
    })
    .await;
    let paths: Vec<String> = sink.received().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/first", "/second", "/second", "/third"]);
    srv.stop().await;
}

#[tokio::test]
async fn a_delayed_action_waits_for_its_time() {
    let sink = Sink::start(&[]).await;
    let rules = format!(
        r#"
[[receivers]]
name = "hr"
vendor = "wecom"
path = "/wecom"
token = "{TOKEN}"
encoding_aes_key = "{KEY}"
receive_id = "{CORP}"

[[rules]]
name = "later"
[[rules.actions]]
kind = "http"
url = "{}"
after = "2s"
"#,
        sink.url("/later")
    );
    let srv = start("", &rules).await;
    let sent = now_ms();
    callback(&srv, "lisi").await;
    let d = srv.deliveries();
    assert_eq!(d.len(), 1);
    assert!(
        d[0].next_attempt_at_ms >= sent + 1_900 && d[0].next_attempt_at_ms <= now_ms() + 2_000,
        "{d:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert!(sink.received().is_empty(), "not before its time");
    eventually(10, "sent once due", || sink.received().len() == 1).await;
    assert!(now_ms() - sent >= 1_900);
    srv.stop().await;
}

#[tokio::test]
async fn a_later_event_cancels_a_pending_timer_by_key() {
    let sink = Sink::start(&[]).await;
    let rules = format!(
        r#"
[[receivers]]
name = "hr"
vendor = "wecom"
path = "/wecom"
token = "{TOKEN}"
encoding_aes_key = "{KEY}"
receive_id = "{CORP}"

[[rules]]
name = "remind"
when = {{ ChangeType = "create_user" }}
[[rules.actions]]
kind = "http"
url = "{}"
after = "2s"
key = "user-{{{{ UserID }}}}"

[[rules]]
name = "settle"
when = {{ ChangeType = "delete_user" }}
[[rules.actions]]
kind = "cancel"
key = "user-{{{{ UserID }}}}"
"#,
        sink.url("/remind")
    );
    let srv = start("", &rules).await;
    callback(&srv, "lisi").await;
    callback(&srv, "wangwu").await;
    let scheduled = srv
        .store
        .deliveries(&hookgate::store::DeliveryFilter {
            status: Some(DeliveryStatus::Scheduled),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(scheduled.len(), 2);
    assert!(
        scheduled
            .iter()
            .any(|d| d.key.as_deref() == Some("user-lisi"))
    );
    // lisi leaves before the reminder is due: it is called off; wangwu's still runs.
    let ts = (now_ms() / 1000).to_string();
    let (q, body) = wecom_post(
        &envelope(),
        CORP,
        &contact("lisi").replace("create_user", "delete_user"),
        &ts,
    );
    assert_eq!(
        srv.post(&format!("/wecom?{q}"), &[], body.as_bytes())
            .await
            .status,
        200
    );
    eventually(10, "wangwu's reminder sent", || sink.received().len() == 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(sink.received().len(), 1, "lisi's reminder never goes out");
    let d = srv.deliveries();
    let lisi = d
        .iter()
        .find(|d| d.key.as_deref() == Some("user-lisi"))
        .unwrap();
    assert_eq!(lisi.status, DeliveryStatus::Cancelled);
    assert!(
        lisi.last_error
            .as_deref()
            .unwrap()
            .contains("cancelled by rule \"settle\""),
        "{lisi:?}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn at_schedules_by_a_time_in_the_event_and_the_past_runs_at_once() {
    let sink = Sink::start(&[]).await;
    let rules = format!(
        r#"
[[receivers]]
name = "hr"
vendor = "wecom"
path = "/wecom"
token = "{TOKEN}"
encoding_aes_key = "{KEY}"
receive_id = "{CORP}"

[[rules]]
name = "on the due date, minus a day"
[[rules.actions]]
kind = "http"
url = "{}"
at = "{{{{ Due | shift('-1d') }}}}"
"#,
        sink.url("/due")
    );
    let srv = start("", &rules).await;
    let send = |due_ms: i64, user: &'static str| {
        let xml = contact(user).replace("</xml>", &format!("<Due>{due_ms}</Due></xml>"));
        let ts = (now_ms() / 1000).to_string();
        wecom_post(&envelope(), CORP, &xml, &ts)
    };
    // Due in a day and 2 s: runs in about 2 s. Due yesterday: runs at once.
    let (q, body) = send(now_ms() + 86_400_000 + 2_000, "later");
    assert_eq!(
        srv.post(&format!("/wecom?{q}"), &[], body.as_bytes())
            .await
            .status,
        200
    );
    let (q, body) = send(now_ms() - 86_400_000, "past");
    assert_eq!(
        srv.post(&format!("/wecom?{q}"), &[], body.as_bytes())
            .await
            .status,
        200
    );
    eventually(10, "both sent", || sink.received().len() == 2).await;
    let users: Vec<String> = sink
        .received()
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            v["fields"]["UserID"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        users,
        ["past", "later"],
        "the past one at once, the later one on its time"
    );
    srv.stop().await;
}

/// A receiver and one rule with `actions` (TOML for its `[[rules.actions]]`).
fn steps_config(actions: &str) -> String {
    format!(
        r#"
[delivery]
first_retry = 1
max_backoff = 1

[outbound]
allow_hosts = ["127.0.0.1"]

[[receivers]]
name = "hr"
vendor = "wecom"
path = "/wecom"
token = "{TOKEN}"
encoding_aes_key = "{KEY}"
receive_id = "{CORP}"

[[rules]]
name = "look up, then act"
receiver = "hr"
{actions}
"#
    )
}

/// A lookup's answer is kept with its delivery (`as`): the next action templates from it,
/// and its retry reads the stored answer though the lookup would now answer otherwise.
#[tokio::test]
async fn a_later_action_reads_the_kept_answer_and_its_retry_reads_the_same() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let asked = std::sync::Arc::new(AtomicUsize::new(0));
    let posts = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, p) = (asked.clone(), posts.clone());
    common::http_server(listener, move |parts, body| match parts.method.as_str() {
        "GET" => {
            let n = a.fetch_add(1, Ordering::SeqCst) + 1;
            let user = parts.uri.query().unwrap_or_default().to_owned();
            let answer =
                format!(r#"{{"errcode":0,"data":{{"email":"{user}@example.com","answer":{n}}}}}"#);
            (200, "application/json", answer)
        }
        _ => {
            let mut p = p.lock().unwrap();
            p.push(String::from_utf8_lossy(&body).into_owned());
            // The first post fails: the action is retried.
            if p.len() == 1 {
                (503, "text/plain", "busy".into())
            } else {
                (200, "text/plain", "ok".into())
            }
        }
    });
    let actions = format!(
        r#"
[[rules.actions]]
kind = "http"
method = "GET"
url = "http://{addr}/users?{{{{ UserID }}}}"
keep = "data"
as = "user"
[[rules.actions]]
kind = "http"
url = "http://{addr}/mail"
body = "{{{{ steps.user.status }}}} {{{{ steps.user.body.email }}}} answer {{{{ steps.user.body.answer }}}}"
"#
    );
    let srv = start("", &steps_config(&actions)).await;
    callback(&srv, "lisi").await;
    eventually(15, "both done", || {
        let d = srv.deliveries();
        d.len() == 2 && d.iter().all(|d| d.status == DeliveryStatus::Done)
    })
    .await;
    let posts = posts.lock().unwrap().clone();
    assert_eq!(
        posts,
        [
            "200 lisi@example.com answer 1",
            "200 lisi@example.com answer 1"
        ],
        "the retry used the stored answer"
    );
    assert_eq!(asked.load(Ordering::SeqCst), 1, "the lookup ran once");
    srv.stop().await;
}

/// An action's `if` is decided when it is due, after the lookups before it: false ends it
/// `skipped`, and the rule's later actions with it.
#[tokio::test]
async fn an_if_false_when_due_skips_the_action_and_the_rest_of_the_rule() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    common::http_server(listener, |_, _| {
        (200, "application/json", r#"{"status":"已处理"}"#.into())
    });
    let actions = format!(
        r#"
[[rules.actions]]
kind = "http"
method = "GET"
url = "http://{addr}/items/{{{{ UserID }}}}"
as = "item"
[[rules.actions]]
kind = "log"
if = "steps.item.body.status == '待处理'"
message = "remind {{{{ UserID }}}}"
[[rules.actions]]
kind = "log"
message = "after the reminder"
"#
    );
    let srv = start("", &steps_config(&actions)).await;
    callback(&srv, "zhaoliu").await;
    eventually(10, "settled", || {
        let d = srv.deliveries();
        d.len() == 3
            && d.iter().all(|d| {
                d.status != DeliveryStatus::Pending
                    && d.status != DeliveryStatus::Waiting
                    && d.status != DeliveryStatus::Running
            })
    })
    .await;
    let mut d = srv.deliveries();
    d.sort_by_key(|d| d.action);
    let statuses: Vec<_> = d.iter().map(|d| d.status).collect();
    assert_eq!(
        statuses,
        [
            DeliveryStatus::Done,
            DeliveryStatus::Skipped,
            DeliveryStatus::Skipped
        ]
    );
    assert_eq!(d[1].last_error.as_deref(), Some("its if is false"));
    assert!(
        d[2].last_error
            .as_deref()
            .unwrap()
            .starts_with("skipped: action 1"),
        "{:?}",
        d[2]
    );
    srv.stop().await;
}

/// A destination that takes requests and answers none until `open` is set; it counts how
/// many wait at once.
struct Gate {
    url: String,
    open: tokio::sync::watch::Sender<bool>,
    waiting: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    most: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Gate {
    async fn start() -> Gate {
        use std::sync::atomic::Ordering::SeqCst;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/slow", listener.local_addr().unwrap());
        let (open, opened) = tokio::sync::watch::channel(false);
        let waiting = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (w, m) = (waiting.clone(), most.clone());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (w, m, mut opened) = (w.clone(), m.clone(), opened.clone());
                tokio::spawn(async move {
                    // The request's head and its JSON body (no more is sent before an answer).
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut got = 0;
                    while !String::from_utf8_lossy(&buf[..got]).contains("\r\n\r\n{") {
                        match conn.read(&mut buf[got..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got += n,
                        }
                    }
                    m.fetch_max(w.fetch_add(1, SeqCst) + 1, SeqCst);
                    let _ = opened.wait_for(|o| *o).await;
                    w.fetch_sub(1, SeqCst);
                    let _ = conn
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        Gate {
            url,
            open,
            waiting,
            most,
        }
    }
}

#[tokio::test]
async fn a_stuck_destination_takes_only_its_share_of_the_slots() {
    use std::sync::atomic::Ordering::SeqCst;
    let (gate, sink) = (Gate::start().await, Sink::start(&[]).await);
    let rule = |name: &str, url: &str| {
        format!(
            "[[rules]]\nname = \"{name}\"\nreceiver = \"hr\"\nwhen = {{ Event = \"change_contact\" }}\n\
             [[rules.actions]]\nkind = \"http\"\nurl = \"{url}\"\n"
        )
    };
    let cfg = format!(
        "[delivery]\nconcurrency = 4\nper_destination = 2\n\n\
         [[receivers]]\nname = \"hr\"\nvendor = \"wecom\"\npath = \"/wecom\"\ntoken = \"{TOKEN}\"\n\
         encoding_aes_key = \"{KEY}\"\nreceive_id = \"{CORP}\"\n\n{}\n{}",
        rule("stuck", &gate.url),
        rule("quick", &sink.url("/quick")),
    );
    let srv = start("", &cfg).await;
    // 14 for the stuck one: 2 run, 12 wait their turn in memory (a lane new or keeping up
    // holds a claim's worth).
    for i in 0..14 {
        callback(&srv, &format!("user{i}")).await;
    }
    eventually(10, "every quick delivery went through", || {
        sink.received().len() == 14
    })
    .await;
    eventually(5, "two wait at the stuck destination", || {
        gate.waiting.load(SeqCst) == 2
    })
    .await;
    // A second on, it does not keep up: 6 more go back to the store, and the claims pass
    // them by for the quick sink.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    for i in 14..20 {
        callback(&srv, &format!("user{i}")).await;
    }
    eventually(10, "the later quick deliveries went through", || {
        sink.received().len() == 20
    })
    .await;
    assert_eq!(gate.most.load(SeqCst), 2, "never more than per_destination");
    let metrics = srv.get("/metrics").await.text();
    let deferred = metrics
        .lines()
        .find(|l| l.starts_with("hookgate_deliveries_total") && l.contains("\"deferred\""))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u32>().ok());
    assert!(
        deferred.is_some_and(|n| n >= 6),
        "the overflow went back to the store: {metrics}"
    );

    gate.open.send(true).unwrap();
    eventually(20, "every delivery done", || {
        let d = srv.deliveries();
        d.len() == 40 && d.iter().all(|d| d.status == DeliveryStatus::Done)
    })
    .await;
    // Waiting for room spent no attempt.
    assert!(srv.deliveries().iter().all(|d| d.attempts == 1));
    assert!(gate.most.load(SeqCst) <= 2);
    srv.stop().await;
}
