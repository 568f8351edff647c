//! TLS to PostgreSQL with rustls, with libpq's `sslmode` meanings: `disable`; `prefer` (the
//! default) and `require` encrypt without checking the certificate (as psql does), unless
//! `[store] ca_file` is given, which makes them verify; `verify-ca` checks the chain only and
//! `verify-full` the chain and the host name, against `ca_file` or the system's roots.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verify {
    Nothing,
    Chain,
    Full,
}

/// The driver's config for `url` and what to verify; `verify-ca`/`verify-full`, which the
/// driver does not know, become `require` plus verification here.
pub(crate) fn parse_url(
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

/// The connector: roots from `ca_file` (PEM) or the system's.
pub(crate) fn connector(
    verify: Verify,
    ca_file: Option<&std::path::Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let checked: Arc<dyn ServerCertVerifier> = match ca_file {
        Some(path) => {
            let shown = |e: &dyn std::fmt::Display| format!("ca_file {}: {e}", path.display());
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| shown(&e))? {
                roots
                    .add(cert.map_err(|e| shown(&e))?)
                    .map_err(|e| shown(&e))?;
            }
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| shown(&e))?
        }
        None => Arc::new(
            rustls_platform_verifier::Verifier::new(provider.clone())
                .map_err(|e| format!("system CA store: {e}"))?,
        ),
    };
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Full => checked,
        Verify::Chain => Arc::new(Lenient {
            checked: Some(checked),
            provider: provider.clone(),
        }),
        Verify::Nothing => Arc::new(Lenient {
            checked: None,
            provider: provider.clone(),
        }),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Checks the chain only (`checked`, a name mismatch forgiven) or nothing; the handshake's
/// signatures are verified either way.
#[derive(Debug)]
struct Lenient {
    checked: Option<Arc<dyn ServerCertVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(checked) = &self.checked else {
            return Ok(ServerCertVerified::assertion());
        };
        match checked.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmodes_the_driver_lacks_become_require_plus_checks() {
        let (c, v) = parse_url("postgres://u:p@db/h?sslmode=verify-full", false).unwrap();
        assert_eq!(
            (c.get_ssl_mode(), v),
            (tokio_postgres::config::SslMode::Require, Verify::Full)
        );
        let (_, v) = parse_url("postgres://db/h?sslmode=verify-ca", true).unwrap();
        assert_eq!(v, Verify::Chain);
        assert_eq!(
            parse_url("postgres://db/h", false).unwrap().1,
            Verify::Nothing
        );
        assert_eq!(parse_url("postgres://db/h", true).unwrap().1, Verify::Full);
        let e = parse_url("postgres://db/h?sslmode=sometimes", false).unwrap_err();
        assert!(e.contains("not a PostgreSQL URL"), "{e}");
        assert!(!e.contains(":p@"), "{e}");
    }
}
