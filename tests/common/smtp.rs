//! A real SMTP server for the email tests: aiosmtpd (`tests/py/smtp_server.py`) as a child
//! process on 127.0.0.1, recording every accepted message.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Mail {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub message_id: Option<String>,
    pub subject: String,
    pub to: String,
    pub cc: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub tls: bool,
    pub authenticated: bool,
}

pub struct SmtpServer {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

impl SmtpServer {
    /// `args`: `--starttls`, `--auth user:pass`, `--port N` (see the script).
    pub fn start(dir: &std::path::Path, args: &[&str]) -> SmtpServer {
        let mut child = Command::new(super::python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/py/smtp_server.py"
            ))
            .arg(dir)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting smtp_server.py");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            lines.for_each(drop);
        });
        let port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line
                .strip_prefix("listening ")
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or_else(|| panic!("unexpected first line {line:?}")),
            Err(e) => {
                let _ = child.kill();
                panic!("the SMTP server did not start: {e}");
            }
        };
        SmtpServer {
            port,
            dir: dir.to_owned(),
            child,
        }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    pub fn messages(&self) -> Vec<Mail> {
        std::fs::read_to_string(self.dir.join("messages.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
