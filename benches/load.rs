//! Load: the real `hookgate serve` on loopback, driven the way STACK.md measured the receivers
//! users write by hand. `cargo bench --bench load` (needs `wrk`: `apt-get install wrk`).
//!
//! 1. Saturation: `wrk -t2 -c32` with unique signed ~1 KiB WeCom text callbacks (each its own
//!    MsgId, so every request is a real insert, never a dedupe hit), once with
//!    `synchronous = "normal"` and once fully durable (`"full"`, the default).
//! 2. Fully durable with one `log` rule firing for every callback (#5's setup).
//! 3. Fully durable with one rule whose `http` action posts each event to a local sink:
//!    accepts/s under wrk, then how long until every delivery is done (deliveries/s).
//!    Then the same plaintext XML posted to a `webhook` receiver with its HMAC-SHA256 in the
//!    query (`webhook`): a signed webhook next to a signed and encrypted WeCom callback.
//! 4. The same wrk run against the receivers users write by hand, so the comparisons are
//!    made in the same run: Go stdlib (`benches/go-receiver`, when `go` is installed) and
//!    Python (`benches/py-receiver`: wechatpy under gunicorn, one worker per core).
//! 5. Steady 1,000/s and 2,000/s, fully durable, then 5,000/s with one `log` rule firing for
//!    every callback (#19's row): an open-loop generator over 32 keep-alive connections;
//!    latency counts from each request's scheduled send time, so a stall is not hidden.
//!    `HOOKGATE_STEADY_SECS` sets their length (default 60). `bursts` (not in the default
//!    set): 5,000/s in 4 s bursts with 4 s quiet between, for the checkpoint a
//!    quiet store runs.
//! 6. On PostgreSQL (a local server from `tests/pg/start.sh` with durability on: fsync and
//!    synchronous_commit, as deployed): one replica under `wrk -t2 -c32`, then two replicas
//!    on the same database, each under its own `wrk -t1 -c16` at the same time (the sum is
//!    the pair's rate).
//!
//! 7. Growth (`growth`): the same saturation run (fully durable, one `log` rule) on an empty
//!    store and on one filled with `HOOKGATE_GROWTH_EVENTS` events (default 10,000,000), each
//!    with a finished delivery (one in 1,000 a timer still waiting), plus: a claim's latency
//!    (32 due deliveries, 100 claims, through the store API), a `/metrics` scrape's time and
//!    the store's bytes per event. Filling 10 M takes minutes and about 15 GB of disk.
//!
//! Each run reports req/s, latency percentiles, non-2xx replies, events stored, and the
//! server's peak RSS (VmHWM) and the store's peak WAL size. hookgate logs at its default level (one info line per
//! callback), as deployed. `HOOKGATE_LOAD_SECS` sets the run length (default 10);
//! `HOOKGATE_LOAD_RUNS=normal,full,log,action,webhook,go,py,steady,pg` picks runs;
//! `HOOKGATE_LOAD_BIN=path` runs another build of hookgate (an older commit's) instead.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hookgate::crypto::envelope::{AesKey, Envelope};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "QDG6eK";
const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const CORP: &str = "wx5823bf96d3bd56c7";
const THREADS: usize = 2;
const CONNECTIONS: usize = 32;
/// Requests prepared per wrk thread per second of run: above any rate this machine reaches.
const CEILING_PER_THREAD: usize = 40_000;
/// Steady open-loop rates: #5's 1,000/s and STACK.md's 2,000/s with no rule, and #19's
/// 5,000/s with one `log` rule.
const STEADY_RUNS: [(u64, &str, &str); 3] = [
    (1_000, "", "no rule"),
    (2_000, "", "no rule"),
    (5_000, LOG_RULE, "1 log rule"),
];
/// The bursts' rate: below saturation with a `log` rule, so what a checkpoint costs shows
/// rather than queueing.
const BURST_RATE: u64 = 5_000;
/// One rule that fires for every callback and logs a line (the issue's benchmark setup).
const LOG_RULE: &str = "[[rules]]\nname = \"log\"\n[[rules.actions]]\nkind = \"log\"\nmessage = \"{{ event.kind }} {{ MsgId }}\"\n";

const LUA: &str = r#"
-- Each wrk thread streams its own file of unique requests, one "path body" per line.
local threads = {}
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  -- args[2]: the first file's number (two wrk processes read different files).
  f = assert(io.open(args[1] .. "/reqs-" .. (id + tonumber(args[2] or "0")) .. ".txt"))
  wrapped = 0
