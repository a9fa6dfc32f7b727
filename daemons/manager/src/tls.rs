//! TLS on the API listener (`[manager] ssl-enabled`, `ssl-cert`, `ssl-privkey`, as in the
//! original's `manager.toml`): [`server_config`] reads the PEM certificate chain and private key
//! into a rustls configuration, and [`TlsListener`] turns a bound TCP listener into an
//! [`axum::serve::Listener`] of TLS streams, so the API keeps axum's serve loop — graceful
//! shutdown and HTTP upgrades (the `/stream/...` WebSockets) — over TLS.
//!
//! The crypto provider is rustls's *ring*, the one tonic's TLS (the agents' RPC) already uses.
//! Handshakes run in their own tasks with a time limit, so a client that connects and then
//! says nothing cannot hold up the others; a failed handshake (a plain-HTTP request, a client
//! that rejects the certificate) closes that connection only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A certificate or key that cannot be used, naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TLS: {}: {reason}", path.display())]
pub struct TlsError {
    /// The PEM file at fault (the certificate when the pair does not match).
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

fn tls_error(path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError { path: path.to_path_buf(), reason: reason.into() }
}

/// A rustls server configuration from a PEM certificate chain (the server's certificate first,
/// then any intermediates) and a PEM private key (PKCS#8, PKCS#1 or SEC1), offering HTTP/1.1
/// through ALPN.
///
/// Errors name the file: unreadable, no certificate or key in it, malformed PEM, or a key that
/// does not belong to the certificate.
///
/// ```no_run
/// let config = bai_manager::tls::server_config(
///     std::path::Path::new("/etc/bai/manager.crt"),
///     std::path::Path::new("/etc/bai/manager.key"),
/// )?;
/// # Ok::<(), bai_manager::tls::TlsError>(())
/// ```
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|e| tls_error(cert, format!("cannot read the certificate: {e}")))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(tls_error(cert, "no certificate (expected a PEM `BEGIN CERTIFICATE` block)"));
    }
    let key_pem = std::fs::read(key).map_err(|e| tls_error(key, format!("cannot read the private key: {e}")))?;
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => tls_error(
            key,
            "no private key (expected a PEM `BEGIN PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block)",
        ),
        e => tls_error(key, format!("not a PEM private key: {e}")),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| tls_error(cert, format!("unusable with the key {}: {e}", key.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TCP listener whose connections are TLS streams, for [`axum::serve`].
///
/// A background task accepts TCP connections and hands each to its own handshake task
/// (bounded by [`HANDSHAKE_TIMEOUT`]); [`accept`](axum::serve::Listener::accept) yields the
/// connections whose handshake succeeded. Dropping the listener stops accepting (the
/// connections already handed out are unaffected).
#[derive(Debug)]
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    acceptor: JoinHandle<()>,
}

impl TlsListener {
    /// Serves TLS with `config` on `listener`. Must be called within a tokio runtime.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        Ok(Self { local_addr, ready, acceptor })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin (axum does the same).
                tracing::warn!(error = %e, "accepting an API connection failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if ready.is_closed() {
            return;
        }
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop ended (its task was aborted or panicked): no more connections.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = write(dir.path(), "cert.pem", &pair.cert.pem());
        let key = write(dir.path(), "key.pem", &pair.key_pair.serialize_pem());
        let other_key = write(dir.path(), "other.pem", &other.key_pair.serialize_pem());
        let garbage = write(dir.path(), "garbage.pem", "hello\n");
        let missing = dir.path().join("missing.pem");

        server_config(&cert, &key).unwrap();

        let e = server_config(&missing, &key).unwrap_err();
        assert_eq!(e.path, missing);
        assert!(e.to_string().contains("missing.pem: cannot read the certificate"), "{e}");
        let e = server_config(&garbage, &key).unwrap_err();
        assert_eq!(e.path, garbage);
        assert!(e.reason.starts_with("no certificate"), "{e}");
        let e = server_config(&cert, &garbage).unwrap_err();
        assert_eq!(e.path, garbage);
        assert!(e.reason.starts_with("no private key"), "{e}");
        // A key file holding a certificate is no key either.
        let e = server_config(&cert, &cert).unwrap_err();
        assert!(e.reason.starts_with("no private key"), "{e}");
        let e = server_config(&cert, &other_key).unwrap_err();
        assert_eq!(e.path, cert);
        assert!(e.reason.contains("other.pem"), "{e}");
    }
}
