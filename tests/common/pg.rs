//! The scratch PostgreSQL the tests share: started once by `tests/pg/start.sh` (which installs
//! it if needed), and a new schema per store so tests never see each other's rows. Used by
//! the integration tests and, through `#[path]`, by the store's unit tests.

#![allow(dead_code)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The server's URL (postgres database, no schema chosen).
pub fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pg/start.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("running tests/pg/start.sh");
        assert!(out.status.success(), "tests/pg/start.sh failed");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
}

/// Where the scratch server listens.
pub fn server_addr() -> std::net::SocketAddr {
    let host_port = server_url()
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap();
    host_port.parse().unwrap()
}

/// The CA that signed the scratch server's certificate (for the TLS test).
pub fn server_cert() -> std::path::PathBuf {
    let port = server_addr().port();
    std::path::PathBuf::from(format!("/tmp/hookgate-pg-{port}/ca.crt"))
}

/// Runs SQL on the scratch server with psql.
pub fn psql(sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([
            server_url(),
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("running psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A new empty schema, unique to this process and call, named after `tag`.
pub fn fresh_schema(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let tag: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    let name = format!(
        "t_{tag}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    psql(&format!(
        "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
    ));
    name
}

/// The URL of `schema` on the scratch server (its tables go there).
pub fn schema_url(schema: &str) -> String {
    format!("{}?options=-c%20search_path%3D{schema}", server_url())
}

/// A URL on a new empty schema.
pub fn fresh_url(tag: &str) -> String {
    schema_url(&fresh_schema(tag))
}
