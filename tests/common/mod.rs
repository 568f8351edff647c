//! Test harness: the real server on 127.0.0.1:0 with a temporary store, a raw HTTP/1.1
//! client (so tests control every byte), and vendor-side signing of callbacks.

#![allow(dead_code)]

pub mod apps;
pub mod mysql;
pub mod pg;
pub mod proxy;
pub mod sink;
pub mod smtp;
pub mod streams;
pub mod vendors;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hookgate::app::{App, Listeners};
use hookgate::config::{self, Config};
use hookgate::store::{DeliveryFilter, DeliveryRow, ListFilter, Store, StoredEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct TestServer {
    pub addr: SocketAddr,
    pub config: Config,
    pub store: Store,
    pub db: PathBuf,
    /// The PostgreSQL schema when the tests run on that backend.
    pub schema: Option<String>,
    reader: Reader,
    _dir: Option<tempfile::TempDir>,
    app: Option<App>,
}

/// Starts the server on `receivers` (TOML `[[receivers]]` tables) plus optional `[server]` keys.
pub async fn start(server_keys: &str, receivers: &str) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookgate.db");
    let src = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{server_keys}\n[store]\npath = {}\n\n{receivers}",
        toml::Value::String(db.display().to_string())
    );
    let config = config::parse(&src, &|_| None).unwrap_or_else(|e| panic!("{e:?}"));
    serve(config, db, Some(dir)).await
}

/// Starts the server on a whole config file's text, `${VAR}` from `vars`; the store goes in
/// a temporary directory through `${HOOKGATE_DB}`.
pub async fn start_file(src: &str, vars: &[(&str, &str)]) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookgate.db");
    start_file_on(src, vars, db, Some(dir)).await
}

/// [`start_file`] on a given store file (to restart on the same store).
pub async fn start_file_at(src: &str, vars: &[(&str, &str)], db: &std::path::Path) -> TestServer {
    start_file_on(src, vars, db.to_owned(), None).await
}

async fn start_file_on(
    src: &str,
    vars: &[(&str, &str)],
    db: PathBuf,
    dir: Option<tempfile::TempDir>,
) -> TestServer {
    let db_text = db.display().to_string();
    let lookup = |name: &str| match name {
        "HOOKGATE_DB" => Some(db_text.clone()),
        "HOOKGATE_LISTEN" => Some("127.0.0.1:0".to_owned()),
        _ => vars
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned()),
    };
    let config = config::parse(src, &lookup).unwrap_or_else(|e| panic!("{e:#?}"));
    serve(config, db, dir).await
}

/// With `HOOKGATE_TEST_STORE=postgres` the in-process server keeps its store in PostgreSQL:
/// a schema named after the SQLite path it would have used (so a restart on the same path
/// finds the same data). The same tests then run on the other backend.
fn test_store(mut config: Config, db: &std::path::Path) -> (Config, Option<String>) {
    let mut on = None;
    // A test that names its PostgreSQL store (replicas sharing one) keeps it.
    if std::env::var("HOOKGATE_TEST_STORE").as_deref() == Ok("postgres")
        && config.store.url.is_none()
    {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        db.hash(&mut h);
        let schema = format!("p_{:016x}", h.finish());
        pg::psql(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"));
        config.store = hookgate::config::StoreConfig {
            pool_size: 8,
            lease: Duration::from_secs(5),
            ..hookgate::config::StoreConfig::postgres(pg::schema_url(&schema))
        };
        on = Some(schema);
    }
    (config, on)
}

/// Reads the store for the synchronous helpers ([`TestServer::deliveries`], …) on a thread
/// of its own with its own handle, so they can block inside any test runtime.
struct Reader {
    jobs: std::sync::mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce(&tokio::runtime::Runtime, &Store) + Send>;

impl Reader {
    fn new(config: hookgate::config::StoreConfig) -> Self {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let store = rt.block_on(Store::open(&config)).unwrap();
            for job in rx {
                job(&rt, &store);
            }
        });
        Self { jobs }
    }

    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&tokio::runtime::Runtime, &Store) -> T + Send + 'static,
    ) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        self.jobs
            .send(Box::new(move |rt, store| {
                let _ = tx.send(f(rt, store));
            }))
            .unwrap();
        rx.recv().unwrap()
    }
}

