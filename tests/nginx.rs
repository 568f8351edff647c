//! nginx in front of hookgate with the configuration `docs/deploy.md` documents (taken from
//! the document itself), and `hookgate simulate --url` through it for every vendor.
//! Needs nginx from Debian's packages: `tests/run.sh` installs it and runs this test with
//! `--ignored`; a plain `cargo test` skips it.

mod common;

use std::process::{Child, Command, Stdio};

const EXAMPLE: &str = "config/hookgate.example.toml";

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The documented server block, pointed at `upstream` and listening on `port`: with TLS
/// when `tls` holds a certificate and key directory (`leaf.pem`, `key.pem`), else plain;
/// `mistake` swaps in the classic error of a `proxy_pass` with a URI part.
fn documented_config(
    upstream: std::net::SocketAddr,
    port: u16,
    prefix: &std::path::Path,
    mistake: bool,
    tls: Option<&std::path::Path>,
) -> String {
    let doc = std::fs::read_to_string("docs/deploy.md").unwrap();
    let block = doc
        .split("# hookgate-nginx-begin")
        .nth(1)
        .and_then(|rest| rest.split("# hookgate-nginx-end").next())
        .expect("docs/deploy.md holds the nginx block between its markers");
    let listen = match tls {
        Some(_) => format!("listen 127.0.0.1:{port} ssl;"),
        None => format!("listen 127.0.0.1:{port};"),
    };
    let server: String = block
        .lines()
        .filter(|l| tls.is_some() || !l.trim_start().starts_with("ssl_certificate"))
        .map(|l| {
            let mut l = l
                .replace("server 127.0.0.1:8080;", &format!("server {upstream};"))
                .replace("listen 443 ssl;", &listen);
            if let Some(dir) = tls {
                l = l
                    .replace(
                        "/etc/ssl/hooks.example.com.pem",
                        &dir.join("leaf.pem").display().to_string(),
                    )
                    .replace(
                        "/etc/ssl/hooks.example.com.key",
                        &dir.join("key.pem").display().to_string(),
                    );
            }
            if mistake {
                l.replace(
                    "proxy_pass http://hookgate;",
                    "proxy_pass http://hookgate/;",
                )
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let p = prefix.display();
    format!(
        "daemon off;\nmaster_process off;\npid {p}/nginx.pid;\nerror_log {p}/error.log;\nevents {{}}\n\
         http {{\n access_log off;\n client_body_temp_path {p}/body;\n proxy_temp_path {p}/proxy;\n\
         fastcgi_temp_path {p}/fastcgi;\n uwsgi_temp_path {p}/uwsgi;\n scgi_temp_path {p}/scgi;\n{server}\n}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nginx: tests/run.sh installs it and runs this with --ignored"]
async fn simulate_passes_through_the_documented_nginx_for_every_vendor() {
    let nginx_bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("nginx is not installed (apt-get install nginx; tests/run.sh does it)");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hookgate.db");
    let served = common::Served::example(&db);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _nginx = start_nginx(
        nginx_bin,
        dir.path(),
        &documented_config(served.addr, port, dir.path(), false, None),
        port,
    )
    .await;
    for (receiver, path) in [
        ("hr", "/hooks/wecom/hr"),
        ("mp", "/hooks/wechat/mp"),
        ("ding", "/hooks/dingtalk/app"),
        ("lark", "/hooks/feishu/app"),
        ("bot", "/hooks/dingtalk/robot"),
    ] {
        let (ok, text) = simulate(
            served.addr,
            &format!("http://127.0.0.1:{port}{path}"),
            receiver,
        );
        assert!(
            ok && text.contains("OK:"),
            "{receiver} through nginx:\n{text}"
        );
    }

    // The classic mistake, `proxy_pass http://hookgate/;`, strips /hooks/: simulate says so.
    let wrong = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _bad = start_nginx(
        nginx_bin,
        wrong.path(),
        &documented_config(served.addr, port, wrong.path(), true, None),
        port,
    )
    .await;
    let (ok, text) = simulate(
        served.addr,
        &format!("http://127.0.0.1:{port}/hooks/wecom/hr"),
        "hr",
    );
    assert!(!ok && text.contains("hookgate answered 404"), "{text}");

    // With TLS from a private CA: a vendor would not trust it, and simulate says so (not
    // "the proxy"); with --ca-file naming that CA, everything else checks out.
    let certs = tempfile::tempdir().unwrap();
    let made = Command::new(common::python())
        .arg("-c")
        .arg("import sys; sys.path.insert(0, 'tests/py'); import smtp_server; smtp_server.make_cert(sys.argv[1])")
        .arg(certs.path())
        .status()
        .unwrap();
    assert!(made.success());
    let tls_dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = documented_config(served.addr, port, tls_dir.path(), false, Some(certs.path()));
    let _tls = start_nginx(nginx_bin, tls_dir.path(), &config, port).await;
    let url = format!("https://localhost:{port}/hooks/wecom/hr");
    let (ok, text) = simulate(served.addr, &url, "hr");
    assert!(
        !ok && text.contains("does not trust the server's TLS certificate"),
        "{text}"
    );
    assert!(!text.contains("the proxy between"), "{text}");
    let ca = certs.path().join("cert.pem");
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args([
            "simulate",
            "--config",
            EXAMPLE,
            "--receiver",
            "hr",
            "--url",
            &url,
            "--ca-file",
        ])
        .arg(&ca)
        .env("HOOKGATE_LISTEN", served.addr.to_string())
        .env("HOOKGATE_ENV_FILE", common::DEMO_ENV)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("OK:"), "{text}");
}

fn simulate(listen: std::net::SocketAddr, url: &str, receiver: &str) -> (bool, String) {
    common::simulate(EXAMPLE, listen, receiver, url)
}

async fn start_nginx(bin: &str, prefix: &std::path::Path, config: &str, port: u16) -> Nginx {
    let conf = prefix.join("nginx.conf");
    std::fs::write(&conf, config).unwrap();
    let nginx = Nginx(
        Command::new(bin)
            .arg("-p")
            .arg(prefix)
            .arg("-c")
            .arg(&conf)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    // Wait (10 s at most) for nginx to listen.
    let mut up = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        up,
        "nginx did not start: {}",
        std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default()
    );
    nginx
}
