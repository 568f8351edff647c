//! Vendor-app actions against the fake WeCom and DingTalk APIs (tests/common/apps.rs): the
//! token manager (one fetch for many concurrent deliveries, one refresh after a forced
//! expiry and no failure, no refetch after a restart), wrong secrets and 60020 as clear
//! permanent failures, one group per key however often it is created, and the DingTalk
//! approval seed recipe from `config/examples/` end to end.

mod common;

use common::apps::{AppState, Apps};
use common::{eventually_or, now_ms, start_file, start_file_at, wecom_post};
use hookgate::crypto::envelope::{AesKey, Envelope};
use hookgate::store::{DeliveryStatus, RequeueTarget};
use serde_json::json;

const TOKEN: &str = "appToken";
const KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const CORP: &str = "ww8f3c1e2d4b5a6978";

fn wecom_state() -> AppState {
    AppState {
        corp_id: CORP.into(),
        secret: "app-secret".into(),
        agent_id: 1000002,
        departments: [(
            "2".to_owned(),
            vec![
                json!({"userid": "zhangsan", "name": "张三", "email": "zhangsan@example.com"}),
                json!({"userid": "lisi", "name": "李四", "email": ""}),
            ],
        )]
        .into(),
        ..AppState::default()
    }
}

fn wecom_config(apps: &Apps, secret: &str, rules: &str) -> String {
    format!(
        r#"
[server]
listen = "${{HOOKGATE_LISTEN}}"
[store]
path = "${{HOOKGATE_DB}}"
[delivery]
first_retry = 1
max_backoff = 1
concurrency = 16

[[receivers]]
name = "hr"
vendor = "wecom"
path = "/wecom"
token = "{TOKEN}"
encoding_aes_key = "{KEY}"
receive_id = "{CORP}"

[connections.corp]
kind = "wecom"
corp_id = "{CORP}"
secret = "{secret}"
agent_id = 1000002
api_base = "{}"
{rules}
"#,
        apps.base()
    )
}

const NOTIFY: &str = r#"
[[rules]]
name = "tell"
[[rules.actions]]
kind = "notify"
via = "corp"
users = ["{{ UserID }}", { department = 2 }]
message = { msgtype = "text", text = { content = "{{ UserID }} 已入职" } }
"#;

