//! Local fakes of the WeCom and DingTalk app APIs (protocols.md §6) that enforce the
//! documented contract: token issuance and expiry (forceable), errcodes in HTTP 200 bodies
//! (old APIs) and HTTP 4xx `{code, message}` (DingTalk v1.0), member-count, owner and chat
//! id rules, and a count of every call.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

#[derive(Debug, Clone, Default)]
pub struct Chat {
    pub name: String,
    pub owner: String,
    pub users: Vec<String>,
    pub open_id: String,
}

#[derive(Default)]
pub struct AppState {
    pub corp_id: String,
    pub secret: String,
    pub agent_id: i64,
    pub app_key: String,
    pub app_secret: String,
    pub robot_code: String,
    /// Live tokens; `expire_tokens` empties it (the vendor's 2 h expiry, forced).
    pub tokens: Vec<String>,
    pub issued: usize,
    /// Calls per path.
    pub calls: BTreeMap<String, usize>,
    pub chats: BTreeMap<String, Chat>,
    /// (chat id or openConversationId, body) of every group message.
    pub messages: Vec<(String, Value)>,
    pub notifications: Vec<Value>,
    /// Yida form instances saved (`/v1.0/yida/forms/instances`), with formDataJson parsed.
    pub yida: Vec<Value>,
    /// Department → users (JSON objects with userid, name, email).
    pub departments: HashMap<String, Vec<Value>>,
    /// Department → sub-departments (DingTalk listsub).
    pub sub_departments: HashMap<String, Vec<String>>,
    pub media: HashMap<String, Vec<u8>>,
    /// errcodes to answer next on a path, before anything else.
    pub scripted: HashMap<String, Vec<i64>>,
    /// Every call answers 60020 (WeCom: IP not trusted), but those through the trusted
    /// fixed-IP proxy (they carry its `Via`).
    pub ip_blocked: bool,
    /// Paths whose next call is carried out but answered 504 by a gateway in front (the
    /// answer lost on the way back).
    pub lose_answers: Vec<String>,
}

#[derive(Clone)]
pub struct Apps {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<AppState>>,
}

