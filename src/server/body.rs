//! Reading a request body within the configured size limit and time.

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, HeaderMap};

use crate::config::ServerConfig;

#[derive(Debug, thiserror::Error)]
pub(super) enum BodyError {
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error("body not received within {0:?}")]
    Timeout(std::time::Duration),
    #[error("body could not be read: {0}")]
    Read(String),
}

impl BodyError {
    pub(super) fn status(&self) -> u16 {
        match self {
            Self::TooLarge(_) => 413,
            Self::Timeout(_) => 408,
            Self::Read(_) => 400,
        }
    }
}

/// Reads the whole body, refusing early when `Content-Length` already exceeds the limit.
pub(super) async fn read(
    body: Incoming,
    headers: &HeaderMap,
    limits: &ServerConfig,
) -> Result<Bytes, BodyError> {
    let limit = limits.body_limit;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(limits.body_read_timeout, collect).await {
        Err(_) => Err(BodyError::Timeout(limits.body_read_timeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(BodyError::TooLarge(limit))
        }
        Ok(Err(e)) => Err(BodyError::Read(e.to_string())),
    }
}