end
function request()
  local line = f:read("*l")
  if not line then
    f:seek("set")
    wrapped = wrapped + 1
    line = f:read("*l")
  end
  local sp = line:find(" ", 1, true)
  return wrk.format("POST", line:sub(1, sp - 1), {["Content-Type"] = "text/xml"}, line:sub(sp + 1))
end
function done(summary, latency, requests)
  local w = 0
  for _, t in ipairs(threads) do w = w + t:get("wrapped") end
  io.write(string.format("wrapped=%d\n", w))
end
"#;

fn main() {
    // `cargo test --all-targets` runs bench binaries too, without `--bench`: minutes of load
    // on a debug build measure nothing, so only `cargo bench` runs it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("load: skipped; run it with `cargo bench --bench load`");
        return;
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("wrk is not installed: apt-get install wrk");
        std::process::exit(1);
    }
    let secs: u64 = std::env::var("HOOKGATE_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let per_thread = CEILING_PER_THREAD * secs as usize;
    for t in 0..THREADS {
        write_requests(&dir.path().join(format!("reqs-{t}.txt")), t, per_thread);
    }
    std::fs::write(dir.path().join("load.lua"), LUA).unwrap();
    // The files are about 1.6 GB: written back now, not during the first run's fsyncs (a
    // 1,000/s steady run right after once saw 1.7 s stalls from that writeback).
    Command::new("sync").status().unwrap();
    eprintln!(
        "prepared {} unique signed callbacks in {:.1?}",
        per_thread * THREADS,
        started.elapsed()
    );

    let mut table = String::new();
    let runs = [
        ("hookgate, synchronous=normal", "normal"),
        ("hookgate, synchronous=full", "full"),
        ("hookgate, full, 1 log rule", "log"),
        ("hookgate, full, 1 http action", "action"),
        ("hookgate, full, webhook (hmac)", "webhook"),
        ("Go stdlib receiver, no store", "go"),
        ("Python wechatpy + gunicorn", "py"),
    ];
    let sink = Sink::start();
    // HOOKGATE_LOAD_RUNS=normal,full,action,go,steady picks runs (default all).
    let only = std::env::var("HOOKGATE_LOAD_RUNS").ok();
    let wanted = |run: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|r| r == run))
    };
    // The same ~1 KiB XML, posted to a `webhook` receiver with an HMAC in the query.
    let webhook_dir = dir.path().join("webhook");
    if wanted("webhook") {
        std::fs::create_dir_all(&webhook_dir).unwrap();
        std::fs::write(webhook_dir.join("load.lua"), LUA).unwrap();
        for t in 0..THREADS {
            write_webhook_requests(&webhook_dir.join(format!("reqs-{t}.txt")), t, per_thread);
        }
    }
    for (name, which) in runs {
        if !wanted(which) {
            continue;
        }
        let server = match which {
            "go" => match Server::start_go(dir.path()) {
                Some(s) => s,
                None => continue,
            },
            "action" => Server::start(dir.path(), "full", &sink.rule()),
            "log" => Server::start(dir.path(), "full", LOG_RULE),
            "py" => match Server::start_python() {
                Some(s) => s,
                None => continue,
            },
            "webhook" => Server::start(dir.path(), "full", ""),
            sync => Server::start(dir.path(), sync, ""),
        };
        let began = Instant::now();
        let requests = if which == "webhook" {
            webhook_dir.as_path()
        } else {
            dir.path()
        };
        let out = wrk(requests, server.addr, THREADS, CONNECTIONS, 0, secs)
            .wait_with_output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let delivered = (which == "action").then(|| server.wait_for_deliveries(began));
        let wal = server.wal_peak_mib();
        let (rss, stored) = server.finish();
        let field = |prefix: &str| wrk_field(&text, prefix);
        writeln!(
            table,
            "wrk -t{THREADS} -c{CONNECTIONS} -d{secs}s, {name:<29}: {:>9} req/s  p50 {:>8}  p99 {:>8}  non-2xx {}  stored {}  peak RSS {:.1} MiB  peak WAL {wal:.1} MiB  (request files wrapped: {})",
            field("Requests/sec:"),
            field("50%"),
            field("99%"),
            field("Non-2xx or 3xx responses:"),
            stored.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            rss as f64 / 1024.0,
            field("wrapped="),
        )
        .unwrap();
        if let Some((done, elapsed)) = delivered {
            writeln!(
                table,
                "    the http action: {done} deliveries done {:.1} s after the load began: {:.0} deliveries/s end to end (sink got {})",
                elapsed.as_secs_f64(),
                done as f64 / elapsed.as_secs_f64(),
                sink.count(),
            )
            .unwrap();
        }
        if !out.status.success() {
            eprintln!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
        }
    }

    if wanted("pg") {
        postgres(dir.path(), secs, &mut table);
    }
    if only
        .as_deref()
        .is_some_and(|o| o.split(',').any(|r| r == "growth"))
    {
        growth(dir.path(), secs, &mut table);
    }
    let steady_secs: u64 = std::env::var("HOOKGATE_STEADY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    if only
        .as_deref()
        .is_some_and(|o| o.split(',').any(|r| r == "bursts"))
    {
        bursts(dir.path(), steady_secs, &mut table);
    }
    if !wanted("steady") {
        print!("{table}");
        return;
    }
    for (rate, rules, what) in STEADY_RUNS {
        let server = Server::start(dir.path(), "full", rules);
        let steady = steady(server.addr, rate, Duration::from_secs(steady_secs), None);
        let wal = server.wal_peak_mib();
        let (rss, stored) = server.finish();
        writeln!(
            table,
            "steady {rate}/s over {CONNECTIONS} connections for {steady_secs}s, synchronous=full, {what}: sent {}  p50 {:.2?}  p99 {:.2?}  p99.9 {:.2?}  max {:.2?}  non-2xx {}  stored {}  peak RSS {:.1} MiB  peak WAL {wal:.1} MiB",
            steady.sent,
            steady.percentile(50.0),
            steady.percentile(99.0),
            steady.percentile(99.9),
            steady.percentile(100.0),
            steady.non_2xx,
            stored.unwrap_or(0),
            rss as f64 / 1024.0,
        )
        .unwrap();
    }
    print!("{table}");
}

