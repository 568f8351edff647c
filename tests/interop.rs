//! Interop: callbacks sealed by the vendors' own SDKs on PyPI (wechatpy, dingtalk-sdk, and
//! lark-oapi as the reference receiver) against the real `hookgate serve`, with every reply
//! checked the way the vendor checks it; then the store holds each event exactly once.
//!
//! The SDKs come from `tests/py/setup.sh` (pinned, installed into `target/py-venv` on first use).

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/interop.py");

/// Runs the interop script with a deadline, so a stuck peer fails the test instead of hanging CI.
fn script(args: &[&str], deadline: Duration) -> Output {
    let child = Command::new(common::python())
        .arg(SCRIPT)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("interop.py {args:?} did not finish within {deadline:?}");
        }
    }
}

#[test]
fn vendor_sdks_get_the_replies_their_vendors_expect() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("interop.toml");
    let db = dir.path().join("interop.db");
    let out = script(&["config"], Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&config, &out.stdout).unwrap();

    let served = common::Served::start(&config, &[("HOOKGATE_DB", db.as_os_str())]);
    let base = format!("http://{}", served.addr);
    let out = script(&["run", &base], Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = served.terminate();
    assert!(status.success(), "{status:?}");

    // Every (receiver, kind) the script expects, stored exactly once despite retries.
    let expected: Vec<(String, String)> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("expected-events "))
        .map(|j| serde_json::from_str(j).unwrap())
        .expect("no expected-events line");
    let list = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["events", "list", "--limit", "1000", "--config"])
        .arg(&config)
        .env("HOOKGATE_DB", &db)
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let mut stored: BTreeMap<(String, String), usize> = BTreeMap::new();
    for line in String::from_utf8_lossy(&list.stdout).lines().skip(1) {
        // ID, date, time, receiver, vendor, kind, dedupe key
        let f: Vec<&str> = line.split_whitespace().collect();
        *stored
            .entry((f[3].to_owned(), f[5].to_owned()))
            .or_default() += 1;
    }
    let mut want: BTreeMap<(String, String), usize> = BTreeMap::new();
    for k in expected {
        *want.entry(k).or_default() += 1;
    }
    assert_eq!(stored, want);
}
