//! TLS settings shared by the HTTP client and the WebSocket connections (execution, app
//! tunnels): extra certificate authorities from [`Config::ca_file`] next to the public roots,
//! or no verification at all with [`Config::skip_ssl_verification`].

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::config::Config;
use crate::error::{Error, Result};

/// The certificates of `config.ca_file` (none without one).
pub(crate) fn extra_roots(config: &Config) -> Result<Vec<CertificateDer<'static>>> {
    let Some(path) = &config.ca_file else { return Ok(Vec::new()) };
    let field = || "BACKEND_CA_FILE".to_string();
    let pem = std::fs::read(path)
        .map_err(|e| Error::Config { field: field(), reason: format!("cannot read {}: {e}", path.display()) })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config { field: field(), reason: format!("{}: {e}", path.display()) })?;
    if certs.is_empty() {
        return Err(Error::Config { field: field(), reason: format!("{} holds no PEM certificate", path.display()) });
    }
    Ok(certs)
}

/// The rustls configuration of WebSocket connections, when the defaults (public roots,
/// verified) do not do.
pub(crate) fn websocket_config(config: &Config) -> Result<Option<Arc<rustls::ClientConfig>>> {
    let extra = extra_roots(config)?;
    if extra.is_empty() && !config.skip_ssl_verification {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config { field: "tls".into(), reason: e.to_string() })?;
    let tls = if config.skip_ssl_verification {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAny(provider))).with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        for cert in extra {
            roots.add(cert).map_err(|e| Error::Config {
                field: "BACKEND_CA_FILE".into(),
                reason: format!("a bad certificate: {e}"),
            })?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Some(Arc::new(tls)))
}

/// `BACKEND_SKIP_SSLCERT_VALIDATION`: any certificate is accepted (signatures are still
/// checked, so the handshake itself is sound).
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