/// Bursts (`bursts`, for the idle checkpoint): [`BURST_RATE`] with one `log` rule, 4 s on
/// and 4 s quiet, for `secs`. Reports the latencies, those of each burst's first 200 ms (when a
/// checkpoint of the quiet spell could delay the writer), the peak WAL, and the WAL's size
/// after the last quiet spell.
fn bursts(dir: &Path, secs: u64, table: &mut String) {
    let (on, off) = (Duration::from_secs(4), Duration::from_secs(4));
    let server = Server::start(dir, "full", LOG_RULE);
    let run = steady(
        server.addr,
        BURST_RATE,
        Duration::from_secs(secs),
        Some((on, off)),
    );
    std::thread::sleep(off);
    let wal = server.db.as_ref().map_or(0, |db| {
        std::fs::metadata(format!("{}-wal", db.display())).map_or(0, |m| m.len())
    });
    let peak = server.wal_peak_mib();
    let (rss, stored) = server.finish();
    writeln!(
        table,
        "bursts of {BURST_RATE}/s for {on:?}, quiet {off:?}, {secs}s, 1 log rule: sent {}  p50 {:.2?}  p99 {:.2?}  p99.9 {:.2?}  max {:.2?}  first 200 ms of a burst: p99 {:.2?} max {:.2?}  non-2xx {}  stored {}  peak RSS {:.1} MiB  peak WAL {peak:.1} MiB  WAL when quiet {:.2} MiB",
        run.sent,
        run.percentile(50.0),
        run.percentile(99.0),
        run.percentile(99.9),
        run.percentile(100.0),
        percentile(&run.after_idle, 99.0),
        percentile(&run.after_idle, 100.0),
        run.non_2xx,
        stored.unwrap_or(0),
        rss as f64 / 1024.0,
        wal as f64 / (1024.0 * 1024.0),
    )
    .unwrap();
}

/// wrk with `threads` threads over `connections`, reading request files from number `first`.
fn wrk(
    dir: &Path,
    addr: SocketAddr,
    threads: usize,
    connections: usize,
    first: usize,
    secs: u64,
) -> Child {
    Command::new("wrk")
        .args(["-t", &threads.to_string(), "-c", &connections.to_string()])
        .args(["-d", &format!("{secs}s"), "--latency", "-s"])
        .arg(dir.join("load.lua"))
        .arg(format!("http://{addr}/"))
        .arg("--")
        .arg(dir)
        .arg(first.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("wrk")
}

/// A number after `prefix` on a line of wrk's report.
fn wrk_field(text: &str, prefix: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| "0".into())
}

