//! What a `sql` lookup adds to a delivery: the same events run through the real app twice,
//! once with an `email` action alone, once with a `sql` lookup on MariaDB (the seed 004
//! template row) before the same email, whose subject and body come from the row. Both
//! mail a local SMTP sink that accepts everything. Reported: events per second until every
//! delivery is done, and the time per event the lookup adds, the two runs alternated so the
//! comparison is made within one run. `cargo bench --bench lookup` (starts the scratch
//! MariaDB with `tests/mysql/start.sh`).

use std::time::{Duration, Instant};

use hookgate::app::{App, Listeners};
use hookgate::store::{DeliveryFilter, DeliveryStatus, Store};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const EVENTS: usize = 400;
const ROUNDS: usize = 3;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("lookup: skipped; run it with `cargo bench --bench lookup`");
        return;
    }
    let out = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mysql/start.sh"))
        .output()
        .expect("tests/mysql/start.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let port = server
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let sql = |db: &str, statements: &str| {
        let ok = std::process::Command::new("mariadb")
            .args([
                "--protocol=tcp",
                "-h",
                "127.0.0.1",
                "-P",
                &port,
                "-u",
                "hookgate",
                "-phookgate",
                db,
                "-e",
                statements,
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "{statements}");
    };
    sql(
        "hookgate",
        "DROP DATABASE IF EXISTS bench_lookup; CREATE DATABASE bench_lookup CHARACTER SET utf8mb4",
    );
    sql(
        "bench_lookup",
        "CREATE TABLE ipaas_email_template (app VARCHAR(64), change_type VARCHAR(64), subject VARCHAR(255), email_body TEXT, INDEX (app, change_type));
         INSERT INTO ipaas_email_template VALUES ('tencent-wechat', 'create_user', '新增成员：{name}', '新增时间：{createtime}\\n 新增成员 ID：{userid}');",
    );
    let db_url = format!("{}/bench_lookup", server.rsplit_once('/').unwrap().0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let smtp = smtp_sink().await;
        let alone = r#"
[[rules.actions]]
kind = "email"
via = "mail"
to = "it@example.com"
subject = "新增成员：{{ name }}"
body = "新增时间：{{ createtime | datetime }}\n 新增成员 ID：{{ userid }}"
"#;
        let looked_up = r#"
[[rules.actions]]
kind = "sql"
via = "ipaas"
query = "select subject, email_body from ipaas_email_template where app = 'tencent-wechat' and change_type = :type"
params = { type = "{{ change_type }}" }
max_rows = 1
as = "tpl"
[[rules.actions]]
kind = "email"
via = "mail"
to = "it@example.com"
subject = "{{ steps.tpl.rows[0].subject | fill(fields) }}"
body = "{{ steps.tpl.rows[0].email_body | fill(dict(fields, createtime=createtime | datetime)) }}"
"#;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            a.push(run(alone, &db_url, smtp).await);
            b.push(run(looked_up, &db_url, smtp).await);
        }
        let median = |v: &mut Vec<Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        let (ta, tb) = (median(&mut a), median(&mut b));
        let per = |t: Duration| t.as_secs_f64() * 1000.0 / EVENTS as f64;
        println!(
            "email alone      : {EVENTS} events done in {:>7.1} ms (median of {ROUNDS}), {:>6.0} events/s, {:.3} ms/event",
            ta.as_secs_f64() * 1000.0,
            EVENTS as f64 / ta.as_secs_f64(),
            per(ta)
        );
        println!(
            "sql lookup + email: {EVENTS} events done in {:>7.1} ms (median of {ROUNDS}), {:>6.0} events/s, {:.3} ms/event",
            tb.as_secs_f64() * 1000.0,
            EVENTS as f64 / tb.as_secs_f64(),
            per(tb)
        );
        println!(
            "the lookup adds {:.3} ms per event ({:+.0}%)",
            per(tb) - per(ta),
            (tb.as_secs_f64() / ta.as_secs_f64() - 1.0) * 100.0
        );
    });
}

/// The app on a fresh SQLite store with `actions` as its one rule's; `EVENTS` webhook
/// events posted 8 at a time; the time until every delivery is done.
async fn run(actions: &str, db_url: &str, smtp: u16) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let src = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[store]
path = "{}"
[delivery]
concurrency = 8
[connections.mail]
kind = "smtp"
url = "smtp://127.0.0.1:{smtp}"
from = "bot@example.com"
[connections.ipaas]
kind = "mysql"
url = "{db_url}"
[[receivers]]
name = "in"
vendor = "webhook"
path = "/in"
auth = "none"
[[rules]]
name = "mail"
{actions}
"#,
        dir.path().join("bench.db").display()
    );
    let config = hookgate::config::parse(&src, &|_| None).unwrap_or_else(|e| panic!("{e:?}"));
    let store = Store::open(&config.store).await.unwrap();
    let listeners = Listeners::bind(&config.server).await.unwrap();
    let app = App::start(config, store.clone(), listeners).await.unwrap();
    let url = format!("http://{}/in", app.addr());
    let client = reqwest::Client::new();
    let started = Instant::now();
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    let mut posts = tokio::task::JoinSet::new();
    for i in 0..EVENTS {
        let (client, url, limit) = (client.clone(), url.clone(), limit.clone());
        posts.spawn(async move {
            let _slot = limit.acquire_owned().await.unwrap();
            let body = serde_json::json!({
                "change_type": "create_user", "userid": format!("user{i}"),
                "name": format!("成员{i}"), "createtime": 1_700_000_100 + i
            });
            let r = client.post(&url).json(&body).send().await.unwrap();
            assert!(r.status().is_success());
        });
    }
    while posts.join_next().await.is_some() {}
    let all = DeliveryFilter {
        limit: 100_000,
        ..DeliveryFilter::default()
    };
    loop {
        let rows = store.deliveries(&all).await.unwrap();
        let done = rows
            .iter()
            .filter(|d| d.status == DeliveryStatus::Done)
            .count();
        assert!(
            rows.iter().all(|d| d.status != DeliveryStatus::Dead),
            "{rows:?}"
        );
        let planned = rows.iter().filter(|d| d.rule == "mail").count();
        if done == planned && planned >= EVENTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    app.shutdown().await;
    took
}

/// An SMTP server that accepts every message and keeps nothing.
async fn smtp_sink() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = conn.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                let mut data = false;
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply: &[u8] = if data {
                        if line == "." {
                            data = false;
                            b"250 OK\r\n"
                        } else {
                            continue;
                        }
                    } else {
                        match line.get(..4).map(str::to_ascii_uppercase).as_deref() {
                            Some("EHLO") | Some("HELO") => b"250-sink\r\n250 8BITMIME\r\n",
                            Some("DATA") => {
                                data = true;
                                b"354 go on\r\n"
                            }
                            Some("QUIT") => {
                                let _ = write.write_all(b"221 bye\r\n").await;
                                return;
                            }
                            _ => b"250 OK\r\n",
                        }
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}
