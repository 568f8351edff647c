//! The Weaver E10 escalation recipe (`config/examples/e10-escalation.toml`) end to end against
//! the fake DingTalk APIs, with its delays set to 1 s and 2 s: (a) nothing settles the task:
//! a reminder, then one group and one card; (b) the task finishes at once: nothing is sent,
//! both timers cancelled; (c) it finishes between the two: the reminder only; (d) the
//! binary killed with SIGKILL before the timers fall due and restarted after: each fires
//! once; (e) the same start delivered three times: one pair of timers; (f) the same recipe
//! from E10's own data push (`config/examples/e10-risk-group.toml`, Weaver header triple),
//! its timers asking E10's API whether the item is still open when they fire.

mod common;

use common::apps::{AppState, Apps};
use common::{TestServer, eventually_or, now_ms, start_file};
use hookgate::crypto::envelope::{AesKey, Envelope};
use hookgate::store::DeliveryStatus;
use serde_json::json;

const AES: &str = "1234567890123456789012345678901234567890123";

async fn setup() -> (Apps, TestServer) {
    let apps = Apps::start(AppState {
        app_key: "dingappkey".into(),
        app_secret: "dingsecret".into(),
        robot_code: "dingappkey".into(),
        agent_id: 42,
        ..AppState::default()
    })
    .await;
    let src = std::fs::read_to_string("config/examples/e10-escalation.toml").unwrap();
    let base = apps.base();
    let srv = start_file(
        &src,
        &[
            ("DING_CALLBACK_TOKEN", "cbtoken"),
            ("DING_CALLBACK_AES_KEY", AES),
            ("DING_APP_KEY", "dingappkey"),
            ("DING_APP_SECRET", "dingsecret"),
            ("DING_AGENT_ID", "42"),
            ("DING_API_BASE", &base),
            ("DING_NEW_API_BASE", &base),
            ("E10_REMIND_AFTER", "1s"),
            ("E10_GROUP_AFTER", "2s"),
        ],
    )
    .await;
    (apps, srv)
}

fn task(kind: &str, created: i64) -> String {
    json!({
        "EventType": "bpms_task_change",
        "processInstanceId": "risk-item-7",
        "corpId": "dingcorp",
        "createTime": created,
        "title": "机房温度告警整改",
        "type": kind,
        "staffId": "handler01",
        "originatorUserId": "submitter01",
        "url": "https://aflow.dingtalk.com/approval?procInstId=risk-item-7"
    })
    .to_string()
}

async fn send(srv: &TestServer, plain: &str) {
    let env = Envelope::new(
        "cbtoken".into(),
        vec![AesKey::from_encoding_aes_key(AES).unwrap()],
        "dingappkey".into(),
    );
    common::dingtalk_post(srv, &env, "/hooks/dingtalk/approvals", plain).await;
}

fn settled(srv: &TestServer) -> bool {
    let d = srv.deliveries();
    !d.is_empty()
        && d.iter().all(|d| {
            matches!(
                d.status,
                DeliveryStatus::Done
                    | DeliveryStatus::Cancelled
                    | DeliveryStatus::Dead
                    | DeliveryStatus::Skipped
            )
        })
}

async fn until_settled(srv: &TestServer) {
    eventually_or(
        10,
        "every delivery settled",
        || settled(srv),
        || format!("{:#?}", srv.deliveries()),
    )
    .await;
}

#[tokio::test]
async fn a_no_finish_reminds_then_makes_one_group_with_a_card() {
    let (apps, srv) = setup().await;
    let t0 = now_ms();
    send(&srv, &task("start", 1)).await;
    until_settled(&srv).await;
    assert!(now_ms() - t0 >= 1_900, "the group waited its two seconds");
    let n = apps.notifications();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0]["userid_list"], "handler01");
    assert!(
        n[0]["msg"]["markdown"]["text"]
            .as_str()
            .unwrap()
            .contains("机房温度告警整改")
    );
    let chats = apps.chats();
    assert_eq!(chats.len(), 1);
    let chat = chats.values().next().unwrap();
    assert_eq!(chat.users, ["handler01", "submitter01"]);
    let m = apps.messages();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].1["msgKey"], "sampleActionCard");
    srv.stop().await;
}

#[tokio::test]
async fn b_a_finish_before_the_first_timer_cancels_both() {
    let (apps, srv) = setup().await;
    send(&srv, &task("start", 1)).await;
    send(&srv, &task("finish", 2)).await;
    until_settled(&srv).await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(
        apps.notifications().is_empty() && apps.chats().is_empty() && apps.messages().is_empty()
    );
    let d = srv.deliveries();
    assert_eq!(d.len(), 3);
    assert!(
        d.iter().all(|d| d.status == DeliveryStatus::Cancelled),
        "{d:#?}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn c_a_finish_between_the_timers_leaves_the_reminder_only() {
    let (apps, srv) = setup().await;
    send(&srv, &task("start", 1)).await;
    eventually_or(
        5,
        "the reminder",
        || apps.notifications().len() == 1,
        String::new,
    )
    .await;
    send(&srv, &task("finish", 2)).await;
    until_settled(&srv).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(apps.chats().is_empty() && apps.messages().is_empty());
    let mut statuses: Vec<_> = srv
        .deliveries()
        .iter()
        .map(|d| (d.kind.clone(), d.status))
        .collect();
    statuses.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        statuses,
        [
            ("group_create".to_owned(), DeliveryStatus::Cancelled),
            ("group_send".to_owned(), DeliveryStatus::Cancelled),
            ("notify".to_owned(), DeliveryStatus::Done)
        ]
    );
    srv.stop().await;
}

