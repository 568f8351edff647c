//! The scratch MariaDB the `sql` lookup tests share: started once by `tests/mysql/start.sh`
//! (which installs Debian's mariadb-server if needed), and a new database per test.

#![allow(dead_code)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The server's URL (the `hookgate` database).
pub fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mysql/start.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("running tests/mysql/start.sh");
        assert!(out.status.success(), "tests/mysql/start.sh failed");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
}

/// Runs SQL on the scratch server with the mariadb client, in `database` if given.
pub fn sql(database: Option<&str>, statements: &str) -> String {
    let port = server_url()
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .unwrap()
        .to_owned();
    let mut cmd = std::process::Command::new("mariadb");
    cmd.args([
        "--protocol=tcp",
        "-h",
        "127.0.0.1",
        "-P",
        &port,
        "-u",
        "hookgate",
        "-phookgate",
        "-N",
        "-B",
    ]);
    if let Some(db) = database {
        cmd.arg(db);
    }
    let out = cmd
        .args(["-e", statements])
        .output()
        .expect("running mariadb");
    assert!(
        out.status.success(),
        "mariadb {statements}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A new empty database named after `tag`, and its URL.
pub fn fresh(tag: &str) -> (String, String) {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "t_{tag}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    sql(
        None,
        &format!("DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name} CHARACTER SET utf8mb4"),
    );
    let base = server_url().rsplit_once('/').unwrap().0;
    let url = format!("{base}/{name}");
    (name, url)
}
