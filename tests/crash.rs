//! Crash safety with the real binary: callbacks accepted while the mail server is down (first
//! refusing connections, then accepting and never answering, so sends are in flight), the
//! gateway killed with SIGKILL, restarted, the mail server started: every accepted event's
//! mail arrives, and copies exist only of an interrupted send, with the same Message-ID.
//! Scheduled rules across a SIGKILL: no slot fires twice, and of the slots missed while
//! down only the latest is made up (or none, with `missed = "skip"`).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::smtp::SmtpServer;
use common::{Served, eventually_or, now_ms, wecom_post};
use hookgate::crypto::envelope::{AesKey, Envelope};

const TOKEN: &str = "crashToken";
const KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const CORP: &str = "ww8f3c1e2d4b5a6978";

fn config(port: u16) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[store]
path = "${{HOOKGATE_DB}}"
[delivery]
first_retry = 1
max_backoff = 1
concurrency = 4

[[receivers]]
name = "hr"
vendor = "wecom"
path = "/wecom"
token = "{TOKEN}"
encoding_aes_key = "{KEY}"
receive_id = "{CORP}"

[connections.mail]
kind = "smtp"
url = "smtp://127.0.0.1:{port}"
from = "bot@example.com"
timeout = 60

[[rules]]
name = "mail"
[[rules.actions]]
kind = "email"
via = "mail"
to = "it@example.com"
subject = "{{{{ UserID }}}}"
body = "{{{{ UserID }}}} joined"
"#
    )
}

async fn callback(addr: std::net::SocketAddr, user: &str) {
    let env = Envelope::new(
        TOKEN.into(),
        vec![AesKey::from_encoding_aes_key(KEY).unwrap()],
        CORP.into(),
    );
    let xml = format!(
        "<xml><ToUserName>{CORP}</ToUserName><FromUserName>sys</FromUserName><CreateTime>1700000100</CreateTime>\
         <MsgType>event</MsgType><Event>change_contact</Event><ChangeType>create_user</ChangeType>\
         <UserID>{user}</UserID></xml>"
    );
    let (q, body) = wecom_post(&env, CORP, &xml, &(now_ms() / 1000).to_string());
    let req = format!(
        "POST /wecom?{q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = common::raw(addr, req.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

fn statuses(db: &std::path::Path) -> BTreeMap<String, i64> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT status, count(*) FROM deliveries GROUP BY status")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn kill_9_with_mail_down_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookgate.db");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config_path = dir.path().join("hookgate.toml");
    std::fs::write(&config_path, config(port)).unwrap();
    let env = [("HOOKGATE_DB", db.as_os_str())];

    let mut gateway = Served::start(&config_path, &env);
    // Mail server down: connections refused, deliveries wait for their retry.
    for i in 0..5 {
        callback(gateway.addr, &format!("refused{i}")).await;
    }
    eventually_or(
        10,
        "five failed attempts",
        || statuses(&db).get("pending") == Some(&5) && failed(&db) == 5,
        || format!("{:?}", statuses(&db)),
    )
    .await;
    // Now something accepts SMTP connections and never answers: sends hang in flight.
    let black_hole = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    for i in 0..5 {
        callback(gateway.addr, &format!("stalled{i}")).await;
    }
    eventually_or(
        10,
        "deliveries in flight",
        || statuses(&db).get("running").copied().unwrap_or(0) >= 2,
        || format!("{:?}", statuses(&db)),
    )
    .await;
    Command::new("kill")
        .args(["-KILL", &gateway.child.id().to_string()])
        .status()
        .unwrap();
    let _ = gateway.child.wait();
    drop(black_hole);

    let smtp = SmtpServer::start(dir.path(), &["--port", &port.to_string()]);
    gateway = Served::start(&config_path, &env);
    eventually_or(
        30,
        "every accepted event's mail",
        || statuses(&db).get("done") == Some(&10),
        || format!("{:?} {} mails", statuses(&db), smtp.messages().len()),
    )
    .await;
    let mut by_subject: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in smtp.messages() {
        by_subject
            .entry(m.subject)
            .or_default()
            .push(m.message_id.unwrap_or_default());
    }
    assert_eq!(by_subject.len(), 10, "{by_subject:#?}");
    for (subject, ids) in &by_subject {
        assert!(
            ids.iter().all(|i| i == &ids[0]),
            "{subject}: copies with different Message-IDs {ids:?}"
        );
    }
    let status = gateway.terminate();
    assert!(status.success(), "{status:?}");
}