/// Run 6: one and two replicas on a durable local PostgreSQL.
fn postgres(dir: &Path, secs: u64, table: &mut String) {
    let started = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pg/start.sh"))
        .env("HOOKGATE_PG_PORT", "55439")
        .env("HOOKGATE_PG_DIR", "/tmp/hookgate-pg-bench")
        .env("HOOKGATE_PG_DURABLE", "1")
        .output()
        .expect("tests/pg/start.sh");
    if !started.status.success() {
        eprintln!("no PostgreSQL (tests/pg/start.sh failed): no PostgreSQL runs");
        return;
    }
    let server = String::from_utf8_lossy(&started.stdout).trim().to_owned();
    let psql = |sql: &str| -> String {
        let out = Command::new("psql")
            .args([server.as_str(), "-q", "-t", "-A", "-c", sql])
            .output()
            .expect("psql");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    for replicas in [1usize, 2] {
        let schema = format!("load_{replicas}_{}", unix_secs());
        psql(&format!("CREATE SCHEMA {schema}"));
        let url = format!("{server}?options=-c%20search_path%3D{schema}");
        let servers: Vec<Server> = (0..replicas)
            .map(|_| Server::start_on(dir, &format!("url = {url:?}"), ""))
            .collect();
        let per = CONNECTIONS / replicas;
        let threads = THREADS / replicas;
        let runs: Vec<Child> = servers
            .iter()
            .enumerate()
            .map(|(i, s)| wrk(dir, s.addr, threads, per, i * threads, secs))
            .collect();
        let reports: Vec<String> = runs
            .into_iter()
            .map(|c| String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).into_owned())
            .collect();
        let rate: f64 = reports
            .iter()
            .map(|r| wrk_field(r, "Requests/sec:").parse::<f64>().unwrap_or(0.0))
            .sum();
        let rss: Vec<String> = servers
            .into_iter()
            .map(|s| format!("{:.1}", s.finish().0 as f64 / 1024.0))
            .collect();
        writeln!(
            table,
            "PostgreSQL (durable), {replicas} replica{}, wrk -c{CONNECTIONS} in all: {rate:>9.0} req/s  p50 {:>8}  p99 {:>8}  non-2xx {}  stored {}  peak RSS {} MiB",
            if replicas == 1 { "" } else { "s" },
            reports.iter().map(|r| wrk_field(r, "50%")).collect::<Vec<_>>().join("/"),
            reports.iter().map(|r| wrk_field(r, "99%")).collect::<Vec<_>>().join("/"),
            reports
                .iter()
                .map(|r| wrk_field(r, "Non-2xx or 3xx responses:"))
                .collect::<Vec<_>>()
                .join("/"),
            psql(&format!("SELECT count(*) FROM {schema}.events")),
            rss.join("/"),
        )
        .unwrap();
        psql(&format!("DROP SCHEMA {schema} CASCADE"));
    }
}

fn envelope() -> Envelope {
    Envelope::new(
        TOKEN.into(),
        vec![AesKey::from_encoding_aes_key(KEY).unwrap()],
        CORP.into(),
    )
}

fn rand_suffix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn unix_secs() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string()
}

/// The growth run: the same load on an empty store and on a filled one (module doc, 7).
fn growth(dir: &Path, secs: u64, table: &mut String) {
    let n: i64 = std::env::var("HOOKGATE_GROWTH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    for count in [0, n] {
        let db = dir.join(format!("growth-{count}.db"));
        let started = Instant::now();
        fill(&db, count);
        let filled = started.elapsed();
        let bytes = std::fs::metadata(&db).map_or(0, |m| m.len());
        let (claim_p50, claim_p99) = claim_latency(&db);
        let store = format!(
            "path = {:?}\nsynchronous = \"full\"",
            db.display().to_string()
        );
        let server = Server {
            db: Some(db.clone()),
            ..Server::start_on(dir, &store, LOG_RULE)
        };
        let out = wrk(dir, server.addr, THREADS, CONNECTIONS, 0, secs)
            .wait_with_output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut scrapes: Vec<Duration> = (0..20).map(|_| scrape(server.addr)).collect();
        scrapes.sort();
        let (rss, stored) = server.finish();
        writeln!(
            table,
            "growth, {count} events stored before (filled in {:.0} s, {} bytes per event): wrk -t{THREADS} -c{CONNECTIONS} -d{secs}s, full, 1 log rule: {:>9} req/s  p99 {:>8}  claim of 32 p50 {:.2?} p99 {:.2?}  /metrics p50 {:.2?} max {:.2?}  peak RSS {:.1} MiB  stored {}",
            filled.as_secs_f64(),
            if count > 0 { bytes / count as u64 } else { 0 },
            wrk_field(&text, "Requests/sec:"),
            wrk_field(&text, "99%"),
            claim_p50,
            claim_p99,
            scrapes[scrapes.len() / 2],
            scrapes[scrapes.len() - 1],
            rss as f64 / 1024.0,
            stored.unwrap_or(0),
        )
        .unwrap();
    }
}

