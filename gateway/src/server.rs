//! Starts the gateway: migrations, the gRPC listener (rustls, client
//! certificates required) and the admin HTTPS listener. [`start`] returns a
//! [`GatewayHandle`] with the bound addresses (port 0 works) and a graceful
//! [`GatewayHandle::shutdown`]; [`wait_for_signal`] waits for SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::clock::{Clock, SystemClock};
use crate::config::{GatewayConfig, https_url_for, url_host};
use crate::db::{self, DbError};
use crate::grpc::{GatewayService, StreamIngest};
use crate::ingest::DeviceIngest;
use crate::state::{AppState, PublicEndpoints, StateError};

/// How long shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// TLS handshake timeout on both listeners.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A failure to start or run.
#[derive(Debug, Error)]
pub enum ServerError {
    /// Storage or migrations.
    #[error(transparent)]
    Db(#[from] DbError),
    /// State directory or installation mismatch.
    #[error(transparent)]
    State(#[from] StateError),
    /// A listener could not be bound.
    #[error("binding {what} listener on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// TLS material unusable.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// A listener stopped with an error.
    #[error("{what} server: {message}")]
    Serve {
        /// Which listener.
        what: &'static str,
        /// The cause.
        message: String,
    },
}

/// What can be swapped in when starting in-process.
#[derive(Clone)]
pub struct ServerOptions {
    /// Now (tests inject a manual clock).
    pub clock: Arc<dyn Clock>,
    /// StreamStatus handler.
    pub ingest: Arc<dyn StreamIngest>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            ingest: Arc::new(DeviceIngest::default()),
        }
    }
}

/// A running gateway.
pub struct GatewayHandle {
    grpc_addr: SocketAddr,
    admin_addr: SocketAddr,
    state: Arc<AppState>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<Result<(), String>>)>,
}

impl std::fmt::Debug for GatewayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayHandle")
            .field("grpc_addr", &self.grpc_addr)
            .field("admin_addr", &self.admin_addr)
            .finish_non_exhaustive()
    }
}

impl GatewayHandle {
    /// Bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Bound admin API address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The shared state (pool, clock, endpoints, ...).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Stops accepting, lets in-flight requests finish (up to
    /// [`SHUTDOWN_GRACE`]), waits for both listeners to stop and closes the
    /// database pool.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.shutdown.send(true);
        let mut first_error = None;
        for (what, task) in self.tasks {
            let result =
                match tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(2), task).await {
                    Ok(Ok(Ok(()))) => Ok(()),
                    Ok(Ok(Err(message))) => Err(ServerError::Serve { what, message }),
                    Ok(Err(join)) => Err(ServerError::Serve {
                        what,
                        message: join.to_string(),
                    }),
                    Err(_) => Err(ServerError::Serve {
                        what,
                        message: "did not stop in time".into(),
                    }),
                };
            if let Err(e) = result
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        }
        // Close the connections now rather than when the last task holding
        // the pool lets go of it, so a caller may drop the database next.
        db::close_pool(&self.state.pool).await;
        tracing::info!("gateway stopped");
        first_error.map_or(Ok(()), Err)
    }
}

/// Connects, migrates (platform and every tenant schema), binds both
/// listeners and starts serving.
pub async fn start(
    config: GatewayConfig,
    options: ServerOptions,
) -> Result<GatewayHandle, ServerError> {
    crate::install_crypto_provider();
    let pool = db::connect(&config.database_url, config.max_db_connections).await?;
    db::migrate_platform(&pool).await?;
    let tenants = db::migrate_all_tenants(&pool).await?;
    tracing::info!(tenants, "migrations applied");

    let grpc_listener = bind("gRPC", config.listen.grpc).await?;
    let admin_listener = bind("admin", config.listen.admin).await?;
    let grpc_addr = local_addr("gRPC", &grpc_listener, config.listen.grpc)?;
    let admin_addr = local_addr("admin", &admin_listener, config.listen.admin)?;
    let endpoints = public_endpoints(&config, grpc_addr, admin_addr);

    let server_cert = read_state_file(&config, &config.files.server_cert)?;
    let server_key = read_state_file(&config, &config.files.server_key)?;
    let state = Arc::new(AppState::load(config, pool, options.clock, endpoints).await?);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&server_cert, &server_key))
        .client_ca_root(Certificate::from_pem(state.root_ca.cert_pem()))
        .timeout(HANDSHAKE_TIMEOUT);
    let service = GatewayService::new(state.clone(), options.ingest).into_server();
    let router = Server::builder()
        .tls_config(tls)
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .add_service(service);
    let mut grpc_shutdown = shutdown_rx.clone();
    let incoming = TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
    tasks.push((
        "gRPC",
        tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = grpc_shutdown.changed().await;
                })
                .await
                .map_err(|e| e.to_string())
        }),
    ));

    tasks.push((
        "sweep warm-up",
        tokio::spawn(crate::sweep_delivery::warm_up(
            state.clone(),
            shutdown_rx.clone(),
        )),
    ));
    tasks.push((
        "sweep refresh listener",
        tokio::spawn(crate::sweep_delivery::follow_refresh_announcements(
            state.clone(),
            shutdown_rx.clone(),
        )),
    ));

    let acceptor = admin_tls_acceptor(&server_cert, &server_key)?;
    let app = crate::admin::router(state.clone());
    tasks.push((
        "admin",
        tokio::spawn(serve_admin(admin_listener, acceptor, app, shutdown_rx)),
    ));

    tracing::info!(grpc = %grpc_addr, admin = %admin_addr, gateway_id = %state.config.gateway_id,
        "gateway listening");
    Ok(GatewayHandle {
        grpc_addr,
        admin_addr,
        state,
        shutdown: shutdown_tx,
        tasks,
    })
}

/// Resolves when the process receives SIGTERM or SIGINT.
pub async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
    }
    Ok(())
}

/// The public endpoints: configured values, else derived from the bound
/// addresses.
pub fn public_endpoints(
    config: &GatewayConfig,
    grpc: SocketAddr,
    admin: SocketAddr,
) -> PublicEndpoints {
    let grpc_url = config
        .public
        .grpc_url
        .clone()
        .unwrap_or_else(|| https_url_for(grpc));
    let admin_url = config
        .public
        .admin_url
        .clone()
        .unwrap_or_else(|| https_url_for(admin));
    let tls_server_name = config
        .public
        .tls_server_name
        .clone()
        .or_else(|| url_host(&grpc_url))
        .unwrap_or_else(|| "localhost".into());
    PublicEndpoints {
        grpc_url,
        admin_url: admin_url.trim_end_matches('/').to_string(),
        tls_server_name,
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { what, addr, source })
}

fn local_addr(
    what: &'static str,
    l: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, ServerError> {
    l.local_addr()
        .map_err(|source| ServerError::Bind { what, addr, source })
}

fn read_state_file(config: &GatewayConfig, name: &std::path::Path) -> Result<String, ServerError> {
    let path = config.state_file(name);
    std::fs::read_to_string(&path).map_err(|source| {
        ServerError::State(StateError::Io {
            path: path.display().to_string(),
            source,
        })
    })
}

fn admin_tls_acceptor(cert_pem: &str, key_pem: &str) -> Result<TlsAcceptor, ServerError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Tls(format!("server certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| ServerError::Tls(format!("server key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn serve_admin(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: axum::Router,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let graceful = GracefulShutdown::new();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, _remote) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let service = TowerToHyperService::new(app.clone());
                let watcher = graceful.watcher();
                let builder = builder.clone();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "admin TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(error = %e, "admin connection ended with an error");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("admin connections still open after the grace period; closing");
    }
    Ok(())
}
