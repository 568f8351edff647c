//! The Debian package on this machine (root, throwaway), as the README's install section has
//! a user do it: `packaging/build-deb.sh` packages the tested binary, `dpkg -i` installs it
//! (user, state directory, conffiles), the secrets file is filled in, the unit is started as
//! systemd runs it (by systemd when it is the init; else by this test from the unit's own
//! lines: User, Group, EnvironmentFile, Environment, WorkingDirectory, UMask, StateDirectory,
//! ExecStartPre, ExecStart, ExecReload), a signed WeCom callback is stored, a reload keeps it
//! serving, a stop drains it, and `dpkg --purge` leaves nothing behind.
//! Needs root and dpkg: `tests/run.sh` runs it with `--ignored`.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hookgate::crypto::envelope::{AesKey, Envelope};

const UNIT: &str = "/lib/systemd/system/hookgate.service";

/// The `[Service]` lines of a unit: key → values in order (Environment= may repeat).
fn service_lines(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut inside = false;
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[Service]";
        } else if inside
            && !line.starts_with('#')
            && let Some((k, v)) = line.split_once('=')
        {
            out.entry(k.to_owned()).or_default().push(v.to_owned());
        }
    }
    out
}

fn one<'a>(unit: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    unit.get(key)
        .and_then(|v| v.last())
        .map_or("", String::as_str)
}

/// The environment systemd gives the service: its EnvironmentFile= lines (a leading `-`:
/// optional), then Environment=.
fn service_env(unit: &BTreeMap<String, Vec<String>>) -> Vec<(String, String)> {
    let mut env = vec![("PATH".to_owned(), "/usr/bin:/bin".to_owned())];
    for file in unit.get("EnvironmentFile").into_iter().flatten() {
        let (optional, path) = match file.strip_prefix('-') {
            Some(p) => (true, p),
            None => (false, file.as_str()),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for line in text.lines().map(str::trim) {
                    if let Some((k, v)) = line.split_once('=')
                        && !line.starts_with('#')
                    {
                        env.push((k.trim().to_owned(), v.trim().to_owned()));
                    }
                }
            }
            Err(e) => assert!(optional, "EnvironmentFile {path}: {e}"),
        }
    }
    for e in unit.get("Environment").into_iter().flatten() {
        let (k, v) = e.split_once('=').unwrap();
        env.push((k.to_owned(), v.to_owned()));
    }
    env
}

/// A command line of the unit, run as its User/Group with its environment, umask and
/// working directory.
fn as_service(unit: &BTreeMap<String, Vec<String>>, line: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={}", one(unit, "User")))
        .arg(format!("--regid={}", one(unit, "Group")))
        .args(["--init-groups", "--", "sh", "-c"])
        .arg(format!(
            "umask {}; cd {} && exec \"$@\"",
            one(unit, "UMask"),
            one(unit, "WorkingDirectory")
        ))
        .arg("sh")
        .args(line.split_whitespace())
        .env_clear()
        .envs(service_env(unit));
    c
}

/// Whatever happens, the service is stopped and the package purged when the test ends.
struct Cleanup(Option<std::process::Child>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
        if Path::new("/run/systemd/system").exists() {
            let _ = Command::new("systemctl")
                .args(["stop", "hookgate"])
                .output();
        }
        let _ = Command::new("dpkg").args(["--purge", "hookgate"]).output();
    }
}

fn run(c: &mut Command) -> String {
    let out = c.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{c:?}:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "installs a package: needs root and dpkg; tests/run.sh runs it with --ignored"]