/// A new store at `db` holding `count` stored callbacks shaped like the load's (the same
/// ~1 KiB plaintext), each with a finished `log` delivery and its history; one in 1,000
/// delivery a timer waiting a week. Built by SQLite itself, a million rows a transaction.
fn fill(db: &Path, count: i64) {
    let config = hookgate::config::StoreConfig::sqlite(db.to_owned());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    drop(rt.block_on(hookgate::store::Store::open(&config)).unwrap());
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    // The store's threads let go of the file just after it is dropped; leaving WAL mode
    // needs the file to itself and does not wait.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;") {
        assert!(Instant::now() < deadline, "{e}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let now = hookgate::clock::now_ms();
    let content = "消息内容 hookgate load ".repeat(36);
    let raw = format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName>\
         <CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>\
         <MsgId>%d</MsgId><AgentID>1000002</AgentID></xml>"
    );
    const CHUNK: i64 = 1_000_000;
    let mut from = 1;
    while from <= count {
        let to = (from + CHUNK - 1).min(count);
        conn.execute_batch("BEGIN").unwrap();
        conn.execute(
            "INSERT INTO events (id, receiver, vendor, kind, dedupe_key, received_at_ms, raw)
             WITH RECURSIVE c(x) AS (SELECT ?1 UNION ALL SELECT x + 1 FROM c WHERE x < ?2)
             SELECT x, 'hr', 'wecom', 'text', 'MsgId=' || (9000000000 + x), ?3 - (?2 - x), printf(?4, 9000000000 + x) FROM c",
            rusqlite::params![from, to, now - 60_000, raw],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO deliveries (event_id, rule, action, kind, status, attempts, next_attempt_at_ms,
                                     deadline_ms, created_at_ms, updated_at_ms, history)
             SELECT id, 'log', 0, 'log', CASE WHEN id % 1000 = 0 THEN 'pending' ELSE 'done' END, 1,
                    CASE WHEN id % 1000 = 0 THEN ?3 + 604800000 ELSE received_at_ms END,
                    ?3 + 86400000 * 8, received_at_ms, received_at_ms,
                    '[{\"at\":' || received_at_ms || ',\"status\":\"done\",\"error\":null}]'
             FROM events WHERE id BETWEEN ?1 AND ?2",
            rusqlite::params![from, to, now],
        )
        .unwrap();
        conn.execute_batch("COMMIT").unwrap();
        from = to + 1;
    }
    conn.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
}

/// 100 claims of 32 due deliveries (made due for it) from the store at `db`, through the
/// store API as the worker claims: p50 and p99.
fn claim_latency(db: &Path) -> (Duration, Duration) {
    let now = hookgate::clock::now_ms();
    {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        conn.execute(
            "INSERT INTO events (receiver, vendor, kind, dedupe_key, received_at_ms, raw)
             VALUES ('hr', 'wecom', 'text', 'claim-bench', ?1, '<xml><MsgType>text</MsgType></xml>')",
            [now],
        )
        .unwrap();
        let event = conn.last_insert_rowid();
        conn.execute(
            "INSERT INTO deliveries (event_id, rule, action, kind, status, next_attempt_at_ms,
                                     deadline_ms, created_at_ms, updated_at_ms)
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3200)
             SELECT ?1, 'claim', 0, 'log', 'pending', ?2, ?2 + 86400000, ?2, ?2 FROM c",
            [event, now],
        )
        .unwrap();
    }
    let config = hookgate::config::StoreConfig::sqlite(db.to_owned());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = hookgate::store::Store::open(&config).await.unwrap();
        let mut times = Vec::new();
        for _ in 0..100 {
            let t = Instant::now();
            let claimed = store.claim(now, 32).await.unwrap();
            times.push(t.elapsed());
            assert_eq!(claimed.len(), 32);
            let done = claimed
                .iter()
                .map(|d| (d.id, hookgate::store::Outcome::Done { result: None }))
                .collect::<Vec<_>>();
            store.finish_many(done, now).await.unwrap();
        }
        times.sort();
        (times[49], times[98])
    })
}

/// One `GET /metrics`: how long until the whole answer is read.
fn scrape(addr: SocketAddr) -> Duration {
    use std::io::Read;
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: load\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "/metrics answered {:?}",
        String::from_utf8_lossy(&out[..out.len().min(80)])
    );
    t.elapsed()
}

