//! The config file: `raw` (serde, with spans) → [`validate`] → [`Config`].
//! Validation is pure: `${VAR}` values come from a lookup passed in, and every problem is
//! reported at once with its key and file line. Clients and sockets are built elsewhere.

mod env;
mod raw;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::crypto::envelope::Envelope;
use crate::crypto::feishu::FeishuKey;
use crate::event::Vendor;
use crate::secret::Secret;

pub use env::expand;
pub use validate::parse;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub receivers: Vec<Receiver>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest accepted request body; larger ones get 413.
    pub body_limit: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub synchronous: Synchronous,
}

/// SQLite's `synchronous`: `Full` fsyncs every commit; `Normal` survives a process crash but
/// may lose the last commits on power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    Full,
    Normal,
}

/// One callback endpoint: a vendor app's URL and credentials.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub name: String,
    pub path: String,
    /// Accepted clock skew of the vendor's timestamp, in seconds; 0 turns the check off.
    pub timestamp_window: u64,
    pub credentials: Credentials,
}

impl Receiver {
    pub fn vendor(&self) -> Vendor {
        match self.credentials {
            Credentials::WeCom { .. } => Vendor::WeCom,
            Credentials::WechatMp { .. } => Vendor::WechatMp,
            Credentials::DingTalk { .. } => Vendor::DingTalk,
            Credentials::Feishu { .. } => Vendor::Feishu,
            Credentials::DingTalkRobot { .. } => Vendor::DingTalkRobot,
        }
    }
}

/// Per-vendor credentials, checked and expanded (AES keys built) at load.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// `suite`: a third-party suite's command callback, answered `success`.
    WeCom {
        envelope: Envelope,
        suite: bool,
    },
    /// `envelope` is absent only in plaintext mode.
    WechatMp {
        token: Secret<String>,
        envelope: Option<Envelope>,
        mode: MpMode,
    },
    DingTalk {
        envelope: Envelope,
    },
    Feishu {
        verification_token: Secret<String>,
        encrypt_key: Option<Box<FeishuKey>>,
    },
    DingTalkRobot {
        app_secret: Secret<String>,
    },
}

/// WeChat MP message encryption modes, as set in the MP console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MpMode {
    /// Only encrypted (`encrypt_type=aes`) messages are accepted.
    Safe,
    /// Encrypted messages, and plaintext ones signed with the 3-part signature.
    Compat,
    /// Only plaintext messages (3-part signature).
    Plaintext,
}

/// One problem in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(
            f,
            "{}: {n} problem{}",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            match e.line {
                Some(line) => writeln!(
                    f,
                    "  {}:{line}: {}",
                    self.file.display(),
                    ConfigError {
                        line: None,
                        ..e.clone()
                    }
                )?,
                None => writeln!(f, "  {}: {e}", self.file.display())?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates a config file, taking `${VAR}` from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let fail = |message: String| ConfigErrors {
        file: path.to_owned(),
        errors: vec![ConfigError {
            line: None,
            key: String::new(),
            message,
        }],
    };
    let src = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    parse(&src, &|name| std::env::var(name).ok()).map_err(|errors| ConfigErrors {
        file: path.to_owned(),
        errors,
    })
}