fn failed(db: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT count(*) FROM deliveries WHERE last_error IS NOT NULL",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn sigterm_under_load_loses_no_accepted_callback() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookgate.db");
    let config_path = dir.path().join("hookgate.toml");
    std::fs::write(&config_path, config(1)).unwrap();
    let gateway = Served::start(&config_path, &[("HOOKGATE_DB", db.as_os_str())]);
    let addr = gateway.addr;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300u32 {
        tasks.spawn(async move {
            tokio::time::sleep(std::time::Duration::from_micros(u64::from(i) * 300)).await;
            let env = Envelope::new(
                TOKEN.into(),
                vec![AesKey::from_encoding_aes_key(KEY).unwrap()],
                CORP.into(),
            );
            let xml = format!(
                "<xml><ToUserName>{CORP}</ToUserName><FromUserName>u</FromUserName><CreateTime>1</CreateTime>\
                 <MsgType>text</MsgType><Content>x</Content><MsgId>{i}</MsgId></xml>"
            );
            let (q, body) = wecom_post(&env, CORP, &xml, &(now_ms() / 1000).to_string());
            let req = format!(
                "POST /wecom?{q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            // A refused connection or a cut-off answer counts as not accepted.
            let answered = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                s.write_all(req.as_bytes()).await.ok()?;
                let mut out = Vec::new();
                s.read_to_end(&mut out).await.ok()?;
                Some(out.starts_with(b"HTTP/1.1 200"))
            })
            .await
            .ok()
            .flatten()
            .unwrap_or(false);
            (i, answered)
        });
    }
    tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    let status = gateway.terminate();
    assert!(status.success(), "{status:?}");
    let mut accepted = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (i, ok) = r.unwrap();
        if ok {
            accepted.push(i);
        }
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let stored: std::collections::HashSet<String> = conn
        .prepare("SELECT dedupe_key FROM events")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        !accepted.is_empty(),
        "some callbacks were answered before the stop"
    );
    for i in &accepted {
        assert!(
            stored.contains(&format!("MsgId={i}")),
            "callback {i} was answered 200 but not stored"
        );
    }
    eprintln!("{} answered 200 before SIGTERM, all stored", accepted.len());
}

/// Two rules on a 4-second clock: one makes up a missed slot, one skips it.
const SCHEDULES: &str = r#"
[server]
listen = "127.0.0.1:0"
[store]
path = "${HOOKGATE_DB}"

[[rules]]
name = "catchup"
every = "4s"
[[rules.actions]]
kind = "log"
message = "catchup {{ slot }}"

[[rules]]
name = "skipper"
every = "4s"
missed = "skip"
[[rules.actions]]
kind = "log"
message = "skipper {{ slot }}"
"#;

const EVERY_S: i64 = 4;

/// The slots (epoch seconds) stored for a scheduled rule, in order.
fn slots(db: &std::path::Path, rule: &str) -> Vec<i64> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT dedupe_key FROM events WHERE receiver = 'schedule' AND kind = ?1")
        .unwrap();
    let mut out: Vec<i64> = stmt
        .query_map([rule], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|k| {
            let k = k.unwrap();
            k.rsplit_once('@').unwrap().1.parse().unwrap()
        })
        .collect();
    out.sort_unstable();
    out
}

#[tokio::test]
async fn a_schedule_fires_each_slot_once_across_kill_9_and_makes_up_only_the_latest_missed_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookgate.db");
    let config_path = dir.path().join("hookgate.toml");
    std::fs::write(&config_path, SCHEDULES).unwrap();
    let env = [("HOOKGATE_DB", db.as_os_str())];

    let mut gateway = Served::start(&config_path, &env);
    eventually_or(
        15,
        "two slots of each rule",
        || slots(&db, "catchup").len() >= 2 && slots(&db, "skipper").len() >= 2,
        || format!("{:?} {:?}", slots(&db, "catchup"), slots(&db, "skipper")),
    )
    .await;
    Command::new("kill")
        .args(["-KILL", &gateway.child.id().to_string()])
        .status()
        .unwrap();
    let _ = gateway.child.wait();
    let before = (slots(&db, "catchup"), slots(&db, "skipper"));
    let last = *before.0.last().unwrap().max(before.1.last().unwrap());

    // Down for at least two slots; back 300 ms after a slot, so that slot is the latest
    // missed one and the next is 3.7 s away.
    let back_at = (last + 3 * EVERY_S) / EVERY_S * EVERY_S;
    let wait_ms = (back_at * 1000 + 300 - now_ms()).max(0);
    tokio::time::sleep(std::time::Duration::from_millis(wait_ms as u64)).await;
    gateway = Served::start(&config_path, &env);
    eventually_or(
        3,
        "the latest missed slot, made up at start",
        || slots(&db, "catchup").last() == Some(&back_at),
        || format!("{:?}", slots(&db, "catchup")),
    )
    .await;
    let catchup = slots(&db, "catchup");
    let made_up: Vec<i64> = catchup.iter().copied().filter(|s| *s > last).collect();
    assert_eq!(
        made_up,
        [back_at],
        "only the latest missed slot is made up: {catchup:?}"
    );
    assert!(back_at - last >= 2 * EVERY_S, "slots were missed");
    assert_eq!(
        &catchup[..before.0.len()],
        &before.0[..],
        "nothing fired before the kill fires again"
    );
    let skipper = slots(&db, "skipper");
    assert_eq!(skipper, before.1, "missed = \"skip\": no slot made up");

    // Both carry on with the next slot, once each.
    let next = back_at + EVERY_S;
    eventually_or(
        8,
        "the next slot of each rule",
        || slots(&db, "catchup").contains(&next) && slots(&db, "skipper").contains(&next),
        || format!("{:?} {:?}", slots(&db, "catchup"), slots(&db, "skipper")),
    )
    .await;
    let events = slots(&db, "catchup").len() + slots(&db, "skipper").len();
    eventually_or(
        10,
        "one delivery per slot, done",
        || statuses(&db).get("done").copied() == Some(events as i64),
        || format!("{:?} for {events} slots", statuses(&db)),
    )
    .await;
    let status = gateway.terminate();
    assert!(status.success(), "{status:?}");
}