impl Apps {
    pub async fn start(state: AppState) -> Apps {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let apps = Apps {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(Mutex::new(state)),
        };
        let state = apps.state.clone();
        super::http_server(listener, move |parts, body| {
            let (status, answer) = handle(&state, &parts, &body);
            let mut s = state.lock().unwrap();
            if let Some(i) = s.lose_answers.iter().position(|p| p == parts.uri.path()) {
                s.lose_answers.remove(i);
                return (504, "text/html", "<html>504 Gateway Time-out</html>".into());
            }
            (status, "application/json", answer.to_string())
        });
        apps
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .calls
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn expire_tokens(&self) {
        self.state.lock().unwrap().tokens.clear();
    }

    pub fn chats(&self) -> BTreeMap<String, Chat> {
        self.state.lock().unwrap().chats.clone()
    }

    pub fn messages(&self) -> Vec<(String, Value)> {
        self.state.lock().unwrap().messages.clone()
    }

    pub fn notifications(&self) -> Vec<Value> {
        self.state.lock().unwrap().notifications.clone()
    }

    pub fn yida(&self) -> Vec<Value> {
        self.state.lock().unwrap().yida.clone()
    }
}

fn ok(extra: Value) -> (u16, Value) {
    let mut v = json!({"errcode": 0, "errmsg": "ok"});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    (200, v)
}

fn err(code: i64, msg: &str) -> (u16, Value) {
    (200, json!({"errcode": code, "errmsg": msg}))
}

fn handle(
    state: &Mutex<AppState>,
    parts: &hyper::http::request::Parts,
    body: &[u8],
) -> (u16, Value) {
    let mut s = state.lock().unwrap();
    let path = parts.uri.path().to_owned();
    *s.calls.entry(path.clone()).or_default() += 1;
    let q: HashMap<String, String> =
        url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    if let Some(codes) = s.scripted.get_mut(&path)
        && !codes.is_empty()
    {
        let code = codes.remove(0);
        return err(code, "scripted");
    }
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    // Token issuance.
    match path.as_str() {
        "/cgi-bin/gettoken" => {
            if q.get("corpid") != Some(&s.corp_id) || q.get("corpsecret") != Some(&s.secret) {
                return err(40001, "invalid credential");
            }
            if s.ip_blocked && !parts.headers.contains_key("via") {
                return err(60020, "not allow to access from your ip, from ip: 10.0.0.7");
            }
            s.issued += 1;
            let t = format!("wt{}", s.issued);
            s.tokens.push(t.clone());
            return ok(json!({"access_token": t, "expires_in": 7200}));
        }
        "/gettoken" => {
            if q.get("appkey") != Some(&s.app_key) || q.get("appsecret") != Some(&s.app_secret) {
                return err(40089, "不合法的corpid或corpsecret");
            }
            s.issued += 1;
            let t = format!("dt{}", s.issued);
            s.tokens.push(t.clone());
            return ok(json!({"access_token": t, "expires_in": 7200}));
        }
        "/v1.0/oauth2/accessToken" => {
            if json["appKey"] != s.app_key.as_str() || json["appSecret"] != s.app_secret.as_str() {
                return (
                    400,
                    json!({"code": "invalidClientIdOrSecret", "message": "无效的clientId或者clientSecret"}),
                );
            }
            s.issued += 1;
            let t = format!("dn{}", s.issued);
            s.tokens.push(t.clone());
            return (200, json!({"accessToken": t, "expireIn": 7200}));
        }
        _ => {}
    }
    // Every other call needs a live token.
    if path.starts_with("/v1.0/") {
        let token = parts
            .headers
            .get("x-acs-dingtalk-access-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !s.tokens.iter().any(|t| t == token) {
            return (
                401,
                json!({"code": "InvalidAuthentication", "message": "不合法的access_token"}),
            );
        }
    } else {
        match q.get("access_token") {
            None => return err(41001, "access_token missing"),
            Some(t) if !s.tokens.contains(t) => {
                // Issued once (by its prefix) but expired, or never issued.
                return if t.starts_with("wt") || t.starts_with("dt") {
                    err(42001, "access_token expired")
                } else {
                    err(40014, "invalid access_token")
                };
            }
            _ => {}
        }
        if s.ip_blocked && !parts.headers.contains_key("via") {
            return err(60020, "not allow to access from your ip");
        }
    }
    match path.as_str() {
        "/cgi-bin/appchat/create" => {
            let name = json["name"].as_str().unwrap_or("");
            let owner = json["owner"].as_str().unwrap_or("");
            let users: Vec<String> = json["userlist"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect();
            let chatid = json["chatid"].as_str().unwrap_or("").to_owned();
            if name.chars().count() > 50 {
                return err(86004, "invalid chat name");
            }
            if !(2..=500).contains(&users.len()) {
                return err(86006, "invalid member count");
            }
            if !users.iter().any(|u| u == owner) {
                return err(86207, "owner not in userlist");
            }
            if chatid.len() > 32 || !chatid.chars().all(|c| c.is_ascii_alphanumeric()) {
                return err(86001, "invalid chatid");
            }
            if s.chats.contains_key(&chatid) {
                return err(86215, "chatid already exists");
            }
            s.chats.insert(
                chatid.clone(),
                Chat {
                    name: name.into(),
                    owner: owner.into(),
                    users,
                    open_id: String::new(),
                },
            );
            ok(json!({"chatid": chatid}))
        }
        "/cgi-bin/appchat/update" => {
            let chatid = json["chatid"].as_str().unwrap_or("").to_owned();
            let Some(chat) = s.chats.get_mut(&chatid) else {
                return err(86003, "chatid not exists");
            };
            if let Some(n) = json["name"].as_str() {
                chat.name = n.into();
            }
            if let Some(o) = json["owner"].as_str() {
                chat.owner = o.into();
            }
            for u in json["add_user_list"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|u| u.as_str())
            {
                chat.users.push(u.into());
            }
            let del: Vec<&str> = json["del_user_list"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|u| u.as_str())
                .collect();
            chat.users.retain(|u| !del.contains(&u.as_str()));
            ok(json!({}))
        }
        "/cgi-bin/appchat/send" => {
            let chatid = json["chatid"].as_str().unwrap_or("").to_owned();
            if !s.chats.contains_key(&chatid) {
                return err(86003, "chatid not exists");
            }
            let t = json["msgtype"].as_str().unwrap_or("");
            let fine = match t {
                "text" | "markdown" => json[t]["content"].is_string(),
                "image" | "file" => json[t]["media_id"]
                    .as_str()
                    .is_some_and(|m| s.media.contains_key(m)),
                "textcard" => json[t]["title"].is_string() && json[t]["url"].is_string(),
                "news" => json[t]["articles"].is_array(),
                _ => false,
            };
            if !fine {
                return err(40008, "invalid message type");
            }
            s.messages.push((chatid, json));
            ok(json!({}))
        }
        "/cgi-bin/message/send" => {
            if json["agentid"].as_i64() != Some(s.agent_id) {
                return err(40056, "invalid agentid");
            }
            s.notifications.push(json);
            ok(json!({"invaliduser": "", "msgid": "m1"}))
        }
        "/cgi-bin/user/list" => {
            let dept = q.get("department_id").cloned().unwrap_or_default();
            match s.departments.get(&dept) {
                Some(users) => ok(json!({"userlist": users})),
                None => err(60123, "invalid party id"),
            }
        }
        // DingTalk's old-API media upload (the WeCom one below answers the same way).
        "/media/upload" => {
            let id = format!("@lADmedia{}", s.media.len() + 1);
            s.media.insert(id.clone(), body.to_vec());
            ok(json!({"type": q.get("type"), "media_id": id, "created_at": 1_700_000_000}))
        }
        "/cgi-bin/media/upload" => {
            let id = format!("media{}", s.media.len() + 1);
            s.media.insert(id.clone(), body.to_vec());
            ok(json!({"type": q.get("type"), "media_id": id, "created_at": "1700000000"}))
        }
        "/chat/create" => {
            let name = json["name"].as_str().unwrap_or("");
            let owner = json["owner"].as_str().unwrap_or("");
            let users: Vec<String> = json["useridlist"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect();
            if name.is_empty() || name.chars().count() > 20 {
                return err(34012, "群名称不合法");
            }
            if users.len() > 40 {
                return err(34013, "成员超过40人");
            }
            if !users.iter().any(|u| u == owner) {
                return err(34014, "群主不在成员列表中");
            }
            let n = s.chats.len() + 1;
            let chatid = format!("chat{n:04}");
            let open_id = format!("cid{n:04}");
            s.chats.insert(
                chatid.clone(),
                Chat {
                    name: name.into(),
                    owner: owner.into(),
                    users,
                    open_id: open_id.clone(),
                },
            );
            ok(json!({"chatid": chatid, "openConversationId": open_id, "conversationTag": 2}))
        }
        "/chat/update" => {
            let chatid = json["chatid"].as_str().unwrap_or("").to_owned();
            let add: Vec<String> = json["add_useridlist"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect();
            let del: Vec<String> = json["del_useridlist"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect();
            if add.len() > 40 || del.len() > 40 {
                return err(34013, "成员超过40人");
            }
            let Some(chat) = s.chats.get_mut(&chatid) else {
                return err(34005, "chatid不存在");
            };
            if let Some(n) = json["name"].as_str() {
                chat.name = n.into();
            }
            if let Some(o) = json["owner"].as_str() {
                chat.owner = o.into();
            }
            chat.users.extend(add);
            chat.users.retain(|u| !del.contains(u));
            ok(json!({}))
        }
        // Yida 新增表单实例: every field required, formDataJson a JSON object as text.
        "/v1.0/yida/forms/instances" => {
            let data = json["formDataJson"]
                .as_str()
                .and_then(|d| serde_json::from_str::<Value>(d).ok())
                .filter(Value::is_object);
            let complete = ["appType", "systemToken", "userId", "formUuid"]
                .iter()
                .all(|k| json[k].as_str().is_some_and(|v| !v.is_empty()));
            let Some(data) = data.filter(|_| complete) else {
                return (
                    400,
                    json!({"code": "InvalidParameter", "message": "appType, systemToken, userId, formUuid and formDataJson are required"}),
                );
            };
            let mut saved = json.clone();
            saved["formDataJson"] = data;
            s.yida.push(saved);
            (200, json!({"result": format!("FINST-{}", s.yida.len())}))
        }
        "/v1.0/robot/groupMessages/send" => {
            let open = json["openConversationId"].as_str().unwrap_or("").to_owned();
            if json["robotCode"] != s.robot_code.as_str() {
                return (
                    400,
                    json!({"code": "invalidParameter.robotCode", "message": "robotCode不存在"}),
                );
            }
            if !s.chats.values().any(|c| c.open_id == open) {
                return (
                    400,
                    json!({"code": "invalidParameter.openConversationId", "message": "群不存在"}),
                );
            }
            let key = json["msgKey"].as_str().unwrap_or("");
            let Some(param) = json["msgParam"]
                .as_str()
                .and_then(|p| serde_json::from_str::<Value>(p).ok())
            else {
                return (
                    400,
                    json!({"code": "invalidParameter.msgParam", "message": "msgParam须为JSON字符串"}),
                );
            };
            let fine = match key {
                "sampleText" => param["content"].is_string(),
                "sampleMarkdown" => param["title"].is_string() && param["text"].is_string(),
                "sampleLink" => param["messageUrl"].is_string(),
                "sampleImageMsg" => param["photoURL"].is_string(),
                "sampleFile" => param["mediaId"].is_string(),
                k if k.starts_with("sampleActionCard") => param["title"].is_string(),
                _ => false,
            };
            if !fine {
                return (
                    400,
                    json!({"code": "invalidParameter.msgKey", "message": "消息模板参数错误"}),
                );
            }
            s.messages
                .push((open, json!({"msgKey": key, "msgParam": param})));
            (
                200,
                json!({"processQueryKey": format!("pq{}", s.messages.len())}),
            )
        }
        "/topapi/message/corpconversation/asyncsend_v2" => {
            if json["agent_id"].as_i64() != Some(s.agent_id) {
                return err(400035, "agent_id不合法");
            }
            s.notifications.push(json);
            ok(json!({"task_id": 4242}))
        }
        "/topapi/v2/user/list" => {
            let dept = json["dept_id"].as_i64().unwrap_or(0).to_string();
            let size = json["size"].as_i64().unwrap_or(0);
            if !(1..=100).contains(&size) {
                return err(40035, "size不合法");
            }
            let cursor = json["cursor"].as_i64().unwrap_or(0) as usize;
            let Some(users) = s.departments.get(&dept) else {
                return err(60003, "部门不存在");
            };
            // Two users a page, whatever size asks: the client must follow next_cursor.
            let page: Vec<Value> = users.iter().skip(cursor).take(2).cloned().collect();
            let more = cursor + 2 < users.len();
            ok(json!({"result": {"has_more": more, "next_cursor": cursor + 2, "list": page}}))
        }
        "/topapi/v2/department/listsub" => {
            let dept = json["dept_id"].as_i64().unwrap_or(0).to_string();
            let subs: Vec<Value> = s
                .sub_departments
                .get(&dept)
                .into_iter()
                .flatten()
                .map(|d| json!({"dept_id": d.parse::<i64>().unwrap_or(0)}))
                .collect();
            ok(json!({"result": subs}))
        }
        _ => (404, json!({"errcode": 404, "errmsg": "no such api"})),
    }
}
