//! The operator console in a real headless Chromium (Debian's, installed by
//! `tests/chromium/install.sh`), driven by `tests/py/console.py` through Selenium: sign in,
//! the event list, an event's body and delivery timeline, a retry from the dead letters, the
//! live tail showing a callback as it arrives, a timer cancelled, an event replayed, the
//! explain box, Chinese labels and the dark theme. Screenshots of each step go to `target/console/`.

mod common;

use common::start_file;

const CONFIG: &str = r#"
[server]
listen = "${HOOKGATE_LISTEN}"
admin_listen = "127.0.0.1:0"

[store]
path = "${HOOKGATE_DB}"

[delivery]
give_up_after = 0

[admin]
tokens = ["deploy:${DEPLOY_TOKEN}"]
operators = ["deploy"]

[[receivers]]
name = "shop"
vendor = "webhook"
path = "/hooks/shop"
auth = "none"
kind = "{{ type }}"
dedupe_key = "{{ id }}"

[[rules]]
name = "notify"
receiver = "shop"
when = { type = "created" }
[[rules.actions]]
kind = "http"
url = "http://127.0.0.1:9/nobody-listens"
body = "order {{ id }}"

[[rules]]
name = "remind"
receiver = "shop"
[[rules.actions]]
kind = "log"
after = "1h"
key = "order-{{ id }}"
message = "still open: {{ id }}"
"#;

const TOKEN: &str = "console-operator-token-42";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reads_retries_tails_and_explains_in_chromium() {
    let install = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/chromium/install.sh");
    let out = std::process::Command::new("bash")
        .arg(install)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let srv = start_file(CONFIG, &[("DEPLOY_TOKEN", TOKEN)]).await;
    for id in ["order-1", "order-2"] {
        let body = format!(r#"{{"id":"{id}","type":"created"}}"#);
        let r = srv
            .post(
                "/hooks/shop",
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    common::eventually(10, "two dead deliveries", || {
        srv.deliveries()
            .iter()
            .filter(|d| d.status == hookgate::store::DeliveryStatus::Dead)
            .count()
            == 2
    })
    .await;
    let admin = format!("http://{}", srv.admin_addr().unwrap());
    let callback = format!("http://{}/hooks/shop", srv.addr);
    let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/target/console");
    let python = common::python();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/console.py");
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args([script, &admin, TOKEN, &callback, shots])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // The retry went through the API as the token's name, into the audit trail.
    let trail = srv.store.audit_list(None, 10).await.unwrap();
    assert!(
        trail
            .iter()
            .any(|a| a.who == "deploy" && a.action == "retry"),
        "{trail:?}"
    );
    assert!(stdout.contains("console ok"), "{stdout}");
    srv.stop().await;
}
