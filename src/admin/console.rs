//! The web console: one page, a stylesheet and a script (`console/`), compiled into the
//! binary and served by the admin listener with a strict Content Security Policy (nothing
//! but this origin, no inline script, no framing). The page holds no data: it asks the API,
//! which authenticates every call.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Response;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};

use super::Body;

const INDEX: &str = include_str!("console/index.html");
const STYLE: &str = include_str!("console/console.css");
const SCRIPT: &str = include_str!("console/console.js");

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The console's file at `path`, if it is one.
pub(super) fn asset(path: &str) -> Option<Response<Body>> {
    let (body, content_type) = match path {
        "/" | "/index.html" => (INDEX, "text/html; charset=utf-8"),
        "/console.css" => (STYLE, "text/css; charset=utf-8"),
        "/console.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        _ => return None,
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert("content-security-policy", HeaderValue::from_static(POLICY));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    // A new binary brings a new console: revalidate, never serve a stale script.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(resp)
}
