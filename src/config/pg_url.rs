//! `[store] url`: a libpq connection URL, with libpq's `sslmode` meanings. `disable`;
//! `prefer` (the default) and `require` encrypt without checking the certificate (as psql
//! does) unless `[store] ca_file` is given, which makes them verify; `verify-ca` checks the
//! chain only and `verify-full` the chain and the host name. The driver knows neither of the
//! last two: they become `require` plus the verification [`crate::tls`] does.

use crate::tls::Verify;

/// The driver's config for `url` and what to verify of the server's certificate.
pub fn parse_postgres_url(
    url: &str,
    has_ca_file: bool,
) -> Result<(tokio_postgres::Config, Verify), String> {
    let mut verify = if has_ca_file {
        Verify::Full
    } else {
        Verify::Nothing
    };
    let mut text = url.to_owned();
    for (mode, v) in [("verify-full", Verify::Full), ("verify-ca", Verify::Chain)] {
        let param = format!("sslmode={mode}");
        if let Some(at) = text.find(&param) {
            text.replace_range(at..at + param.len(), "sslmode=require");
            verify = v;
        }
    }
    let config = text
        .parse::<tokio_postgres::Config>()
        .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
    Ok((config, verify))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmodes_the_driver_lacks_become_require_plus_checks() {
        let (c, v) = parse_postgres_url("postgres://u:p@db/h?sslmode=verify-full", false).unwrap();
        assert_eq!(
            (c.get_ssl_mode(), v),
            (tokio_postgres::config::SslMode::Require, Verify::Full)
        );
        let (_, v) = parse_postgres_url("postgres://db/h?sslmode=verify-ca", true).unwrap();
        assert_eq!(v, Verify::Chain);
        assert_eq!(
            parse_postgres_url("postgres://db/h", false).unwrap().1,
            Verify::Nothing
        );
        assert_eq!(
            parse_postgres_url("postgres://db/h", true).unwrap().1,
            Verify::Full
        );
        let e = parse_postgres_url("postgres://db/h?sslmode=sometimes", false).unwrap_err();
        assert!(e.contains("not a PostgreSQL URL"), "{e}");
        assert!(!e.contains(":p@"), "{e}");
    }
}