async fn serve(config: Config, db: PathBuf, dir: Option<tempfile::TempDir>) -> TestServer {
    // RUST_LOG=debug shows the gateway's log in a failing test's output.
    if let Ok(filter) = std::env::var("RUST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    let (config, schema) = test_store(config, &db);
    let store = Store::open(&config.store).await.unwrap();
    // The same start as `hookgate serve`: resume, load, listeners, worker, streams.
    let listeners = Listeners::bind(&config.server).await.unwrap();
    let app = App::start(config.clone(), store.clone(), listeners)
        .await
        .unwrap();
    let addr = app.addr();
    TestServer {
        addr,
        reader: Reader::new(config.store.clone()),
        config,
        store,
        db,
        schema,
        _dir: dir,
        app: Some(app),
    }
}

impl TestServer {
    /// Where the admin listener serves (`[server] admin_listen`), if it does.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.app.as_ref().and_then(App::admin_addr)
    }

    pub async fn stop(mut self) {
        self.app.take().unwrap().shutdown().await;
    }

    /// Makes every event insert fail (as a full disk or a broken database would), or not.
    pub fn fail_inserts(&self, fail: bool) {
        match (&self.schema, fail) {
            (None, true) => rusqlite::Connection::open(&self.db)
                .unwrap()
                .execute_batch(
                    "CREATE TRIGGER fail BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
                )
                .unwrap(),
            (None, false) => rusqlite::Connection::open(&self.db)
                .unwrap()
                .execute_batch("DROP TRIGGER fail;")
                .unwrap(),
            (Some(s), true) => {
                pg::psql(&format!(
                    "CREATE FUNCTION {s}.fail() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql;
                     CREATE TRIGGER fail BEFORE INSERT ON {s}.events FOR EACH ROW EXECUTE FUNCTION {s}.fail();"
                ));
            }
            (Some(s), false) => {
                pg::psql(&format!("DROP TRIGGER fail ON {s}.events"));
            }
        }
    }

    pub fn events(&self) -> Vec<StoredEvent> {
        self.reader.run(|rt, store| {
            rt.block_on(store.list(&ListFilter {
                limit: 1000,
                ..Default::default()
            }))
            .unwrap()
        })
    }

    pub fn deliveries(&self) -> Vec<DeliveryRow> {
        self.reader.run(|rt, store| {
            rt.block_on(store.deliveries(&DeliveryFilter {
                limit: 1000,
                ..Default::default()
            }))
            .unwrap()
        })
    }

    pub async fn get(&self, path_and_query: &str) -> Response {
        self.send("GET", path_and_query, &[], b"").await
    }

    pub async fn post(
        &self,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.send("POST", path_and_query, headers, body).await
    }

    pub async fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut req = format!(
            "{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        raw(self.addr, &bytes).await
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// Sends raw bytes and reads the response until the server closes the connection.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may answer (413) and close before reading everything we send.
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    parse_response(&out)
}

pub fn parse_response(out: &[u8]) -> Response {
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response: {:?}", String::from_utf8_lossy(out)));
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Response {
        status,
        head,
        body: out[split + 4..].to_vec(),
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The example config's demo values (`--env-file`); the tests that run the example use them.
pub const DEMO_ENV: &str = "config/demo.env";

/// The real `hookgate serve` as a child process; killed when dropped.
pub struct Served {
    pub child: std::process::Child,
    pub addr: SocketAddr,
}

impl Served {
    /// Runs `hookgate serve --config <config>` with extra environment, and waits (30 s at
    /// most, never hangs) for the log line that names the bound address.
    pub fn start(config: &std::path::Path, env: &[(&str, &std::ffi::OsStr)]) -> Served {
        Self::start_with(config, env, |_| {})
    }

    /// The example config (`config/hookgate.example.toml`) with its demo secrets, on
    /// 127.0.0.1:0 and the store at `db`.
    pub fn example(db: &std::path::Path) -> Served {
        Self::start(
            std::path::Path::new("config/hookgate.example.toml"),
            &[
                ("HOOKGATE_LISTEN", "127.0.0.1:0".as_ref()),
                ("HOOKGATE_DB", db.as_os_str()),
                ("HOOKGATE_ENV_FILE", DEMO_ENV.as_ref()),
            ],
        )
    }

    /// [`Served::start`], with the command adjusted before it runs.
    pub fn start_with(
        config: &std::path::Path,
        env: &[(&str, &std::ffi::OsStr)],
        adjust: impl FnOnce(&mut std::process::Command),
    ) -> Served {
        use std::io::{BufRead, BufReader};
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hookgate"));
        command
            .args(["serve", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stderr(std::process::Stdio::piped());
        adjust(&mut command);
        let mut child = command.spawn().unwrap();
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Some(rest) = line.split("addr=").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => {
                let addr = a.parse().unwrap_or_else(|e| panic!("{a:?}: {e}"));
                Served { child, addr }
            }
            Err(e) => {
                let _ = child.kill();
                panic!("the server did not report its address: {e}");
            }
        }
    }

    /// SIGTERM, then the exit status (a graceful shutdown exits 0).
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WeCom POST as WeCom sends it: signature over `<Encrypt>`; (query, body).
pub fn wecom_post(
    env: &hookgate::crypto::envelope::Envelope,
    corp: &str,
    plaintext: &str,
    ts: &str,
) -> (String, String) {
    let sealed = env.seal(0, plaintext.as_bytes(), ts, "nonce1");
    let query = format!(
        "msg_signature={}&timestamp={ts}&nonce=nonce1",
        sealed.msg_signature
    );
    let body = format!(
        "<xml><ToUserName><![CDATA[{corp}]]></ToUserName><Encrypt><![CDATA[{}]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>",
        sealed.encrypt
    );
    (query, body)
}

/// A DingTalk callback: `plaintext` sealed with `env` and posted to `path` as DingTalk does
/// (`signature`, `timestamp`, `nonce` in the query, `{"encrypt"}` body); it must be answered 200.
pub async fn dingtalk_post(
    srv: &TestServer,
    env: &hookgate::crypto::envelope::Envelope,
    path: &str,
    plaintext: &str,
) {
    let ts = now_ms().to_string();
    let sealed = env.seal(0, plaintext.as_bytes(), &ts, "nonce");
    let body = serde_json::json!({"encrypt": sealed.encrypt}).to_string();
    let target = format!(
        "{path}?signature={}&timestamp={ts}&nonce=nonce",
        sealed.msg_signature
    );
    let r = srv
        .post(
            &target,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Polls `check` every 50 ms until it holds or `secs` pass; a deadline, not a timing.
pub async fn eventually(secs: u64, what: &str, check: impl FnMut() -> bool) {
    eventually_or(secs, what, check, String::new).await;
}

/// [`eventually`], describing the state with `describe` if it never holds.
pub async fn eventually_or(
    secs: u64,
    what: &str,
    mut check: impl FnMut() -> bool,
    describe: impl Fn() -> String,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "still not true after {secs} s: {what}\n{}",
            describe()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Python interpreter with the project's test tools (`tests/py/setup.sh` installs them
/// on first use, pinned; later calls return at once). `HOOKGATE_TEST_PYTHON` overrides it.
pub fn python() -> std::path::PathBuf {
    static PYTHON: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("HOOKGATE_TEST_PYTHON") {
                return p.into();
            }
            let out = std::process::Command::new("bash")
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/setup.sh"))
                .stderr(std::process::Stdio::inherit())
                .output()
                .expect("running tests/py/setup.sh");
            assert!(out.status.success(), "tests/py/setup.sh failed");
            String::from_utf8(out.stdout).unwrap().trim().into()
        })
        .clone()
}

/// `hookgate simulate --config CONFIG --receiver R --url URL`, the config's listener being
/// `listen`: (succeeded, everything it printed).
pub fn simulate(config: &str, listen: SocketAddr, receiver: &str, url: &str) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args([
            "simulate",
            "--config",
            config,
            "--receiver",
            receiver,
            "--url",
            url,
        ])
        .env("HOOKGATE_LISTEN", listen.to_string())
        .env("HOOKGATE_ENV_FILE", DEMO_ENV)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A local HTTP/1.1 server for the fake vendors and sinks: every request, its body read
/// whole, goes to `answer`, which returns (status, content type, body).
pub fn http_server(
    listener: TcpListener,
    answer: impl Fn(hyper::http::request::Parts, bytes::Bytes) -> (u16, &'static str, String)
    + Send
    + Sync
    + 'static,
) {
    use http_body_util::BodyExt;
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let answer = answer.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let (status, content_type, text) = answer(parts, body);
                            // A redirect's body is its Location.
                            let location = (300..400).contains(&status).then(|| text.clone());
                            let mut resp = hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(text),
                            ));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            resp.headers_mut()
                                .insert("content-type", content_type.parse().unwrap());
                            if let Some(location) = location {
                                resp.headers_mut()
                                    .insert("location", location.parse().unwrap());
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
