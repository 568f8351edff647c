//! Several real `hookgate serve` processes on one PostgreSQL database (a scratch server from
//! tests/pg/start.sh, a fresh schema per test): every callback sent to both replicas at once
//! is stored once and delivered once; concurrent events of one item make one group; a robot's
//! 20-a-minute budget holds across replicas; a replica killed with SIGKILL mid-delivery has its
//! deliveries finished by the other after the lease; a lost database answers 503 and turns
//! /readyz red, and the gateway recovers by itself; a scheduled rule fires once per slot.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::apps::{AppState, Apps};
use common::vendors::{State, Vendors};
use common::{Served, eventually_or, now_ms, pg, wecom_post};
use hookgate::config::StoreConfig;
use hookgate::crypto::envelope::{AesKey, Envelope};
use hookgate::store::{DeliveryFilter, DeliveryRow, DeliveryStatus, ListFilter, Store};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "replicaToken";
const KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const CORP: &str = "ww8f3c1e2d4b5a6978";

/// A WeCom receiver plus `rules`, on the PostgreSQL store at `${HOOKGATE_STORE_URL}`.
fn wecom_config(rules: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[store]
url = "${{HOOKGATE_STORE_URL}}"
pool_size = 8
lease = "2s"
[delivery]
first_retry = 1
max_backoff = 2
concurrency = 8

[[receivers]]
name = "hr"
vendor = "wecom"
path = "/wecom"
token = "{TOKEN}"
encoding_aes_key = "{KEY}"
receive_id = "{CORP}"
{rules}
"#
    )
}

struct Replicas {
    dir: tempfile::TempDir,
    url: String,
}

impl Replicas {
    fn new(tag: &str, config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hookgate.toml"), config).unwrap();
        Self {
            dir,
            url: pg::fresh_url(tag),
        }
    }

    /// One more `hookgate serve` on the shared database (through `url`, if given).
    fn start(&self, url: Option<&str>, env: &[(&str, &str)]) -> Served {
        let url = url.unwrap_or(&self.url);
        let mut vars: Vec<(&str, &std::ffi::OsStr)> =
            vec![("HOOKGATE_STORE_URL", std::ffi::OsStr::new(url))];
        vars.extend(env.iter().map(|(k, v)| (*k, std::ffi::OsStr::new(*v))));
        Served::start(&self.dir.path().join("hookgate.toml"), &vars)
    }

    /// A [`Cut`] in front of the database, and the store URL that goes through it.
    async fn through_cut(&self) -> (Cut, String) {
        let server = pg::server_addr();
        let (cut, proxy) = Cut::start(server).await;
        (
            cut,
            self.url.replace(&server.to_string(), &proxy.to_string()),
        )
    }

    async fn store(&self) -> Store {
        Store::open(&StoreConfig::postgres(&self.url))
            .await
            .unwrap()
    }
}

async fn deliveries(store: &Store) -> Vec<DeliveryRow> {
    store
        .deliveries(&DeliveryFilter {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap()
}

fn by_status(rows: &[DeliveryRow]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for d in rows {
        *m.entry(d.status.as_str()).or_default() += 1;
    }
    m
}

/// A WeCom text message callback (MsgId `i`) as an HTTP request.
fn wecom_request(i: usize) -> String {
    let env = Envelope::new(
        TOKEN.into(),
        vec![AesKey::from_encoding_aes_key(KEY).unwrap()],
        CORP.into(),
    );
    let xml = format!(
        "<xml><ToUserName>{CORP}</ToUserName><FromUserName>u{i}</FromUserName><CreateTime>1</CreateTime>\
         <MsgType>text</MsgType><Content>hello {i}</Content><MsgId>{i}</MsgId></xml>"
    );
    let (q, body) = wecom_post(&env, CORP, &xml, &(now_ms() / 1000).to_string());
    format!(
        "POST /wecom?{q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The status of one request (0 when the connection failed).
async fn status(addr: SocketAddr, request: &str) -> u16 {
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(request.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        String::from_utf8_lossy(&out)
            .split(' ')
            .nth(1)?
            .parse()
            .ok()
    })
    .await;
    answered.ok().flatten().unwrap_or(0)
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
}

/// An HTTP sink that records the `X-Hookgate-Delivery` of every request and, while `hold`
/// is set, never answers (a request in flight for as long as the sender waits).
#[derive(Clone, Default)]
struct Gate {
    hold: Arc<std::sync::atomic::AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    answered: Arc<Mutex<Vec<String>>>,
}

impl Gate {
    async fn start(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = self.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let gate = gate.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        let Ok(n) = s.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break p;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let header = |name: &str| {
                        head.lines()
                            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
                    };
                    let id = header("x-hookgate-delivery:").unwrap_or_default();
                    let len: usize = header("content-length:")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + 4 + len {
                        match s.read(&mut chunk).await {
                            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                    gate.seen.lock().unwrap().push(id.clone());
                    if gate.hold.load(std::sync::atomic::Ordering::SeqCst) {
                        // Hold the connection open, unanswered, until the peer goes away.
                        let _ = s.read(&mut chunk).await;
                        return;
                    }
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                    gate.answered.lock().unwrap().push(id);
                });
            }
        });
        addr
    }
}

