//! Query strings, percent-decoded exactly once. `+` stays `+`: vendors percent-encode the
//! base64 `+` as `%2B`, so a bare `+` can only be a base64 character a proxy already decoded.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// The decoded `name=value` pairs of a query string; the first occurrence of a name wins.
pub struct Query<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> Query<'a> {
    pub fn parse(raw: &'a str) -> Self {
        let decode = |s: &'a str| percent_decode_str(s).decode_utf8_lossy();
        let pairs = raw
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (decode(k), decode(v)),
                None => (decode(p), Cow::Borrowed("")),
            })
            .collect();
        Self { pairs }
    }

    /// Every pair, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_once_and_keeps_plus() {
        let q = Query::parse("echostr=a%2Bb%2F%3D%3D&x=1+2&x=3&flag&e=%252B");
        assert_eq!(q.get("echostr"), Some("a+b/=="));
        assert_eq!(q.get("x"), Some("1+2"));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("e"), Some("%2B"));
        assert_eq!(q.get("missing"), None);
    }
}
