//! The vendors' directories, for actions that name people by department: a department's
//! members (recursively if asked) through the WeCom or DingTalk connection, cached briefly,
//! one lookup per department however many deliveries ask at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::actions::ActionError;
use crate::actions::api::Apis;
use crate::actions::api::dingtalk::DingTalk;
use crate::actions::api::wecom::WeCom;
use crate::actions::people::People;

/// How long a department's member list is reused.
const DIRECTORY_TTL: Duration = Duration::from_secs(60);

/// A person from the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub userid: String,
    pub name: String,
    /// Empty when the vendor does not show it (WeCom apps made after 2022-06-20).
    pub email: String,
}

/// (connection, department, recursive).
type DepartmentKey = (String, String, bool);

type Entry = Arc<tokio::sync::Mutex<Option<(Instant, Vec<Person>)>>>;

/// Department member lists, cached briefly; one lookup per department however many
/// deliveries ask at once (each entry's async lock is held across its fetch).
#[derive(Default)]
pub struct Directory {
    cache: Mutex<HashMap<DepartmentKey, Entry>>,
}

impl Directory {
    /// The members of a department (and its sub-departments if `recursive`).
    pub async fn members(
        &self,
        apis: &Apis,
        via: &str,
        dept: &str,
        recursive: bool,
    ) -> Result<Vec<Person>, ActionError> {
        let key = (via.to_owned(), dept.to_owned(), recursive);
        let entry = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .clone();
        let mut cached = entry.lock().await;
        if let Some((at, people)) = &*cached
            && at.elapsed() < DIRECTORY_TTL
        {
            return Ok(people.clone());
        }
        let people = if let Some(w) = apis.wecom.get(via) {
            wecom_members(w, dept, recursive).await?
        } else if let Some(d) = apis.dingtalk.get(via) {
            dingtalk_members(d, dept, recursive).await?
        } else {
            return Err(ActionError::permanent(format!(
                "no wecom or dingtalk connection named {via:?}"
            )));
        };
        *cached = Some((Instant::now(), people.clone()));
        Ok(people)
    }

    /// User ids for a people list, departments expanded, duplicates dropped, order kept.
    pub async fn user_ids(
        &self,
        apis: &Apis,
        via: &str,
        people: &[People],
    ) -> Result<Vec<String>, ActionError> {
        let mut out: Vec<String> = Vec::new();
        for p in people {
            match p {
                People::User(u) => out.push(u.clone()),
                People::Department {
                    id,
                    via: dir_via,
                    recursive,
                } => {
                    let dir = dir_via.as_deref().unwrap_or(via);
                    out.extend(
                        self.members(apis, dir, id, *recursive)
                            .await?
                            .into_iter()
                            .map(|p| p.userid),
                    );
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|u| seen.insert(u.clone()));
        Ok(out)
    }
}

async fn wecom_members(w: &WeCom, dept: &str, recursive: bool) -> Result<Vec<Person>, ActionError> {
    let answer = w
        .call(
            "/cgi-bin/user/list",
            &[
                ("department_id", dept.to_owned()),
                ("fetch_child", u8::from(recursive).to_string()),
            ],
            None,
        )
        .await?;
    Ok(answer["userlist"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|u| Person {
                    userid: u["userid"].as_str().unwrap_or_default().to_owned(),
                    name: u["name"].as_str().unwrap_or_default().to_owned(),
                    email: [&u["email"], &u["biz_mail"]]
                        .iter()
                        .find_map(|e| e.as_str().filter(|e| !e.is_empty()))
                        .unwrap_or_default()
                        .to_owned(),
                })
                .filter(|p| !p.userid.is_empty())
                .collect()
        })
        .unwrap_or_default())
}

async fn dingtalk_members(
    d: &DingTalk,
    dept: &str,
    recursive: bool,
) -> Result<Vec<Person>, ActionError> {
    let mut depts = vec![dept.to_owned()];
    if recursive {
        let mut i = 0;
        while i < depts.len() {
            let id: i64 = depts[i].parse().map_err(|_| {
                ActionError::permanent(format!("department {:?} is not a number", depts[i]))
            })?;
            let sub = d
                .oapi("/topapi/v2/department/listsub", &json!({"dept_id": id}))
                .await?;
            for s in sub["result"].as_array().into_iter().flatten() {
                if let Some(n) = s["dept_id"].as_i64() {
                    depts.push(n.to_string());
                }
            }
            i += 1;
        }
    }
    let mut out = Vec::new();
    for dept in depts {
        let id: i64 = dept
            .parse()
            .map_err(|_| ActionError::permanent(format!("department {dept:?} is not a number")))?;
        let mut cursor = 0i64;
        loop {
            let page = d
                .oapi(
                    "/topapi/v2/user/list",
                    &json!({"dept_id": id, "cursor": cursor, "size": 100, "language": "zh_CN", "contain_access_limit": false}),
                )
                .await?;
            let result = &page["result"];
            for u in result["list"].as_array().into_iter().flatten() {
                out.push(Person {
                    userid: u["userid"].as_str().unwrap_or_default().to_owned(),
                    name: u["name"].as_str().unwrap_or_default().to_owned(),
                    email: [&u["org_email"], &u["email"]]
                        .iter()
                        .find_map(|e| e.as_str().filter(|e| !e.is_empty()))
                        .unwrap_or_default()
                        .to_owned(),
                });
            }
            match (result["has_more"].as_bool(), result["next_cursor"].as_i64()) {
                (Some(true), Some(next)) if next > cursor => cursor = next,
                _ => break,
            }
        }
    }
    Ok(out)
}
