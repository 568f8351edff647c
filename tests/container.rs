//! The container image (`packaging/build-image.sh`, from local files only) built and run
//! with podman on this machine: non-root, a volume for the store, `/readyz` as its health
//! check, a secret from a mounted file (`NAME_FILE`), a signed WeCom callback stored, a clean
//! stop, and the store still there for the next container.
//! Needs podman (Debian's) and root: `tests/run.sh` installs it and runs this with `--ignored`.
//! This sandbox forbids `setrlimit` on the container's limits and crun's hybrid cgroups, so
//! the test runs podman with `default_ulimits = []` and runc (its own containers.conf);
//! a normal host needs neither.

mod common;

use std::process::Command;
use std::time::Duration;

use hookgate::crypto::envelope::{AesKey, Envelope};

/// Removes the test's container, volume and image whatever happens.
struct Cleanup {
    conf: std::path::PathBuf,
    names: Vec<(&'static str, String)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (what, name) in self.names.iter().rev() {
            let _ = podman(&self.conf)
                .args([what, "rm", "-f", name.as_str()])
                .output();
        }
    }
}

fn podman(conf: &std::path::Path) -> Command {
    let mut c = Command::new("podman");
    c.env("CONTAINERS_CONF", conf);
    c
}

fn run(c: &mut Command) -> String {
    let out = c.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{c:?}:\n{text}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs podman and root: tests/run.sh installs podman and runs this with --ignored"]
async fn the_container_image_runs_as_non_root_with_its_store_on_a_volume() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = []\n[engine]\nruntime = \"runc\"\n",
    )
    .unwrap();
    let tag = format!("hookgate:test-{}", std::process::id());
    let (name, volume) = (
        format!("hookgate-test-{}", std::process::id()),
        format!("hookgate-test-{}", std::process::id()),
    );
    let mut cleanup = Cleanup {
        conf: conf.clone(),
        names: vec![("image", tag.clone())],
    };
    let built = run(Command::new("bash")
        .args([
            "packaging/build-image.sh",
            "--binary",
            env!("CARGO_BIN_EXE_hookgate"),
            "--tag",
            &tag,
        ])
        .env("CONTAINER_ENGINE", "podman")
        .env("CONTAINERS_CONF", &conf));
    assert!(built.ends_with(&tag), "{built}");
    let inspect =
        |format: &str| run(podman(&conf).args(["image", "inspect", &tag, "--format", format]));
    assert_eq!(inspect("{{.Config.User}}"), "10001:10001");
    assert!(inspect("{{.Config.Healthcheck.Test}}").contains("/usr/bin/hookgate ready"));
    assert!(inspect("{{.Config.Volumes}}").contains("/var/lib/hookgate"));

    // The token from a mounted file, the rest from an env file, as container users keep them.
    let token = dir.path().join("wecom_hr_token");
    std::fs::write(&token, "QDG6eK\n").unwrap();
    let env: String = std::fs::read_to_string(common::DEMO_ENV)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("WECOM_HR_TOKEN="))
        .map(|l| format!("{l}\n"))
        .collect();
    let env_file = dir.path().join("hookgate.env");
    std::fs::write(&env_file, env).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    cleanup.names.push(("volume", volume.clone()));
    cleanup.names.push(("container", name.clone()));
    let start = |name: &str| {
        run(podman(&conf)
            .args(["run", "-d", "--name", name, "--network", "host"])
            .arg("--env-file")
            .arg(&env_file)
            .args(["-e", &format!("HOOKGATE_LISTEN=127.0.0.1:{port}")])
            .args(["-e", "WECOM_HR_TOKEN_FILE=/run/secrets/wecom_hr_token"])
            .arg("-v")
            .arg(format!(
                "{}:/run/secrets/wecom_hr_token:ro",
                token.display()
            ))
            .args(["-v", &format!("{volume}:/var/lib/hookgate"), &tag]))
    };
    start(&name);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        let logs = || run(podman(&conf).args(["logs", &name]));
        assert!(
            std::time::Instant::now() < deadline,
            "never listened:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run(podman(&conf).args(["healthcheck", "run", &name]));

    let env = Envelope::new(
        "QDG6eK".into(),
        vec![AesKey::from_encoding_aes_key("jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C").unwrap()],
        "wx5823bf96d3bd56c7".into(),
    );
    let xml =
        std::fs::read_to_string("config/examples/events/wecom-contact-create-user.xml").unwrap();
    let (query, body) = common::wecom_post(
        &env,
        "wx5823bf96d3bd56c7",
        &xml,
        &(common::now_ms() / 1000).to_string(),
    );
    let req = format!(
        "POST /hooks/wecom/hr?{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(common::raw(addr, req.as_bytes()).await.status, 200);

    // The store on the volume, the container user's alone.
    let mount =
        run(podman(&conf).args(["volume", "inspect", &volume, "--format", "{{.Mountpoint}}"]));
    use std::os::unix::fs::MetadataExt;
    let db = std::fs::metadata(std::path::Path::new(&mount).join("hookgate.db")).unwrap();
    assert_eq!((db.uid(), db.mode() & 0o077), (10001, 0));

    // A stop drains and exits 0; the next container reads the same store.
    run(podman(&conf).args(["stop", "-t", "30", &name]));
    assert_eq!(
        run(podman(&conf).args(["inspect", &name, "--format", "{{.State.ExitCode}}"])),
        "0"
    );
    let listed = run(podman(&conf)
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &format!("{volume}:/var/lib/hookgate"),
            &tag,
        ])
        .args(["events", "list"]));
    assert!(listed.contains("change_contact/create_user"), "{listed}");
}