async fn contact(srv: &common::TestServer, user: &str) {
    let env = Envelope::new(
        TOKEN.into(),
        vec![AesKey::from_encoding_aes_key(KEY).unwrap()],
        CORP.into(),
    );
    let xml = format!(
        "<xml><ToUserName>{CORP}</ToUserName><FromUserName>sys</FromUserName><CreateTime>1700000100</CreateTime>\
         <MsgType>event</MsgType><Event>change_contact</Event><ChangeType>create_user</ChangeType>\
         <UserID>{user}</UserID><Department>2</Department></xml>"
    );
    let (q, body) = wecom_post(&env, CORP, &xml, &(now_ms() / 1000).to_string());
    let r = srv.post(&format!("/wecom?{q}"), &[], body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// The first delivery once an attempt of it failed, and its error.
async fn first_failure(srv: &common::TestServer) -> (hookgate::store::DeliveryRow, String) {
    let failed = || {
        srv.deliveries()
            .first()
            .is_some_and(|d| d.last_error.is_some())
    };
    eventually_or(10, "a failed attempt", failed, || {
        format!("{:?}", srv.deliveries())
    })
    .await;
    let d = srv.deliveries()[0].clone();
    let err = d.last_error.clone().unwrap_or_default();
    (d, err)
}

async fn all_done(srv: &common::TestServer, n: usize) {
    eventually_or(
        20,
        "all deliveries done",
        || {
            let d = srv.deliveries();
            d.len() == n && d.iter().all(|d| d.status == DeliveryStatus::Done)
        },
        || format!("{:#?}", srv.deliveries()),
    )
    .await;
}

#[tokio::test]
async fn many_deliveries_share_one_token_and_an_expiry_costs_one_refresh() {
    let apps = Apps::start(wecom_state()).await;
    let srv = start_file(&wecom_config(&apps, "app-secret", NOTIFY), &[]).await;
    for i in 0..20 {
        contact(&srv, &format!("u{i}")).await;
    }
    all_done(&srv, 20).await;
    assert_eq!(
        apps.calls("/cgi-bin/gettoken"),
        1,
        "20 concurrent deliveries, one token"
    );
    let n = apps.notifications();
    assert_eq!(n.len(), 20);
    // The department was looked up (and cached), its members added to the user.
    assert!(
        n.iter()
            .all(|m| m["touser"].as_str().unwrap().ends_with("|zhangsan|lisi")),
        "{n:?}"
    );
    assert!(
        apps.calls("/cgi-bin/user/list") <= 2,
        "{}",
        apps.calls("/cgi-bin/user/list")
    );

    // The vendor expires the token mid-run: one refresh, no failed delivery.
    apps.expire_tokens();
    for i in 20..30 {
        contact(&srv, &format!("u{i}")).await;
    }
    all_done(&srv, 30).await;
    assert_eq!(apps.calls("/cgi-bin/gettoken"), 2);
    assert!(
        srv.deliveries().iter().all(|d| d.attempts == 1),
        "no attempt failed"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_restart_reuses_the_stored_token() {
    let apps = Apps::start(wecom_state()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookgate.db");
    let config = wecom_config(&apps, "app-secret", NOTIFY);
    let srv = start_file_at(&config, &[], &db).await;
    contact(&srv, "a").await;
    all_done(&srv, 1).await;
    srv.stop().await;
    let srv = start_file_at(&config, &[], &db).await;
    contact(&srv, "b").await;
    all_done(&srv, 2).await;
    assert_eq!(apps.calls("/cgi-bin/gettoken"), 1);
    srv.stop().await;
}

#[tokio::test]
async fn a_wrong_secret_and_an_untrusted_ip_fail_with_the_fix_named() {
    let apps = Apps::start(wecom_state()).await;
    let srv = start_file(&wecom_config(&apps, "not-the-secret", NOTIFY), &[]).await;
    contact(&srv, "a").await;
    eventually_or(
        10,
        "dead",
        || {
            srv.deliveries()
                .first()
                .is_some_and(|d| d.status == DeliveryStatus::Dead)
        },
        || format!("{:?}", srv.deliveries()),
    )
    .await;
    let err = srv.deliveries()[0].last_error.clone().unwrap();
    assert!(
        err.contains("connections.corp: corp_id or secret is wrong"),
        "{err}"
    );
    assert!(!err.contains("not-the-secret"));
    srv.stop().await;

    let mut state = wecom_state();
    state.ip_blocked = true;
    let apps = Apps::start(state).await;
    let srv = start_file(&wecom_config(&apps, "app-secret", NOTIFY), &[]).await;
    contact(&srv, "a").await;
    eventually_or(
        10,
        "dead",
        || {
            srv.deliveries()
                .first()
                .is_some_and(|d| d.status == DeliveryStatus::Dead)
        },
        || format!("{:?}", srv.deliveries()),
    )
    .await;
    let err = srv.deliveries()[0].last_error.clone().unwrap();
    assert!(
        err.contains("60020") && err.contains("trusted IPs"),
        "{err}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn one_wecom_group_per_key_even_when_creation_is_retried() {
    let mut state = wecom_state();
    // The first message after the first create fails (busy): the delivery runs again.
    state
        .scripted
        .insert("/cgi-bin/appchat/send".into(), vec![-1]);
    let apps = Apps::start(state).await;
    let rules = r#"
[[rules]]
name = "item group"
[[rules.actions]]
kind = "group_create"
via = "corp"
key = "item-{{ CreateTime }}"
name = "事项 {{ UserID }}"
owner = "{{ UserID }}"
members = [{ department = 2 }]
first_message = "本群为事项 {{ CreateTime }} 而建"
[[rules.actions]]
kind = "group_send"
via = "corp"
key = "item-{{ CreateTime }}"
message = { msgtype = "markdown", markdown = { content = "**{{ UserID }}** 请处理" } }
"#;
    let srv = start_file(&wecom_config(&apps, "app-secret", rules), &[]).await;
    // Two events for the same item (same CreateTime): one group.
    contact(&srv, "wangwu").await;
    contact(&srv, "zhaoliu").await;
    all_done(&srv, 4).await;
    let chats = apps.chats();
    assert_eq!(chats.len(), 1, "{chats:#?}");
    let (chat_id, chat) = chats.into_iter().next().unwrap();
    assert_eq!(
        chat_id,
        hookgate::actions::wecom_chat_id("corp", "item-1700000100")
    );
    assert_eq!(chat.users, ["wangwu", "zhangsan", "lisi"]);
    assert_eq!(
        apps.calls("/cgi-bin/appchat/create"),
        2,
        "the retry tried, and found its group"
    );
    let messages = apps.messages();
    assert_eq!(
        messages
            .iter()
            .filter(|(_, m)| m["msgtype"] == "text")
            .count(),
        1
    );
    assert_eq!(
        messages
            .iter()
            .filter(|(_, m)| m["msgtype"] == "markdown")
            .count(),
        2
    );
    let g = srv
        .store
        .group("corp", "item-1700000100")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(g.chat_id, chat_id);
    srv.stop().await;
}

fn ding_approval(kind: &str, result: &str) -> String {
    json!({
        "EventType": "bpms_instance_change",
        "processInstanceId": "a1b2c3d4-5678-90ab-cdef",
        "corpId": "dingcorp",
        "createTime": 1700000000000i64,
        "title": "张三提交的差旅报销",
        "type": kind,
        "result": result,
        "staffId": "zhangsan",
        "url": "https://aflow.dingtalk.com/dingtalk/mobile/homepage.htm#/approval?procInstId=a1b2",
        "processCode": "PROC-1"
    })
    .to_string()
}

/// The DingTalk approval seed on `apps`, and how to post an approval event to it.
async fn approval_seed(state: AppState) -> (Apps, common::TestServer, Envelope) {
    let apps = Apps::start(AppState {
        app_key: "dingappkey".into(),
        app_secret: "dingsecret".into(),
        robot_code: "dingappkey".into(),
        ..state
    })
    .await;
    let src = std::fs::read_to_string("config/examples/dingtalk-approval-group.toml").unwrap();
    let aes = "1234567890123456789012345678901234567890123";
    let base = apps.base();
    let srv = start_file(
        &src,
        &[
            ("DING_CALLBACK_TOKEN", "cbtoken"),
            ("DING_CALLBACK_AES_KEY", aes),
            ("DING_APP_KEY", "dingappkey"),
            ("DING_APP_SECRET", "dingsecret"),
            ("DING_API_BASE", &base),
            ("DING_NEW_API_BASE", &base),
            ("APPROVAL_REVIEWERS", "manager01, manager02"),
        ],
    )
    .await;
    let env = Envelope::new(
        "cbtoken".into(),
        vec![AesKey::from_encoding_aes_key(aes).unwrap()],
        "dingappkey".into(),
    );
    (apps, srv, env)
}

async fn post_approval(srv: &common::TestServer, env: &Envelope, kind: &str, result: &str) {
    let plain = ding_approval(kind, result);
    common::dingtalk_post(srv, env, "/hooks/dingtalk/approvals", &plain).await;
}

#[tokio::test]
async fn dingtalk_approval_seed_creates_one_group_and_closes_it() {
    let (apps, srv, env) = approval_seed(AppState::default()).await;
    post_approval(&srv, &env, "start", "").await;
    // Let the start's group exist before the (vendor-retried) start and the finish.
    all_done(&srv, 2).await;
    post_approval(&srv, &env, "start", "").await;
    all_done(&srv, 2).await;
    post_approval(&srv, &env, "finish", "agree").await;
    all_done(&srv, 4).await;
    let chats = apps.chats();
    assert_eq!(chats.len(), 1, "one group per approval: {chats:#?}");
    let chat = chats.values().next().unwrap();
    assert_eq!(chat.name, "【结束】张三提交的差旅报销");
    assert_eq!(chat.owner, "zhangsan");
    assert_eq!(chat.users, ["zhangsan", "manager01", "manager02"]);
    let messages = apps.messages();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert_eq!(messages[0].1["msgKey"], "sampleMarkdown");
    assert!(
        messages[0].1["msgParam"]["text"]
            .as_str()
            .unwrap()
            .contains("### 张三提交的差旅报销")
    );
    assert_eq!(messages[1].1["msgKey"], "sampleText");
    assert_eq!(
        messages[1].1["msgParam"]["content"],
        "审批「张三提交的差旅报销」已同意，本群完成使命。"
    );
    assert_eq!(apps.calls("/gettoken"), 1);
    assert_eq!(apps.calls("/v1.0/oauth2/accessToken"), 1);
    srv.stop().await;
}

#[tokio::test]
async fn dingtalk_a_group_whose_creation_is_unsure_is_never_created_twice() {
    // chat/create is carried out, but a gateway answers 504: the group may exist.
    let (apps, srv, env) = approval_seed(AppState {
        lose_answers: vec!["/chat/create".into()],
        ..AppState::default()
    })
    .await;
    post_approval(&srv, &env, "start", "").await;
    let dead = |srv: &common::TestServer| {
        srv.deliveries()
            .into_iter()
            .filter(|d| d.status == DeliveryStatus::Dead)
            .collect::<Vec<_>>()
    };
    eventually_or(
        20,
        "group_create dead",
        || dead(&srv).len() == 2,
        || format!("{:#?}", srv.deliveries()),
    )
    .await;
    let create = dead(&srv)
        .into_iter()
        .find(|d| d.kind == "group_create")
        .unwrap();
    let why = create.last_error.clone().unwrap();
    assert!(
        why.contains("HTTP 504")
            && why.contains("may have created")
            && why.contains("hookgate groups set a1b2c3d4-5678-90ab-cdef --via ding"),
        "{why}"
    );
    assert_eq!(create.attempts, 1, "not retried blindly");
    // Retried by hand (or by a replica after a crash): still no second chat/create.
    srv.store
        .requeue(RequeueTarget::Id(create.id), now_ms(), now_ms() + 600_000)
        .await
        .unwrap();
    eventually_or(
        20,
        "dead again",
        || {
            dead(&srv)
                .iter()
                .any(|d| d.id == create.id && d.attempts == 2)
        },
        || format!("{:#?}", srv.deliveries()),
    )
    .await;
    assert_eq!((apps.calls("/chat/create"), apps.chats().len()), (1, 1));
    let row = srv
        .store
        .group("ding", "a1b2c3d4-5678-90ab-cdef")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.chat_id, "", "noted as being created");

    // The admin finds the group in DingTalk and records it (`hookgate groups set`); the
    // retried deliveries use it.
    srv.store
        .put_group(hookgate::store::GroupRow {
            chat_id: "chat0001".into(),
            open_conversation_id: Some("cid0001".into()),
            ..row
        })
        .await
        .unwrap();
    srv.store
        .requeue(RequeueTarget::AllDead, now_ms(), now_ms() + 600_000)
        .await
        .unwrap();
    all_done(&srv, 2).await;
    assert_eq!(apps.calls("/chat/create"), 1);
    let messages = apps.messages();
    assert_eq!(
        (messages.len(), messages[0].0.as_str()),
        (1, "cid0001"),
        "{messages:#?}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn dingtalk_a_refused_group_creation_is_tried_again() {
    // DingTalk answers "busy" (errcode -1): it did not create the group, so a retry may.
    let (apps, srv, env) = approval_seed(AppState {
        scripted: [("/chat/create".to_owned(), vec![-1])].into(),
        ..AppState::default()
    })
    .await;
    post_approval(&srv, &env, "start", "").await;
    all_done(&srv, 2).await;
    assert_eq!((apps.calls("/chat/create"), apps.chats().len()), (2, 1));
    let row = srv
        .store
        .group("ding", "a1b2c3d4-5678-90ab-cdef")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.chat_id, "chat0001");
    srv.stop().await;
}

#[tokio::test]
async fn dingtalk_departments_are_paged_and_walked_for_notifications() {
    let apps = Apps::start(AppState {
        app_key: "dingappkey".into(),
        app_secret: "dingsecret".into(),
        agent_id: 77,
        departments: [
            (
                "1".to_owned(),
                vec![
                    json!({"userid": "a"}),
                    json!({"userid": "b"}),
                    json!({"userid": "c"}),
                ],
            ),
            (
                "5".to_owned(),
                vec![json!({"userid": "d"}), json!({"userid": "a"})],
            ),
        ]
        .into(),
        sub_departments: [("1".to_owned(), vec!["5".to_owned()])].into(),
        ..AppState::default()
    })
    .await;
    let rules = format!(
        r#"
[connections.ding]
kind = "dingtalk"
app_key = "dingappkey"
app_secret = "dingsecret"
agent_id = 77
api_base = "{0}"
new_api_base = "{0}"

[[rules]]
name = "remind"
[[rules.actions]]
kind = "notify"
via = "ding"
users = [{{ department = 1, recursive = true }}]
departments = ["9"]
message = {{ msgtype = "markdown", markdown = {{ title = "待办", text = "**{{{{ UserID }}}}** 入职，请处理" }} }}
"#,
        apps.base()
    );
    let config = wecom_config(&apps, "unused", &rules).replace(
        &format!("[connections.corp]\nkind = \"wecom\"\ncorp_id = \"{CORP}\"\nsecret = \"unused\"\nagent_id = 1000002\napi_base = \"{}\"\n", apps.base()),
        "",
    );
    let srv = start_file(&config, &[]).await;
    contact(&srv, "newbie").await;
    all_done(&srv, 1).await;
    let n = apps.notifications();
    assert_eq!(n.len(), 1);
    assert_eq!(
        n[0]["userid_list"], "a,b,c,d",
        "paged, walked, duplicates dropped"
    );
    assert_eq!(n[0]["dept_id_list"], "9");
    assert_eq!(n[0]["msg"]["markdown"]["text"], "**newbie** 入职，请处理");
    assert_eq!(
        apps.calls("/topapi/v2/user/list"),
        3,
        "two pages for 1, one for 5"
    );
    srv.stop().await;
}

#[tokio::test]
async fn dingtalk_robot_seed_sends_every_message_type_to_the_group() {
    let mut chats = std::collections::BTreeMap::new();
    chats.insert(
        "chatOPS".to_owned(),
        common::apps::Chat {
            name: "运维群".into(),
            owner: "zhangsan".into(),
            users: vec!["zhangsan".into()],
            open_id: "cidOPS1".into(),
        },
    );
    let apps = Apps::start(AppState {
        app_key: "dingappkey".into(),
        app_secret: "dingsecret".into(),
        robot_code: "dingrobot01".into(),
        chats,
        ..AppState::default()
    })
    .await;
    let src =
        std::fs::read_to_string("config/examples/dingtalk-robot-group-messages.toml").unwrap();
    let base = apps.base();
    let srv = start_file(
        &src,
        &[
            ("DING_APP_KEY", "dingappkey"),
            ("DING_APP_SECRET", "dingsecret"),
            ("DING_ROBOT_CODE", "dingrobot01"),
            ("DING_API_BASE", &base),
            ("DING_NEW_API_BASE", &base),
        ],
    )
    .await;
    let commands = ["状态", "链接", "图片", "文件", "审批", "你好"];
    for (i, cmd) in commands.iter().enumerate() {
        let body = json!({
            "conversationId": "cidOPS1", "msgId": format!("msg{i}"), "senderNick": "张三",
            "conversationType": "2", "msgtype": "text", "text": {"content": format!(" {cmd}")},
            "createAt": now_ms(), "chatbotUserId": "$:LWCP_v1:$bot", "isAdmin": false
        })
        .to_string();
        let ts = now_ms().to_string();
        let sign = hookgate::crypto::robot::sign("dingsecret", &ts);
        let r = srv
            .post(
                "/hooks/dingtalk/robot",
                &[
                    ("timestamp", &ts),
                    ("sign", &sign),
                    ("Content-Type", "application/json"),
                ],
                body.as_bytes(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    all_done(&srv, commands.len()).await;
    let mut keys: Vec<String> = apps
        .messages()
        .iter()
        .map(|(open, m)| {
            assert_eq!(open, "cidOPS1");
            m["msgKey"].as_str().unwrap().to_owned()
        })
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "sampleActionCard2",
            "sampleFile",
            "sampleImageMsg",
            "sampleLink",
            "sampleMarkdown",
            "sampleText"
        ]
    );
    let card = apps
        .messages()
        .into_iter()
        .find(|(_, m)| m["msgKey"] == "sampleActionCard2")
        .unwrap();
    assert_eq!(card.1["msgParam"]["text"], "张三 申请今晚发布，请审批");
    srv.stop().await;
}

#[tokio::test]
async fn wecom_group_messages_upload_media_first() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("chart.png");
    std::fs::write(&png, b"\x89PNG chart").unwrap();
    let mut state = wecom_state();
    state
        .chats
        .insert("opsroom".into(), common::apps::Chat::default());
    let apps = Apps::start(state).await;
    let rules = format!(
        r#"
[outbound]
media_dir = {:?}

[[rules]]
name = "post"
[[rules.actions]]
kind = "group_send"
via = "corp"
chat_id = "opsroom"
message = {{ msgtype = "image", image = {{ path = "{}" }} }}
[[rules.actions]]
kind = "group_send"
via = "corp"
chat_id = "opsroom"
message = {{ msgtype = "textcard", textcard = {{ title = "新成员 {{{{ UserID }}}}", description = "请安排入职", url = "https://example.com", btntxt = "详情" }} }}
[[rules.actions]]
kind = "group_send"
via = "corp"
chat_id = "opsroom"
message = {{ msgtype = "news", news = {{ articles = [{{ title = "入职指南", url = "https://example.com/guide" }}] }} }}
"#,
        dir.path().display().to_string(),
        png.display()
    );
    let srv = start_file(&wecom_config(&apps, "app-secret", &rules), &[]).await;
    contact(&srv, "newbie").await;
    all_done(&srv, 3).await;
    let sent: Vec<String> = apps
        .messages()
        .iter()
        .map(|(_, m)| m["msgtype"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sent, ["image", "textcard", "news"], "in order");
    let media_id = apps.messages()[0].1["image"]["media_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let uploaded = apps.state.lock().unwrap().media[&media_id].clone();
    assert!(uploaded.windows(10).any(|w| w == b"\x89PNG chart"));
    assert_eq!(apps.calls("/cgi-bin/media/upload"), 1);
    srv.stop().await;
}

/// Seed 003's file step: a DingTalk group message's image or file given as a local path
/// (inside `[outbound] media_dir`) is uploaded first and sent by its media id, the file with
/// its name and extension.
#[tokio::test]
async fn dingtalk_group_messages_upload_media_first() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dashboard.png"), b"\x89PNG dash").unwrap();
    std::fs::write(dir.path().join("周报.pdf"), b"%PDF weekly").unwrap();
    let mut chats = std::collections::BTreeMap::new();
    chats.insert(
        "chatOPS".to_owned(),
        common::apps::Chat {
            open_id: "cidOPS1".into(),
            ..Default::default()
        },
    );
    let apps = Apps::start(AppState {
        app_key: "dingappkey".into(),
        app_secret: "dingsecret".into(),
        robot_code: "dingappkey".into(),
        chats,
        ..AppState::default()
    })
    .await;
    let base = apps.base();
    let config = format!(
        r#"
[outbound]
media_dir = {:?}

[connections.ding]
kind = "dingtalk"
app_key = "dingappkey"
app_secret = "dingsecret"
api_base = "{base}"
new_api_base = "{base}"

[[receivers]]
name = "in"
vendor = "webhook"
path = "/in"
auth = "none"

[[rules]]
name = "post"
[[rules.actions]]
kind = "group_send"
via = "ding"
chat_id = "cidOPS1"
message = {{ msgKey = "sampleImageMsg", msgParam = {{ path = "dashboard.png" }} }}
[[rules.actions]]
kind = "group_send"
via = "ding"
chat_id = "cidOPS1"
message = {{ msgKey = "sampleFile", msgParam = {{ path = "周报.pdf" }} }}
"#,
        dir.path().display().to_string()
    );
    let srv = common::start("", &config).await;
    let r = srv
        .post("/in", &[("Content-Type", "application/json")], b"{}")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    all_done(&srv, 2).await;
    let sent = apps.messages();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    let image = &sent[0].1["msgParam"];
    let file = &sent[1].1["msgParam"];
    let media = apps.state.lock().unwrap().media.clone();
    let uploaded = |id: &serde_json::Value| media[id.as_str().unwrap()].clone();
    assert!(
        uploaded(&image["photoURL"])
            .windows(8)
            .any(|w| w == b"\x89PNG das")
    );
    assert!(
        uploaded(&file["mediaId"])
            .windows(11)
            .any(|w| w == b"%PDF weekly")
    );
    assert_eq!(
        (file["fileName"].as_str(), file["fileType"].as_str()),
        (Some("周报.pdf"), Some("pdf"))
    );
    assert!(
        image.get("path").is_none() && file.get("path").is_none(),
        "{sent:#?}"
    );
    srv.stop().await;
}

/// `kind = "api"` through a WeCom connection: a GET of any path with the managed token
/// (fetched once, shared), its answer picked with `keep` and read by the next action.
#[tokio::test]
async fn a_wecom_api_call_carries_the_managed_token_and_its_answer_is_a_step() {
    let apps = Apps::start(wecom_state()).await;
    let sink = common::sink::Sink::start(&[]).await;
    let rules = format!(
        r#"
[[rules]]
name = "who else"
[[rules.actions]]
kind = "api"
via = "corp"
path = "/cgi-bin/user/list"
params = {{ department_id = "{{{{ Department }}}}" }}
keep = "userlist"
as = "people"
[[rules.actions]]
kind = "http"
url = "{}"
body = "{{% for p in steps.people %}}{{{{ p.name }}}} {{% endfor %}}"
"#,
        sink.url("/people")
    );
    let srv = start_file(&wecom_config(&apps, "app-secret", &rules), &[]).await;
    contact(&srv, "newbie").await;
    all_done(&srv, 2).await;
    assert_eq!(sink.received()[0].body, "张三 李四 ");
    assert_eq!(apps.calls("/cgi-bin/gettoken"), 1);
    assert_eq!(apps.calls("/cgi-bin/user/list"), 1);
    srv.stop().await;
}

/// WeCom answers 60020 to every IP but the company's fixed egress proxy: with `[outbound]
/// proxy` (credentials from a variable) every API call goes through it and the delivery is
/// done; with a wrong proxy password the failure names the proxy and its 407, never the
/// password, and is retried.
#[tokio::test]
async fn app_api_calls_go_through_the_egress_proxy() {
    let mut state = wecom_state();
    state.ip_blocked = true;
    let apps = Apps::start(state).await;
    let proxy = common::proxy::Proxy::start("egress", "pr0xy-pass").await;
    let config = format!(
        "{}\n[outbound]\nproxy = \"${{PROXY_URL}}\"\n",
        wecom_config(&apps, "app-secret", NOTIFY)
    );
    let url = proxy.url("egress", "pr0xy-pass");
    let srv = start_file(&config, &[("PROXY_URL", url.as_str())]).await;
    contact(&srv, "a").await;
    all_done(&srv, 1).await;
    let seen = proxy.seen();
    let base = apps.base();
    for path in ["/cgi-bin/gettoken", "/cgi-bin/message/send"] {
        assert!(
            seen.iter()
                .any(|(_, target)| target.starts_with(&format!("{base}{path}"))),
            "{path} not through the proxy: {seen:?}"
        );
    }
    assert_eq!(apps.notifications().len(), 1);
    srv.stop().await;

    let url = proxy.url("egress", "wrong-pass");
    let srv = start_file(&config, &[("PROXY_URL", url.as_str())]).await;
    contact(&srv, "b").await;
    let (d, err) = first_failure(&srv).await;
    assert!(err.contains("407") && err.contains("proxy"), "{err}");
    assert!(!err.contains("wrong-pass"), "{err}");
    assert_ne!(
        d.status,
        DeliveryStatus::Dead,
        "an outage delays, never drops"
    );
    srv.stop().await;
}

/// HTTPS goes through the egress proxy as a `CONNECT` tunnel carrying the proxy's
/// credentials (TLS stays end to end: here the far end speaks no TLS, so the attempt fails
/// after the tunnel, and is retried); a wrong password is the proxy's 407, named as such.
#[tokio::test]
async fn https_goes_through_the_egress_proxy_as_a_connect_tunnel() {
    let proxy = common::proxy::Proxy::start("egress", "pr0xy-pass").await;
    // A TCP listener that is no TLS server: the tunnel opens, the handshake fails.
    let far = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let far_addr = far.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = far.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = s.write_all(b"not tls\r\n").await;
        }
    });
    let config = format!(
        r#"
[server]
listen = "${{HOOKGATE_LISTEN}}"
[store]
path = "${{HOOKGATE_DB}}"
[delivery]
first_retry = 1
max_backoff = 1
[outbound]
proxy = "${{PROXY_URL}}"
[[receivers]]
name = "ci"
vendor = "webhook"
path = "/ci"
auth = "token"
auth_header = "Authorization"
prefix = "Bearer "
secret = "a-long-ci-token-0123456"
[[rules]]
name = "forward"
[[rules.actions]]
kind = "http"
url = "https://{far_addr}/hook"
body = "{{{{ event.id }}}}"
"#
    );
    for (password, expect) in [("pr0xy-pass", "tls"), ("wrong-pass", "407")] {
        let url = proxy.url("egress", password);
        let srv = start_file(&config, &[("PROXY_URL", url.as_str())]).await;
        let r = srv
            .post(
                "/ci",
                &[
                    ("Authorization", "Bearer a-long-ci-token-0123456"),
                    ("Content-Type", "application/json"),
                ],
                br#"{"build": 7}"#,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let (d, err) = first_failure(&srv).await;
        assert_ne!(d.status, DeliveryStatus::Dead, "retried: {err}");
        assert!(!err.contains(password), "{err}");
        if expect == "407" {
            assert!(
                err.contains("proxy authorization required") && err.contains("[outbound] proxy"),
                "{err}"
            );
        } else {
            assert!(err.starts_with(&format!("{far_addr}: ")), "{err}");
        }
        srv.stop().await;
    }
    let seen = proxy.seen();
    let tunnels = seen
        .iter()
        .filter(|(m, t)| m == "CONNECT" && *t == far_addr.to_string())
        .count();
    assert!(tunnels >= 2, "{seen:?}");
}
