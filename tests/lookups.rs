//! `sql` lookups against real databases (a scratch MariaDB from `tests/mysql/start.sh`, the
//! scratch PostgreSQL): parameters are bound, never written into the statement (a field full
//! of quotes and a `DROP` comes back as data and drops nothing); the rows are the next
//! action's `steps`; a statement that writes is refused unless the action says `write`.

mod common;

use common::{eventually, start};
use hookgate::store::DeliveryStatus;

const HOSTILE: &str = r#"o'brien"; DROP TABLE people; -- \' "#;

/// A webhook receiver (token auth) and one rule: `actions` after a sink for the result.
fn config(connection: &str, actions: &str) -> String {
    format!(
        r#"
[delivery]
first_retry = 1
max_backoff = 1

[outbound]
allow_hosts = ["127.0.0.1"]

[connections.db]
{connection}

[[receivers]]
name = "in"
vendor = "webhook"
path = "/in"
auth = "token"
auth_header = "X-Token"
secret = "t"

[[rules]]
name = "look up"
receiver = "in"
{actions}
"#
    )
}

async fn post(srv: &common::TestServer, body: serde_json::Value) {
    let r = srv
        .post(
            "/in",
            &[("X-Token", "t"), ("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn settled(srv: &common::TestServer, n: usize) -> Vec<hookgate::store::DeliveryRow> {
    eventually(15, "every delivery settled", || {
        let d = srv.deliveries();
        d.len() == n
            && d.iter().all(|d| {
                matches!(
                    d.status,
                    DeliveryStatus::Done | DeliveryStatus::Dead | DeliveryStatus::Skipped
                )
            })
    })
    .await;
    let mut d = srv.deliveries();
    d.sort_by_key(|d| (d.event_id, d.action));
    d
}

#[tokio::test]
async fn a_mariadb_lookup_binds_hostile_text_as_data_and_refuses_an_unannounced_write() {
    let (db, url) = common::mysql::fresh("lookup");
    common::mysql::sql(
        Some(&db),
        "CREATE TABLE people (name VARCHAR(100), email VARCHAR(100), age INT);
         INSERT INTO people VALUES ('lisi', 'lisi@example.com', 30), ('张三', 'zs@example.com', NULL);",
    );
    let sink = common::sink::Sink::start(&[]).await;
    let actions = format!(
        r#"
[[rules.actions]]
kind = "sql"
via = "db"
query = """
select :who as who, email, age from people where name = :who or name = :other
"""
params = {{ who = "{{{{ who }}}}", other = "张三" }}
max_rows = 5
as = "q"
[[rules.actions]]
kind = "http"
url = "{}"
body = "{{{{ steps.q | tojson }}}}"
"#,
        sink.url("/rows")
    );
    let connection = format!("kind = \"mysql\"\nurl = \"{url}\"");
    let srv = start("", &config(&connection, &actions)).await;
    post(&srv, serde_json::json!({ "who": HOSTILE })).await;
    post(&srv, serde_json::json!({ "who": "lisi" })).await;
    let d = settled(&srv, 4).await;
    assert!(d.iter().all(|d| d.status == DeliveryStatus::Done), "{d:#?}");
    let bodies: Vec<serde_json::Value> = sink
        .received()
        .iter()
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    let hostile = bodies
        .iter()
        .find(|b| {
            b["rows"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["who"] == HOSTILE)
        })
        .unwrap_or_else(|| panic!("{bodies:#?}"));
    assert_eq!(hostile["count"], 1, "only 张三 matched: {hostile}");
    assert_eq!(hostile["rows"][0]["email"], "zs@example.com");
    assert_eq!(hostile["rows"][0]["age"], serde_json::Value::Null);
    let lisi = bodies
        .iter()
        .find(|b| b["count"] == 2)
        .unwrap_or_else(|| panic!("{bodies:#?}"));
    assert!(
        lisi["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["email"] == "lisi@example.com" && r["age"] == 30)
    );
    assert_eq!(
        common::mysql::sql(Some(&db), "SELECT count(*) FROM people"),
        "2",
        "nothing dropped"
    );
    srv.stop().await;

    // A write without `write = true` is refused by the read-only transaction.
    let insert = r#"
[[rules.actions]]
kind = "sql"
via = "db"
query = "insert into people (name) values (:who)"
params = { who = "{{ who }}" }
"#;
    let srv = start("", &config(&connection, insert)).await;
    post(&srv, serde_json::json!({ "who": "wangwu" })).await;
    let d = settled(&srv, 1).await;
    assert_eq!(d[0].status, DeliveryStatus::Dead, "{d:#?}");
    assert!(
        d[0].last_error.as_deref().unwrap().contains("READ ONLY"),
        "{d:#?}"
    );
    srv.stop().await;
    let write = insert.replace("params =", "write = true\nas = \"w\"\nparams =");
    let srv = start("", &config(&connection, &write)).await;
    post(&srv, serde_json::json!({ "who": "wangwu" })).await;
    let d = settled(&srv, 1).await;
    assert_eq!(d[0].status, DeliveryStatus::Done, "{d:#?}");
    assert_eq!(
        common::mysql::sql(
            Some(&db),
            "SELECT count(*) FROM people WHERE name = 'wangwu'"
        ),
        "1"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_postgres_lookup_binds_typed_parameters_and_hostile_text() {
    let url = common::pg::fresh_url("lookup");
    common::pg::psql(&format!(
        "SET search_path = {}; CREATE TABLE items (id INT, title TEXT, status TEXT, data JSONB);
         INSERT INTO items VALUES (7, '机房整改', '已处理', '{{\"owner\":\"lisi\"}}');",
        url.rsplit("%3D").next().unwrap()
    ));
    let sink = common::sink::Sink::start(&[]).await;
    let actions = format!(
        r#"
[[rules.actions]]
kind = "sql"
via = "db"
query = "select id, title, status, data, :note::text as note from items where id = :id"
params = {{ id = "{{{{ id }}}}", note = "{{{{ note }}}}" }}
as = "item"
[[rules.actions]]
kind = "http"
if = "steps.item.rows[0].status == '已处理'"
url = "{}"
body = "{{{{ steps.item.rows[0] | tojson }}}}"
"#,
        sink.url("/item")
    );
    let connection = format!("kind = \"postgres\"\nurl = \"{url}\"");
    let srv = start("", &config(&connection, &actions)).await;
    post(&srv, serde_json::json!({ "id": 7, "note": HOSTILE })).await;
    post(&srv, serde_json::json!({ "id": "7 or 1=1", "note": "x" })).await;
    let d = settled(&srv, 4).await;
    let statuses: Vec<_> = d.iter().map(|d| d.status).collect();
    assert_eq!(
        statuses,
        [
            DeliveryStatus::Done,
            DeliveryStatus::Done,
            DeliveryStatus::Dead,
            DeliveryStatus::Dead
        ],
        "{d:#?}"
    );
    assert!(
        d[2].last_error
            .as_deref()
            .unwrap()
            .contains(":id = \"7 or 1=1\" is not an integer"),
        "{d:#?}"
    );
    let row: serde_json::Value = serde_json::from_str(&sink.received()[0].body).unwrap();
    assert_eq!(row["id"], 7);
    assert_eq!(row["title"], "机房整改");
    assert_eq!(row["data"]["owner"], "lisi");
    assert_eq!(row["note"], HOSTILE);
    srv.stop().await;
}