#[tokio::test]
async fn e_the_same_start_three_times_sets_one_pair_of_timers() {
    let (apps, srv) = setup().await;
    for _ in 0..3 {
        send(&srv, &task("start", 1)).await;
    }
    assert_eq!(srv.events().len(), 1);
    assert_eq!(
        srv.deliveries().len(),
        3,
        "notify, group_create, group_send"
    );
    until_settled(&srv).await;
    assert_eq!(apps.notifications().len(), 1);
    assert_eq!(apps.chats().len(), 1);
    assert_eq!(apps.messages().len(), 1);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_timers_survive_kill_9_and_fire_once_after_restart() {
    let apps = Apps::start(AppState {
        app_key: "dingappkey".into(),
        app_secret: "dingsecret".into(),
        robot_code: "dingappkey".into(),
        agent_id: 42,
        ..AppState::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookgate.db");
    let base = apps.base();
    let env: Vec<(&str, std::ffi::OsString)> = vec![
        ("HOOKGATE_LISTEN", "127.0.0.1:0".into()),
        ("HOOKGATE_DB", db.clone().into()),
        ("DING_CALLBACK_TOKEN", "cbtoken".into()),
        ("DING_CALLBACK_AES_KEY", AES.into()),
        ("DING_APP_KEY", "dingappkey".into()),
        ("DING_APP_SECRET", "dingsecret".into()),
        ("DING_AGENT_ID", "42".into()),
        ("DING_API_BASE", base.clone().into()),
        ("DING_NEW_API_BASE", base.into()),
        ("E10_REMIND_AFTER", "1s".into()),
        ("E10_GROUP_AFTER", "2s".into()),
    ];
    let env_ref: Vec<(&str, &std::ffi::OsStr)> =
        env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    let config = std::path::Path::new("config/examples/e10-escalation.toml");
    let mut gw = common::Served::start(config, &env_ref);
    // Deliver the start event to the running binary.
    let envl = Envelope::new(
        "cbtoken".into(),
        vec![AesKey::from_encoding_aes_key(AES).unwrap()],
        "dingappkey".into(),
    );
    let ts = now_ms().to_string();
    let sealed = envl.seal(0, task("start", 1).as_bytes(), &ts, "nonce");
    let body = json!({"encrypt": sealed.encrypt}).to_string();
    let req = format!(
        "POST /hooks/dingtalk/approvals?signature={}&timestamp={ts}&nonce=nonce HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        sealed.msg_signature,
        body.len()
    );
    assert_eq!(common::raw(gw.addr, req.as_bytes()).await.status, 200);
    // Down before either timer is due; up again after both fell due.
    std::process::Command::new("kill")
        .args(["-KILL", &gw.child.id().to_string()])
        .status()
        .unwrap();
    let _ = gw.child.wait();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(
        apps.notifications().is_empty(),
        "nothing ran while hookgate was down"
    );
    gw = common::Served::start(config, &env_ref);
    eventually_or(
        10,
        "both fired after the restart",
        || apps.notifications().len() == 1 && apps.messages().len() == 1,
        || format!("{:?} {:?}", apps.notifications(), apps.messages()),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(apps.notifications().len(), 1, "once");
    assert_eq!(apps.chats().len(), 1, "once");
    assert_eq!(apps.messages().len(), 1, "once");
    assert!(gw.terminate().success());
}

/// E10's own data push (`config/examples/e10-risk-group.toml`), signed with Weaver's header
/// triple by Python's hashlib: an item still 待处理 reminds its handler at 发现日期 + 1 s and
/// gets one group with a card at + 2 s; an item moved on to 处理中 at once sends nothing; a
/// wrong Md5 or a currentDateTime 11 minutes old is refused and stores nothing.
#[tokio::test]
async fn f_e10s_own_push_signed_with_the_weaver_triple_reminds_then_groups() {
    let apps = Apps::start(AppState {
        app_key: "dingappkey".into(),
        app_secret: "dingsecret".into(),
        robot_code: "dingappkey".into(),
        agent_id: 42,
        ..AppState::default()
    })
    .await;
    let base = apps.base();
    // E10's REST API: an item's status now, for requests signed with the Weaver triple
    // (checked here with Python's hashlib, like the pushes).
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e10 = format!("http://{}", listener.local_addr().unwrap());
    let log = asked.clone();
    common::http_server(listener, move |parts, _| {
        let h = |n: &str| {
            parts
                .headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let (time, sign) = (h("currentdatetime"), h("md5"));
        let fresh = time
            .parse::<i64>()
            .is_ok_and(|t| (now_ms() - t).abs() < 600_000);
        if h("systemid") != "hookgate"
            || !fresh
            || sign != weaver_md5(&format!("hookgatee10-pa55{time}"))
        {
            return (
                401,
                "application/json",
                r#"{"code":401,"msg":"sign"}"#.into(),
            );
        }
        let id = parts
            .uri
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        log.lock().unwrap().push(id.clone());
        // R-4 was settled inside E10, which pushed nothing about it.
        let status = if id == "R-4" {
            "已处理"
        } else {
            "待处理"
        };
        (
            200,
            "application/json",
            json!({"code": 200, "data": {"dataId": id, "status": status}}).to_string(),
        )
    });
    let src = std::fs::read_to_string("config/examples/e10-risk-group.toml").unwrap();
    let srv = start_file(
        &src,
        &[
            ("E10_SYSTEM_ID", "hookgate"),
            ("E10_API_BASE", &e10),
            ("E10_PASSWORD", "e10-pa55"),
            ("DING_APP_KEY", "dingappkey"),
            ("DING_APP_SECRET", "dingsecret"),
            ("DING_AGENT_ID", "42"),
            ("DING_API_BASE", &base),
            ("DING_NEW_API_BASE", &base),
            ("E10_REMIND_AFTER", "1s"),
            ("E10_GROUP_AFTER", "2s"),
        ],
    )
    .await;
    let md5 = weaver_md5;
    let push = |body: serde_json::Value, at_ms: i64, password: &str| {
        let time = at_ms.to_string();
        let sign = md5(&format!("hookgate{password}{time}"));
        let srv = &srv;
        async move {
            let headers = [
                ("systemid", "hookgate"),
                ("currentDateTime", time.as_str()),
                ("Md5", sign.as_str()),
                ("Content-Type", "application/json"),
            ];
            srv.post("/hooks/e10", &headers, body.to_string().as_bytes())
                .await
                .status
        }
    };
    // 发现日期 on a whole second, as E10 writes it, in the config's zone.
    let whole = (now_ms() / 1000 + 1) * 1000;
    tokio::time::sleep(std::time::Duration::from_millis(
        (whole - now_ms()).max(0) as u64
    ))
    .await;
    let found = jiff::Timestamp::from_millisecond(whole)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string();
    let item = |id: &str, status: &str| {
        json!({
            "dataId": id, "title": "机房温度告警整改", "status": status, "foundAt": found,
            "handler": "handler01", "submitter": "submitter01", "concerned": ["safety01"],
            "url": format!("https://e10.example.com/risk/{id}"), "updatedAt": status
        })
    };
    let now = now_ms();
    assert_eq!(push(item("R-1", "待处理"), now, "e10-pa55").await, 200);
    assert_eq!(push(item("R-2", "待处理"), now, "e10-pa55").await, 200);
    assert_eq!(push(item("R-2", "处理中"), now, "e10-pa55").await, 200);
    assert_eq!(push(item("R-4", "待处理"), now, "e10-pa55").await, 200);
    assert_eq!(push(item("R-3", "待处理"), now, "wrong").await, 403);
    assert_eq!(
        push(item("R-3", "待处理"), now - 11 * 60 * 1000, "e10-pa55").await,
        403,
        "outside ±10 minutes"
    );
    until_settled(&srv).await;
    assert!(
        now_ms() - whole >= 2_000,
        "the group waited for 发现日期 + 2 s"
    );
    let n = apps.notifications();
    assert_eq!(n.len(), 1, "{n:#?}");
    assert_eq!(n[0]["userid_list"], "handler01");
    let chats = apps.chats();
    assert_eq!(chats.len(), 1, "{chats:#?}");
    let chat = chats.values().next().unwrap();
    assert_eq!(chat.users, ["handler01", "submitter01", "safety01"]);
    let m = apps.messages();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].1["msgKey"], "sampleActionCard");
    assert!(m[0].1["msgParam"].to_string().contains("risk/R-1"));
    assert_eq!(srv.events().len(), 4, "refused pushes stored nothing");
    // Each timer asked E10 when it fired; R-2 was called off before, R-4 was settled.
    let mut asked = asked.lock().unwrap().clone();
    asked.sort();
    assert_eq!(asked, ["R-1", "R-1", "R-4", "R-4"]);
    let skipped = srv
        .deliveries()
        .into_iter()
        .filter(|d| d.status == DeliveryStatus::Skipped)
        .count();
    assert_eq!(skipped, 3, "R-4's reminder, group and card");
    srv.stop().await;
}

/// Weaver's signature: upper-case hex md5 (Python's hashlib, not the code under test).
fn weaver_md5(text: &str) -> String {
    let out = std::process::Command::new(common::python())
        .args([
            "-c",
            "import sys, hashlib; print(hashlib.md5(sys.argv[1].encode()).hexdigest().upper())",
            text,
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
