//! TLS for every outbound connection, in one place: rustls with ring (no OpenSSL, no
//! aws-lc), the system's roots through the platform verifier or a PEM CA file, and libpq's
//! laxer `sslmode`s for PostgreSQL. Used by reqwest (actions, app APIs, stream discovery),
//! the stream dialer (wss://) and the PostgreSQL store.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};

/// What a TLS set-up failed on: a CA file, the system's store, or rustls itself.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("system CA store: {0}")]
    System(String),
    #[error("{0}")]
    Rustls(#[from] Error),
}

/// rustls needs a process-wide crypto provider before reqwest or lettre builds a client;
/// ring is the one this crate ships. Safe to call more than once.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A reqwest client builder with the provider installed and hookgate's user agent.
pub fn http_builder() -> reqwest::ClientBuilder {
    install_provider();
    reqwest::Client::builder().user_agent(concat!("hookgate/", env!("CARGO_PKG_VERSION")))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How much of a server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    Nothing,
    /// The chain only: a name mismatch is forgiven (libpq's `verify-ca`).
    Chain,
    Full,
}

/// A client config that checks servers against the system's roots (full verification).
pub fn system_client() -> Result<rustls::ClientConfig, TlsError> {
    client(Verify::Full, None)
}

/// A client config checking `verify` of a server's certificate against `ca_file` (PEM) or,
/// without one, the system's roots.
pub fn client(verify: Verify, ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let checked = roots(ca_file, &provider)?;
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
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The full verifier over `ca_file`'s certificates, or the platform's.
fn roots(
    ca_file: Option<&Path>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let Some(path) = ca_file else {
        return Ok(Arc::new(
            rustls_platform_verifier::Verifier::new(provider.clone())
                .map_err(|e| TlsError::System(e.to_string()))?,
        ));
    };
    let shown = |e: &dyn std::fmt::Display| TlsError::CaFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| shown(&e))? {
        store
            .add(cert.map_err(|e| shown(&e))?)
            .map_err(|e| shown(&e))?;
    }
    rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map(|v| v as Arc<dyn ServerCertVerifier>)
        .map_err(|e| shown(&e))
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