/// A signed ~1 KiB WeCom text callback with its own MsgId: (path and query, body).
fn callback(env: &Envelope, msg_id: u64, ts: &str) -> (String, String) {
    let content = "消息内容 hookgate load ".repeat(36);
    let xml = format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName>\
         <CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>\
         <MsgId>{msg_id}</MsgId><AgentID>1000002</AgentID></xml>"
    );
    let nonce = format!("n{msg_id}");
    let sealed = env.seal(0, xml.as_bytes(), ts, &nonce);
    (
        format!(
            "/wecom?msg_signature={}&timestamp={ts}&nonce={nonce}",
            sealed.msg_signature
        ),
        format!(
            "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt><AgentID><![CDATA[1000002]]></AgentID></xml>",
            sealed.encrypt
        ),
    )
}

fn write_requests(path: &Path, thread: usize, n: usize) {
    let env = envelope();
    let ts = unix_secs();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        let (target, body) = callback(&env, (thread as u64 + 1) * 1_000_000_000 + i as u64, &ts);
        writeln!(out, "{target} {body}").unwrap();
    }
    out.flush().unwrap();
}

/// The plaintext of [`callback`], posted to the `webhook` receiver with its HMAC-SHA256 in
/// the query: (path and query, body).
fn webhook_callback(msg_id: u64, ts: &str) -> (String, String) {
    let content = "消息内容 hookgate load ".repeat(36);
    let xml = format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[zhangsan]]></FromUserName>\
         <CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>\
         <MsgId>{msg_id}</MsgId><AgentID>1000002</AgentID></xml>"
    );
    let mac = hookgate::crypto::webhook::hmac(
        hookgate::crypto::webhook::Algorithm::Sha256,
        TOKEN.as_bytes(),
        &[xml.as_bytes()],
    );
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    (format!("/webhook?sig={hex}"), xml)
}

fn write_webhook_requests(path: &Path, thread: usize, n: usize) {
    let ts = unix_secs();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        let (target, body) = webhook_callback((thread as u64 + 1) * 1_000_000_000 + i as u64, &ts);
        writeln!(out, "{target} {body}").unwrap();
    }
    out.flush().unwrap();
}