async fn the_debian_package_installs_runs_a_callback_and_purges_cleanly() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "installing a package needs root"
    );
    let built = tempfile::tempdir().unwrap();
    let deb = run(Command::new("bash")
        .arg("packaging/build-deb.sh")
        .args([
            "--binary",
            env!("CARGO_BIN_EXE_hookgate"),
            "--compress",
            "none",
            "--out",
        ])
        .arg(built.path()));
    let deb = deb.trim().lines().last().unwrap().to_owned();
    let _ = Command::new("dpkg").args(["--purge", "hookgate"]).output();
    run(Command::new("dpkg").args(["-i", &deb]));

    // What the package put in place.
    for path in [
        "/usr/bin/hookgate",
        UNIT,
        "/etc/hookgate/hookgate.toml",
        "/usr/share/man/man1/hookgate.1.gz",
        "/usr/share/man/man1/hookgate-serve.1.gz",
        "/usr/share/doc/hookgate/examples/events/wecom-contact-create-user.xml",
    ] {
        assert!(Path::new(path).exists(), "{path}");
    }
    let passwd = run(Command::new("getent").args(["passwd", "hookgate"]));
    assert!(
        passwd.trim_end().ends_with(":/usr/sbin/nologin"),
        "{passwd}"
    );
    let uid: u32 = passwd.split(':').nth(2).unwrap().parse().unwrap();
    let state = std::fs::metadata("/var/lib/hookgate").unwrap();
    assert_eq!((state.uid(), state.mode() & 0o777), (uid, 0o700));
    let secrets = std::fs::metadata("/etc/hookgate/hookgate.env").unwrap();
    assert_eq!((secrets.uid(), secrets.mode() & 0o777), (0, 0o640));

    // Until its secrets are filled in, the unit's ExecStartPre (check) refuses, naming one.
    let unit = service_lines(&std::fs::read_to_string(UNIT).unwrap());
    let pre = one(&unit, "ExecStartPre").to_owned();
    let out = as_service(&unit, &pre).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("WECOM_HR_TOKEN is not set"));

    // The user fills hookgate.env (here: the demo values) and starts the service.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let demo = std::fs::read_to_string(common::DEMO_ENV).unwrap();
    std::fs::write(
        "/etc/hookgate/hookgate.env",
        format!("{demo}\nHOOKGATE_LISTEN=127.0.0.1:{port}\n"),
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata("/etc/hookgate/hookgate.env")
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o640,
        "still private"
    );
    let systemd = Path::new("/run/systemd/system").exists();
    let mut guard = Cleanup(None);
    if systemd {
        run(Command::new("systemctl").args(["daemon-reload"]));
        run(Command::new("systemctl").args(["start", "hookgate"]));
    } else {
        run(&mut as_service(&unit, &pre));
        guard.0 = Some(
            as_service(&unit, one(&unit, "ExecStart"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the service never listened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A WeCom contact change, sealed with the demo keys, as WeCom posts it.
    let env = Envelope::new(
        "QDG6eK".into(),
        vec![AesKey::from_encoding_aes_key("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C").unwrap()],
        "wx5823bf96d3bd56c7".into(),
    );
    let post = |user: &str| {
        let xml = std::fs::read_to_string("config/examples/events/wecom-contact-create-user.xml")
            .unwrap()
            .replace("lisi", user);
        let ts = (common::now_ms() / 1000).to_string();
        let (query, body) = common::wecom_post(&env, "wx5823bf96d3bd56c7", &xml, &ts);
        format!(
            "POST /hooks/wecom/hr?{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let r = common::raw(addr, post("lisi").as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // The store: where the unit says, the service's alone.
    let db = std::fs::metadata("/var/lib/hookgate/hookgate.db").unwrap();
    assert_eq!((db.uid(), db.mode() & 0o077), (uid, 0));
    let listed = run(Command::new("/usr/bin/hookgate")
        .args(["events", "list", "--config", "/etc/hookgate/hookgate.toml"])
        .env("HOOKGATE_DB", "/var/lib/hookgate/hookgate.db"));
    assert!(listed.contains("change_contact/create_user"), "{listed}");
    // The example's rule for contact changes ran: the callback was delivered.
    let deliveries = || {
        run(Command::new("/usr/bin/hookgate")
            .args([
                "deliveries",
                "list",
                "--config",
                "/etc/hookgate/hookgate.toml",
            ])
            .env("HOOKGATE_DB", "/var/lib/hookgate/hookgate.db"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !deliveries().contains("done") {
        assert!(
            std::time::Instant::now() < deadline,
            "not delivered:\n{}",
            deliveries()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        deliveries().contains("log contact changes"),
        "{}",
        deliveries()
    );

    // ExecReload (SIGHUP) keeps it serving; a stop drains it and exits cleanly.
    if let Some(child) = &mut guard.0 {
        let reload = one(&unit, "ExecReload").replace("$MAINPID", &child.id().to_string());
        run(Command::new("sh").arg("-c").arg(reload));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            child.try_wait().unwrap().is_none(),
            "still running after a reload"
        );
    } else {
        run(Command::new("systemctl").args(["reload", "hookgate"]));
    }
    let r = common::raw(addr, post("wangwu").as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    if let Some(mut child) = guard.0.take() {
        run(Command::new("kill").args(["-TERM", &child.id().to_string()]));
        assert!(child.wait().unwrap().success(), "a stop exits 0");
    } else {
        run(Command::new("systemctl").args(["stop", "hookgate"]));
    }

    // Purged: binary, unit, config, secrets and store gone.
    run(Command::new("dpkg").args(["--purge", "hookgate"]));
    for path in [
        "/usr/bin/hookgate",
        UNIT,
        "/etc/hookgate",
        "/var/lib/hookgate",
        "/usr/share/doc/hookgate",
    ] {
        assert!(!Path::new(path).exists(), "{path} left after purge");
    }
}
