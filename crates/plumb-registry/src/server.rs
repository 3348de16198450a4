//! Running the registry: listeners (plain or TLS), online GC, shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::service::Registry;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Bind failure.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// TLS material unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// Serving failed.
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Load a rustls server configuration from PEM files. The process's rustls
/// crypto provider must be installed first (the binary does it in `main`).
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| ServeError::Tls(format!("{}: {e}", cert.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServeError::Tls(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServeError::Tls(format!("{}: {e}", key.display())))?;
    let mut cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serve `registry` on `listener` until `shutdown` resolves; runs online GC
/// when the configuration asks for it.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let app = crate::http::router(registry.clone());
    // Abandoned upload sessions expire even when GC is off.
    {
        let r = registry.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
            loop {
                tick.tick().await;
                let n = r.expire_uploads(crate::service::now() - crate::gc::UPLOAD_EXPIRY_SECS);
                if n > 0 {
                    tracing::info!(sessions = n, "expired idle uploads");
                }
            }
        });
    }
    if let Some(interval) = registry.config().gc_interval {
        let r = registry.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                match crate::gc::collect(&r, false).await {
                    Ok(rep) => tracing::info!(
                        tags = rep.tags.len(),
                        manifests = rep.manifests.len(),
                        blobs = rep.blobs.len(),
                        bytes = rep.bytes_freed,
                        "online gc"
                    ),
                    Err(e) => tracing::error!(error = %e, "online gc failed"),
                }
            }
        });
    }
    match tls {
        None => {
            use axum::serve::ListenerExt as _;
            // Small responses must not wait for delayed ACKs.
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await?;
        }
        Some(cfg) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
            let service = hyper_util::service::TowerToHyperService::new(app);
            tokio::pin!(shutdown);
            loop {
                let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    r = listener.accept() => r?,
                };
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let service = service.clone();
                tokio::spawn(async move {
                    let tls = match acceptor.accept(stream).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                    };
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    if let Err(e) = builder.serve_connection(TokioIo::new(tls), service).await {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                });
            }
        }
    }
    Ok(())
}
