//! `hookgate simulate` against the real binary: every vendor's URL check passes on the
//! example config, directly and through a faithful proxy; a proxy that re-encodes the query
//! (echostr's %2B becoming %252B) or rewrites the path is diagnosed in one line.

mod common;

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const EXAMPLE: &str = "config/hookgate.example.toml";

/// A one-request-per-connection HTTP proxy that rewrites the request target.
async fn proxy(upstream: SocketAddr, rewrite: fn(&str) -> String) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut client = BufReader::new(client);
                let mut line = String::new();
                client.read_line(&mut line).await.unwrap();
                let mut parts = line.trim_end().splitn(3, ' ');
                let (method, target, version) = (
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                );
                let mut head = format!("{method} {} {version}\r\n", rewrite(target));
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    client.read_line(&mut h).await.unwrap();
                    if let Some((k, v)) = h.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        len = v.trim().parse().unwrap();
                    }
                    if h.to_ascii_lowercase().starts_with("connection:") {
                        continue;
                    }
                    if h == "\r\n" {
                        head.push_str("Connection: close\r\n\r\n");
                        break;
                    }
                    head.push_str(&h);
                }
                let mut body = vec![0; len];
                client.read_exact(&mut body).await.unwrap();
                let mut up = tokio::net::TcpStream::connect(upstream).await.unwrap();
                up.write_all(head.as_bytes()).await.unwrap();
                up.write_all(&body).await.unwrap();
                let mut answer = Vec::new();
                up.read_to_end(&mut answer).await.unwrap();
                client.get_mut().write_all(&answer).await.unwrap();
            });
        }
    });
    addr
}

fn simulate(addr: SocketAddr, receiver: &str, url: &str) -> (bool, String) {
    common::simulate(EXAMPLE, addr, receiver, url)
}

// Multi-threaded: the CLI runs as a blocking child process while the proxies serve it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_vendor_passes_directly_and_through_a_faithful_proxy_and_a_mangling_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookgate.db");
    let served = common::Served::example(&db);
    let addr = served.addr;
    let faithful = proxy(addr, str::to_owned).await;
    for (receiver, path) in [
        ("hr", "/hooks/wecom/hr"),
        ("mp", "/hooks/wechat/mp"),
        ("ding", "/hooks/dingtalk/app"),
        ("lark", "/hooks/feishu/app"),
        ("bot", "/hooks/dingtalk/robot"),
    ] {
        for base in [addr, faithful] {
            let (ok, out) = simulate(addr, receiver, &format!("http://{base}{path}"));
            assert!(ok && out.contains("OK:"), "{receiver} via {base}:\n{out}");
        }
    }

    // A proxy that encodes the already-encoded query again: %2B arrives as %252B.
    let reencoding = proxy(addr, |t| match t.split_once('?') {
        Some((p, q)) => format!("{p}?{}", q.replace('%', "%25")),
        None => t.to_owned(),
    })
    .await;
    let (ok, out) = simulate(addr, "hr", &format!("http://{reencoding}/hooks/wecom/hr"));
    assert!(!ok, "{out}");
    assert!(
        out.contains("signature mismatch") && out.contains("re-encoding echostr"),
        "{out}"
    );
    assert!(out.contains("the proxy between is what breaks it"), "{out}");

    // A proxy that adds a path prefix hookgate does not know.
    let prefixing = proxy(addr, |t| format!("/gateway{t}")).await;
    let (ok, out) = simulate(
        addr,
        "ding",
        &format!("http://{prefixing}/hooks/dingtalk/app"),
    );
    assert!(!ok && out.contains("hookgate answered 404"), "{out}");

    // Nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (ok, out) = simulate(addr, "lark", &format!("http://{closed}/hooks/feishu/app"));
    assert!(!ok && out.contains("cannot reach"), "{out}");

    // URL checks store nothing; the robot probe stores nothing either.
    assert!(served.terminate().success());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

/// `simulate` with an event file stores it and says so; sent again it is a duplicate and
/// `simulate` says that nothing ran (it said a bare `OK`); `--fresh` gives it new ids and it
/// is stored again. Each sample receiver's event also freshens (DingTalk, Feishu, robot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_sent_twice_is_called_a_duplicate_and_fresh_sends_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookgate.db");
    let served = common::Served::example(&db);
    let send = |receiver: &str, file: &str, fresh: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_hookgate"));
        c.args(["simulate", "--config", EXAMPLE, "--receiver", receiver])
            .arg(format!("config/examples/events/{file}"))
            .env("HOOKGATE_LISTEN", served.addr.to_string())
            .env("HOOKGATE_ENV_FILE", common::DEMO_ENV);
        if fresh {
            c.arg("--fresh");
        }
        let out = c.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        text
    };
    let first = send("hr", "wecom-contact-create-user.xml", false);
    assert!(
        first.contains("OK:") && !first.contains("duplicate"),
        "{first}"
    );
    let again = send("hr", "wecom-contact-create-user.xml", false);
    assert!(
        again.contains("a duplicate, so nothing was stored and no rule ran"),
        "{again}"
    );
    assert!(again.contains("--fresh"), "{again}");
    let fresh = send("hr", "wecom-contact-create-user.xml", true);
    assert!(
        fresh.contains("OK:") && !fresh.contains("duplicate"),
        "{fresh}"
    );
    for (receiver, file) in [
        ("ding", "dingtalk-approval-start.json"),
        ("lark", "feishu-message.json"),
        ("bot", "dingtalk-robot-text.json"),
    ] {
        for _ in 0..2 {
            let out = send(receiver, file, true);
            assert!(
                out.contains("OK:") && !out.contains("duplicate"),
                "{receiver}: {out}"
            );
        }
    }
    assert!(served.terminate().success());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2 + 3 * 2);
}