struct Server {
    child: Child,
    addr: SocketAddr,
    db: Option<PathBuf>,
    /// Largest `-wal` file seen so far, in bytes (sampled every 20 ms while the server runs).
    wal_peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Server {
    /// `hookgate serve` on a fresh store, logging as it does by default (info); `extra` is
    /// more TOML (rules).
    fn start(dir: &Path, synchronous: &str, extra: &str) -> Server {
        let db = dir.join(format!("load-{synchronous}-{}.db", unix_secs()));
        let store = format!(
            "path = {:?}\nsynchronous = \"{synchronous}\"",
            db.display().to_string()
        );
        let server = Server {
            db: Some(db.clone()),
            ..Self::start_on(dir, &store, extra)
        };
        let peak = server.wal_peak.clone();
        let wal = PathBuf::from(format!("{}-wal", db.display()));
        std::thread::spawn(move || {
            // Ends when the run's files are removed (`finish`).
            let mut seen = false;
            loop {
                match std::fs::metadata(&wal) {
                    Ok(m) => {
                        seen = true;
                        peak.fetch_max(m.len(), std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(_) if seen => return,
                    Err(_) => {}
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        server
    }

    /// `hookgate serve` with `store` as its `[store]` keys.
    fn start_on(dir: &Path, store: &str, extra: &str) -> Server {
        let config = dir.join(format!("load-{}.toml", rand_suffix()));
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n[store]\n{store}\n\
                 [[receivers]]\nname = \"hr\"\nvendor = \"wecom\"\npath = \"/wecom\"\ntoken = \"{TOKEN}\"\n\
                 encoding_aes_key = \"{KEY}\"\nreceive_id = \"{CORP}\"\n\
                 [[receivers]]\nname = \"hook\"\nvendor = \"webhook\"\npath = \"/webhook\"\nauth = \"hmac\"\n\
                 auth_query = \"sig\"\nsecret = \"{TOKEN}\"\n{extra}"
            ),
        )
        .unwrap();
        // HOOKGATE_LOAD_BIN: another build of hookgate (an older commit) to compare with.
        let bin = std::env::var_os("HOOKGATE_LOAD_BIN").map_or_else(
            || env!("CARGO_BIN_EXE_hookgate").into(),
            std::path::PathBuf::from,
        );
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--config"])
            .arg(&config)
            .env_remove("RUST_LOG");
        Self::spawn(cmd, None)
    }

    /// The Go stdlib receiver from `benches/go-receiver`, when `go` is installed.
    fn start_go(dir: &Path) -> Option<Server> {
        let bin = dir.join("go-receiver");
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/go-receiver/main.go");
        let built = Command::new("go")
            .args(["build", "-o"])
            .arg(&bin)
            .arg(src)
            .status();
        if !matches!(built, Ok(s) if s.success()) {
            eprintln!("go is not installed (apt-get install golang-go): no Go reference run");
            return None;
        }
        let mut cmd = Command::new(bin);
        cmd.args(["-listen", "127.0.0.1:0", "-token", TOKEN, "-key", KEY])
            .args(["-receive-id", CORP]);
        Some(Self::spawn(cmd, None))
    }

    /// The hand-written Python receiver (`benches/py-receiver`) under gunicorn, one worker
    /// per core, from the project's Python tools (`tests/py/setup.sh`).
    fn start_python() -> Option<Server> {
        let setup = Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/setup.sh"))
            .output()
            .ok()?;
        if !setup.status.success() {
            eprintln!("tests/py/setup.sh failed: no Python reference run");
            return None;
        }
        let python = String::from_utf8_lossy(&setup.stdout).trim().to_owned();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut cmd = Command::new(python);
        cmd.args([
            "-m",
            "gunicorn",
            "-k",
            "gthread",
            "--threads",
            "8",
            "--backlog",
            "1024",
        ])
        .args(["-w", &cores.to_string(), "-b", &format!("127.0.0.1:{port}")])
        .args([
            "--chdir",
            concat!(env!("CARGO_MANIFEST_DIR"), "/benches/py-receiver"),
        ])
        .arg("app:app")
        .env("HG_TOKEN", TOKEN)
        .env("HG_KEY", KEY)
        .env("HG_CORP", CORP);
        Some(Self::spawn_with(cmd, None, |line| {
            line.split("Listening at: http://")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|a| a.parse().ok())
        }))
    }

    fn spawn(cmd: Command, db: Option<PathBuf>) -> Server {
        Self::spawn_with(cmd, db, |line| {
            line.split("addr=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|a| a.parse().ok())
        })
    }

    fn spawn_with(
        mut cmd: Command,
        db: Option<PathBuf>,
        listening: fn(&str) -> Option<SocketAddr>,
    ) -> Server {
        let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("the server exited before listening")
                .unwrap();
            if let Some(addr) = listening(&line) {
                break addr;
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Server {
            child,
            addr,
            db,
            wal_peak: Default::default(),
        }
    }

    /// Waits (two minutes at most) until every stored event's delivery is done; how many,
    /// and how long since `began`.
    fn wait_for_deliveries(&self, began: Instant) -> (i64, Duration) {
        let db = self.db.as_ref().unwrap();
        let conn = rusqlite::Connection::open(db).unwrap();
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let done = count("SELECT count(*) FROM deliveries WHERE status = 'done'");
            if done >= count("SELECT count(*) FROM events") || Instant::now() > deadline {
                return (done, began.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wal_peak_mib(&self) -> f64 {
        self.wal_peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
    }

    /// Peak RSS in KiB, then SIGTERM; returns it with the number of events stored.
    fn finish(mut self) -> (u64, Option<i64>) {
        let rss = tree_hwm_kib(self.child.id());
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap();
        let stored = self.db.as_ref().map(|db| {
            let conn = rusqlite::Connection::open(db).unwrap();
            let n = conn
                .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
                .unwrap();
            drop(conn);
            // Gone before the next run, so its writeback does not slow that run's fsyncs.
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
            }
            n
        });
        (rss, stored)
    }
}

/// Peak RSS (VmHWM) of a process and all its descendants (gunicorn's workers), in KiB.
fn tree_hwm_kib(pid: u32) -> u64 {
    let hwm = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    hwm + children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .map(tree_hwm_kib)
        .sum::<u64>()
}

/// A local HTTP sink for the `http` action: answers 200 at once, counts requests.
struct Sink {
    addr: SocketAddr,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Sink {
    fn start() -> Sink {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c = count.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                while let Ok((stream, _)) = listener.accept().await {
                    let c = c.clone();
                    tokio::spawn(async move {
                        let mut stream = tokio::io::BufReader::new(stream);
                        // Keep-alive HTTP/1.1: headers, Content-Length body, 200.
                        loop {
                            let mut len = 0usize;
                            let mut line = String::new();
                            loop {
                                line.clear();
                                if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if line == "\r\n" {
                                    break;
                                }
                                if let Some((k, v)) = line.split_once(':')
                                    && k.eq_ignore_ascii_case("content-length")
                                {
                                    len = v.trim().parse().unwrap_or(0);
                                }
                            }
                            let mut body = vec![0; len];
                            if stream.read_exact(&mut body).await.is_err() {
                                return;
                            }
                            c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                            if stream.get_mut().write_all(ok).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            });
        });
        Sink { addr, count }
    }

    fn rule(&self) -> String {
        format!(
            "[[rules]]\nname = \"forward\"\n[[rules.actions]]\nkind = \"http\"\nurl = \"http://{}/in\"\n",
            self.addr
        )
    }

    fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

struct Steady {
    sent: usize,
    non_2xx: usize,
    latencies: Vec<Duration>,
    /// Bursts: the requests of each burst's first 200 ms after a quiet spell.
    after_idle: Vec<Duration>,
}

impl Steady {
    fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((p / 100.0) * (sorted.len() - 1) as f64).round() as usize]
}

/// Open loop: connection `c` sends its `n`th request at `start + (n * CONNECTIONS + c) / rate`,
/// prepared beforehand; latency runs from that scheduled instant (or, when the connection was
/// free and only the client's timer was late, from the actual send) to the end of the reply.
fn steady(
    addr: SocketAddr,
    rate: u64,
    run: Duration,
    duty: Option<(Duration, Duration)>,
) -> Steady {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let start = tokio::time::Instant::now() + Duration::from_millis(100);
        let period = Duration::from_nanos(1_000_000_000 * CONNECTIONS as u64 / rate);
        let mut tasks = Vec::new();
        for c in 0..CONNECTIONS {
            tasks.push(tokio::spawn(async move {
                let env = envelope();
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let mut stream = tokio::io::BufReader::new(stream);
                let mut latencies = Vec::new();
                let mut after_idle = Vec::new();
                let mut non_2xx = 0;
                let first = start + period * c as u32 / CONNECTIONS as u32;
                let mut free_at = start;
                for n in 0.. {
                    let at = first + period * n;
                    if at >= start + run {
                        break;
                    }
                    // Bursts: nothing is sent in the quiet part of each cycle.
                    let into_burst = duty.map(|(on, off)| {
                        let cycle = (on + off).as_nanos();
                        Duration::from_nanos(((at - start).as_nanos() % cycle) as u64)
                    });
                    if let (Some(into), Some((on, _))) = (into_burst, duty)
                        && into >= on
                    {
                        continue;
                    }
                    let first_of_burst = into_burst
                        .is_some_and(|i| i < Duration::from_millis(200) && at - start > i);
                    let id = 3_000_000_000 + (n as u64) * CONNECTIONS as u64 + c as u64;
                    let (target, body) = callback(&env, id, &unix_secs());
                    let req = format!(
                        "POST {target} HTTP/1.1\r\nHost: load\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    // Late because the previous reply was late: that wait counts (no
                    // coordinated omission). Late because the timer (1 ms wheel) woke us
                    // after `at` though the connection was free: the client's delay, not
                    // the server's; count from the wake-up.
                    let from = if free_at > at {
                        at
                    } else {
                        tokio::time::sleep_until(at).await;
                        tokio::time::Instant::now()
                    };
                    stream.get_mut().write_all(req.as_bytes()).await.unwrap();
                    let ok = read_reply(&mut stream).await;
                    free_at = tokio::time::Instant::now();
                    latencies.push(free_at - from);
                    if first_of_burst {
                        after_idle.push(free_at - from);
                    }
                    non_2xx += usize::from(!ok);
                }
                (latencies, after_idle, non_2xx)
            }));
        }
        let mut all = Steady {
            sent: 0,
            non_2xx: 0,
            latencies: Vec::new(),
            after_idle: Vec::new(),
        };
        for t in tasks {
            let (l, a, n) = t.await.unwrap();
            all.sent += l.len();
            all.non_2xx += n;
            all.latencies.extend(l);
            all.after_idle.extend(a);
        }
        all.latencies.sort();
        all.after_idle.sort();
        all
    })
}

/// Reads one HTTP/1.1 reply with a Content-Length body; true for a 2xx status.
async fn read_reply(stream: &mut tokio::io::BufReader<tokio::net::TcpStream>) -> bool {
    let mut line = String::new();
    stream.read_line(&mut line).await.unwrap();
    let ok = line.split(' ').nth(1).is_some_and(|s| s.starts_with('2'));
    let mut len = 0;
    loop {
        line.clear();
        stream.read_line(&mut line).await.unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await.unwrap();
    ok
}