fn http_rule(addr: SocketAddr) -> String {
    format!(
        r#"
[[rules]]
name = "forward"
[[rules.actions]]
kind = "http"
url = "http://{addr}/in"
timeout = 3
body = "{{{{ Content }}}}"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_callback_sent_to_both_replicas_is_stored_and_delivered_once() {
    let gate = Gate::default();
    let sink = gate.start().await;
    let replicas = Replicas::new("once", &wecom_config(&http_rule(sink)));
    let a = replicas.start(None, &[]);
    let b = replicas.start(None, &[]);
    const N: usize = 1000;
    let mut tasks = tokio::task::JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(48));
    for i in 0..N {
        let request = wecom_request(i);
        // Half go to A first, half to B first; the copy is sent at the same moment.
        let (first, second) = if i % 2 == 0 {
            (a.addr, b.addr)
        } else {
            (b.addr, a.addr)
        };
        let limit = limit.clone();
        tasks.spawn(async move {
            let _slot = limit.acquire_owned().await.unwrap();
            let (x, y) = tokio::join!(status(first, &request), status(second, &request));
            (i, x, y)
        });
    }
    while let Some(r) = tasks.join_next().await {
        let (i, x, y) = r.unwrap();
        assert_eq!((x, y), (200, 200), "callback {i}");
    }
    let store = replicas.store().await;
    let events = store
        .list(&ListFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), N);
    let rows = deliveries(&store).await;
    assert_eq!(rows.len(), N, "one delivery per event");
    let mut done = BTreeMap::new();
    for _ in 0..600 {
        done = by_status(&deliveries(&store).await);
        if done.get("done") == Some(&N) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(done.get("done"), Some(&N), "{done:?}");
    // Late duplicates would come after: give them a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = gate.seen.lock().unwrap().clone();
    let distinct: HashSet<&String> = seen.iter().collect();
    assert_eq!(
        (seen.len(), distinct.len()),
        (N, N),
        "every delivery ran exactly once"
    );
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_rule_fires_once_per_slot_across_two_replicas() {
    let gate = Gate::default();
    let sink = gate.start().await;
    let rule = format!(
        r#"
[[rules]]
name = "tick"
every = "1s"
[[rules.actions]]
kind = "http"
url = "http://{sink}/tick"
timeout = 3
body = "{{{{ slot_ms }}}}"
"#
    );
    let replicas = Replicas::new("schedule", &wecom_config(&rule));
    let a = replicas.start(None, &[]);
    let b = replicas.start(None, &[]);
    let store = replicas.store().await;
    let slots = || async {
        let events = store
            .list(&ListFilter {
                receiver: Some("schedule".into()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut slots: Vec<i64> = events
            .iter()
            .map(|e| e.dedupe_key.rsplit_once('@').unwrap().1.parse().unwrap())
            .collect();
        slots.sort_unstable();
        slots
    };
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = slots().await;
        if seen.len() >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((a, b));
    let seen_after = slots().await;
    assert!(seen_after.len() >= 6, "{seen_after:?}");
    // Every slot while both ran, in a row, each stored once.
    let first = seen_after[0];
    let expected: Vec<i64> = (first..first + seen_after.len() as i64).collect();
    assert_eq!(seen_after, expected, "one event per slot, none missing");
    let rows = deliveries(&store).await;
    assert_eq!(
        rows.len(),
        seen_after.len(),
        "one delivery per slot, not one per replica"
    );
    let sent = gate.seen.lock().unwrap().clone();
    let distinct: HashSet<&String> = sent.iter().collect();
    assert_eq!(
        distinct.len(),
        sent.len(),
        "no delivery sent twice: {sent:?}"
    );
    assert!(
        sent.len() + 1 >= seen.len(),
        "{} sent for {:?}",
        sent.len(),
        seen
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_delivery_is_finished_by_the_other_after_its_lease() {
    let gate = Gate::default();
    gate.hold.store(true, std::sync::atomic::Ordering::SeqCst);
    let sink = gate.start().await;
    let replicas = Replicas::new("kill", &wecom_config(&http_rule(sink)));
    let mut a = replicas.start(None, &[]);
    for i in 0..20 {
        assert_eq!(status(a.addr, &wecom_request(i)).await, 200);
    }
    // A's deliveries are in flight (the sink holds them), claimed by A.
    let store = replicas.store().await;
    eventually_or(
        10,
        "A has deliveries in flight",
        || gate.seen.lock().unwrap().len() >= 8,
        || format!("{:?}", gate.seen.lock().unwrap()),
    )
    .await;
    let in_flight: Vec<i64> = deliveries(&store)
        .await
        .iter()
        .filter(|d| d.status == DeliveryStatus::Running)
        .map(|d| d.id)
        .collect();
    assert!(!in_flight.is_empty());
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed_at = std::time::Instant::now();
    gate.hold.store(false, std::sync::atomic::Ordering::SeqCst);
    let b = replicas.start(None, &[]);
    let mut rows = Vec::new();
    for _ in 0..300 {
        rows = deliveries(&store).await;
        if rows.iter().all(|d| d.status == DeliveryStatus::Done) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        rows.iter().all(|d| d.status == DeliveryStatus::Done),
        "{:?}",
        by_status(&rows)
    );
    // Those A held were run again, by B, once their 2 s lease had lapsed.
    assert!(killed_at.elapsed() >= Duration::from_secs(2));
    for id in &in_flight {
        let d = rows.iter().find(|d| d.id == *id).unwrap();
        assert!(d.attempts >= 2, "{d:?}");
    }
    let answered: HashSet<String> = gate.answered.lock().unwrap().iter().cloned().collect();
    assert_eq!(answered.len(), 20, "every delivery answered once it ran");
    drop(b);
}

/// Security review, defect 2: a DingTalk robot's sign covers no body, so a captured pair sent
/// with another body to the other replica must be refused there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_robot_sign_is_refused_by_every_replica() {
    let bot = "[[receivers]]\nname = \"bot\"\nvendor = \"dingtalk_robot\"\npath = \"/bot\"\napp_secret = \"s\"\n";
    let replicas = Replicas::new("signs", &wecom_config(bot));
    let a = replicas.start(None, &[]);
    let b = replicas.start(None, &[]);
    let ts = now_ms().to_string();
    let sign = hookgate::crypto::robot::sign("s", &ts);
    let post = |body: &str| {
        format!(
            "POST /bot HTTP/1.1\r\nHost: x\r\nConnection: close\r\ntimestamp: {ts}\r\nsign: {sign}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let first = r#"{"msgtype":"text","text":{"content":"hi"},"msgId":"m-1"}"#;
    let forged = r#"{"msgtype":"text","text":{"content":"evil"},"msgId":"m-2","sessionWebhook":"http://10.0.0.1/"}"#;
    assert_eq!(status(a.addr, &post(first)).await, 200);
    assert_eq!(
        status(b.addr, &post(first)).await,
        200,
        "a retry of the same body"
    );
    assert_eq!(status(b.addr, &post(forged)).await, 403);
    let store = Store::open(&StoreConfig::postgres(&replicas.url))
        .await
        .unwrap();
    let events = store
        .list(&ListFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robots_budget_holds_across_replicas() {
    let vendors = Vendors::start(State {
        dingtalk: [("tok".to_owned(), None)].into(),
        ..State::default()
    })
    .await;
    let rules = format!(
        r#"
[outbound]
allow_hosts = ["127.0.0.1"]

[[rules]]
name = "robot"
[[rules.actions]]
kind = "dingtalk_robot"
webhook = "{}"
message = {{ msgtype = "text", text = {{ content = "{{{{ Content }}}}" }} }}
"#,
        vendors.url("/robot/send?access_token=tok")
    );
    let replicas = Replicas::new("robot", &wecom_config(&rules));
    let a = replicas.start(None, &[]);
    let b = replicas.start(None, &[]);
    for i in 0..40 {
        let to = if i % 2 == 0 { a.addr } else { b.addr };
        assert_eq!(status(to, &wecom_request(i)).await, 200);
    }
    let store = replicas.store().await;
    eventually_or(
        20,
        "20 sent and the other 20 waiting for the next minute",
        || vendors.accepted().len() >= 20,
        || format!("{:?}", vendors.answers()),
    )
    .await;
    // Every delivery has been tried by now (sent, or deferred to the next minute without
    // counting an attempt); nothing more may go out within the minute.
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = deliveries(&store).await;
        let waiting = rows
            .iter()
            .filter(|d| {
                d.status == DeliveryStatus::Pending
                    && d.attempts == 0
                    && d.next_attempt_at_ms > d.created_at_ms
            })
            .count();
        if waiting == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(vendors.accepted().len(), 20);
    assert!(
        vendors.answers().iter().all(|(_, code)| *code == 0),
        "the vendor had to throttle: {:?}",
        vendors.answers()
    );
    assert_eq!(
        by_status(&rows).get("done"),
        Some(&20),
        "{:?}",
        by_status(&rows)
    );
    drop((a, b));
}

fn ding_start(instance: &str, at: i64) -> String {
    json!({
        "EventType": "bpms_instance_change",
        "processInstanceId": instance,
        "corpId": "ding-corp",
        "createTime": at,
        "title": format!("张三的报销 {instance}"),
        "type": "start",
        "staffId": "zhangsan",
        "url": "https://aflow.dingtalk.com/x",
        "processCode": "PROC-1"
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_events_of_one_item_on_two_replicas_make_one_group() {
    let apps = Apps::start(AppState {
        app_key: "dingappkey".into(),
        app_secret: "dingsecret".into(),
        robot_code: "dingappkey".into(),
        ..AppState::default()
    })
    .await;
    // The seed recipe itself, its store moved to the shared database.
    let seed = std::fs::read_to_string("config/examples/dingtalk-approval-group.toml").unwrap();
    let config = seed.replace(
        "path = \"${HOOKGATE_DB:-var/hookgate.db}\"",
        "url = \"${HOOKGATE_STORE_URL}\"\nlease = \"2s\"",
    );
    assert_ne!(config, seed);
    let replicas = Replicas::new("groups", &config);
    let aes = "1234567890123456789012345678901234567890123";
    let base = apps.base();
    let env = [
        ("HOOKGATE_LISTEN", "127.0.0.1:0"),
        ("DING_CALLBACK_TOKEN", "cbtoken"),
        ("DING_CALLBACK_AES_KEY", aes),
        ("DING_APP_KEY", "dingappkey"),
        ("DING_APP_SECRET", "dingsecret"),
        ("DING_API_BASE", base.as_str()),
        ("DING_NEW_API_BASE", base.as_str()),
    ];
    let a = replicas.start(None, &env);
    let b = replicas.start(None, &env);
    let envelope = Envelope::new(
        "cbtoken".into(),
        vec![AesKey::from_encoding_aes_key(aes).unwrap()],
        "dingappkey".into(),
    );
    // 3 items; each "started" 6 times (distinct events: DingTalk re-sent it with a new time),
    // each event sent to both replicas at once.
    let mut tasks = tokio::task::JoinSet::new();
    for item in 0..3 {
        for n in 0..6 {
            let plain = ding_start(&format!("proc-{item}"), 1_700_000_000_000 + n);
            let ts = now_ms().to_string();
            let sealed = envelope.seal(0, plain.as_bytes(), &ts, "nonce");
            let body = json!({"encrypt": sealed.encrypt}).to_string();
            let request = format!(
                "POST /hooks/dingtalk/approvals?signature={}&timestamp={ts}&nonce=nonce HTTP/1.1\r\n\
                 Host: x\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                sealed.msg_signature,
                body.len()
            );
            let (x, y) = (a.addr, b.addr);
            tasks.spawn(async move { tokio::join!(status(x, &request), status(y, &request)) });
        }
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap(), (200, 200));
    }
    let store = replicas.store().await;
    let mut rows = Vec::new();
    for _ in 0..300 {
        rows = deliveries(&store).await;
        if rows.len() == 36 && rows.iter().all(|d| d.status == DeliveryStatus::Done) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        by_status(&rows).get("done"),
        Some(&36),
        "{:?}",
        by_status(&rows)
    );
    let chats = apps.chats();
    assert_eq!(apps.calls("/chat/create"), 3, "{chats:#?}");
    assert_eq!(chats.len(), 3);
    assert_eq!(store.groups(10).await.unwrap().len(), 3);
    // One token fetch for both replicas.
    assert_eq!(apps.calls("/gettoken"), 1);
    drop((a, b));
}

/// A TCP proxy to the database that can be cut (every connection dropped, new ones refused)
/// and restored: a lost database, as a replica sees it.
#[derive(Clone)]
struct Cut {
    down: Arc<std::sync::atomic::AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Cut {
    async fn start(upstream: SocketAddr) -> (Cut, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Cut {
            down: Arc::default(),
            generation: Arc::new(tokio::sync::watch::channel(0).0),
        };
        let c = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if c.down.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let mut cut_off = c.generation.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_off.changed() => {}
                    }
                });
            }
        });
        (cut, addr)
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
        if down {
            self.generation.send_modify(|g| *g += 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_answers_503_and_the_gateway_recovers_without_a_restart() {
    let replicas = Replicas::new("lost", &wecom_config(""));
    let (cut, through) = replicas.through_cut().await;
    let gw = replicas.start(Some(&through), &[]);
    assert_eq!(status(gw.addr, &wecom_request(1)).await, 200);
    assert_eq!(status(gw.addr, &get("/readyz")).await, 200);

    cut.set_down(true);
    let lost = wecom_request(2);
    let started = std::time::Instant::now();
    assert_eq!(status(gw.addr, &lost).await, 503);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the vendor would have given up"
    );
    assert_eq!(status(gw.addr, &get("/readyz")).await, 503);

    cut.set_down(false);
    // The vendor's retry of the refused callback, once the database is back.
    let mut answer = 0;
    for _ in 0..100 {
        answer = status(gw.addr, &lost).await;
        if answer == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answer, 200);
    assert_eq!(status(gw.addr, &get("/readyz")).await, 200);
    let events = replicas
        .store()
        .await
        .list(&ListFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_while_the_database_is_down_waits_for_it() {
    let replicas = Replicas::new("late", &wecom_config(""));
    let (cut, through) = replicas.through_cut().await;
    cut.set_down(true);
    let up = {
        let cut = cut.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            cut.set_down(false);
        }
    };
    let starting = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let gw = replicas.start(Some(&through), &[]);
        (gw, started.elapsed(), replicas)
    });
    up.await;
    let (gw, waited, _replicas) = starting.await.unwrap();
    assert!(
        waited >= Duration::from_secs(3),
        "listening before the store opened"
    );
    assert_eq!(status(gw.addr, &wecom_request(1)).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_and_the_cli_work_on_the_shared_store() {
    let gate = Gate::default();
    let sink = gate.start().await;
    let replicas = Replicas::new("cli", &wecom_config(&http_rule(sink)));
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(args)
            .arg("--config")
            .arg(replicas.dir.path().join("hookgate.toml"))
            .env("HOOKGATE_STORE_URL", &replicas.url)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {text}");
        text
    };
    let first = cli(&["migrate"]);
    assert!(
        first.contains("schema migrated from version 0 to"),
        "{first}"
    );
    assert!(!first.contains("@"), "credentials in the output: {first}");
    let again = cli(&["migrate"]);
    assert!(again.contains("schema up to date"), "{again}");
    let gw = replicas.start(None, &[]);
    assert_eq!(status(gw.addr, &wecom_request(7)).await, 200);
    eventually_or(
        10,
        "delivered",
        || gate.answered.lock().unwrap().len() == 1,
        String::new,
    )
    .await;
    let events = cli(&["events", "list"]);
    assert!(events.contains("MsgId=7"), "{events}");
    let listed = cli(&["deliveries", "list", "--status", "done"]);
    assert!(listed.contains("forward#0"), "{listed}");
    drop(gw);
}
