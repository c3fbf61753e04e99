//! Sending a guest's outgoing HTTP request under the run's egress policy.
//!
//! Replaces wasi-http's default sender: the host is checked against the
//! allowlist, the name is resolved here, every resolved address is checked,
//! and the connection goes to exactly an address that passed — so DNS cannot
//! be used to smuggle a request to a loopback or metadata address.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::policy::{Denial, EgressPolicy, normalize_host};
use crate::sandbox::RunLabel;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(60);

/// Egress counters of one run.
#[derive(Debug, Default)]
pub struct EgressCounters {
    /// Requests sent.
    pub requests: AtomicU64,
    /// Requests refused by the policy.
    pub denials: AtomicU64,
}

impl EgressCounters {
    /// Requests sent so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests refused so far.
    pub fn denials(&self) -> u64 {
        self.denials.load(Ordering::Relaxed)
    }
}

/// The wasi-http hooks of one run: policy, TLS roots, counters, log context.
pub struct EgressHooks {
    policy: Arc<EgressPolicy>,
    tls: Arc<rustls::ClientConfig>,
    label: Arc<RunLabel>,
    counters: Arc<EgressCounters>,
}

impl EgressHooks {
    /// Hooks enforcing `policy` for the run described by `label`.
    pub fn new(
        policy: Arc<EgressPolicy>,
        tls: Arc<rustls::ClientConfig>,
        label: Arc<RunLabel>,
        counters: Arc<EgressCounters>,
    ) -> Self {
        Self {
            policy,
            tls,
            label,
            counters,
        }
    }
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let policy = self.policy.clone();
        let tls = self.tls.clone();
        let label = self.label.clone();
        let counters = self.counters.clone();
        Box::new(async move {
            let (response, io) = send(&policy, tls, &label, &counters, request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

fn deny(label: &RunLabel, counters: &EgressCounters, denial: &Denial) -> HttpError {
    counters.denials.fetch_add(1, Ordering::Relaxed);
    let host = match denial {
        Denial::Scheme(_) => String::new(),
        Denial::HostNotAllowed { host } | Denial::Address { host, .. } => host.clone(),
    };
    tracing::warn!(
        adapter = %label.adapter,
        tenant = %label.tenant,
        integration = %label.integration,
        run_id = %label.run_id,
        host = %host,
        reason = %denial,
        "egress denied"
    );
    match denial {
        Denial::Address { .. } => HttpError::DestinationIpProhibited,
        _ => HttpError::HttpRequestDenied,
    }
}

/// Resolves `host:port` and returns the addresses the policy allows, or the
/// denial of the first refused address when none is allowed.
async fn resolve_allowed(
    policy: &EgressPolicy,
    host: &str,
    port: u16,
    connect_timeout: Duration,
) -> Result<Vec<SocketAddr>, Result<Denial, HttpError>> {
    let addrs: Vec<SocketAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            match tokio::time::timeout(connect_timeout, tokio::net::lookup_host((host, port))).await
            {
                Err(_) => return Err(Err(HttpError::DnsTimeout)),
                Ok(Err(_)) => {
                    return Err(Err(HttpError::DnsError {
                        rcode: Some("name not resolved".to_string()),
                        info_code: None,
                    }));
                }
                Ok(Ok(found)) => found.collect(),
            }
        }
    };
    let mut first_denial = None;
    let mut allowed = Vec::new();
    for addr in addrs {
        match policy.check_address(host, addr.ip()) {
            Ok(()) => allowed.push(addr),
            Err(denial) => {
                first_denial.get_or_insert(denial);
            }
        }
    }
    if allowed.is_empty() {
        return Err(match first_denial {
            Some(denial) => Ok(denial),
            None => Err(HttpError::DestinationNotFound),
        });
    }
    Ok(allowed)
}

trait TokioStream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T> TokioStream for T where T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}

async fn send(
    policy: &EgressPolicy,
    tls: Arc<rustls::ClientConfig>,
    label: &RunLabel,
    counters: &EgressCounters,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<
    (
        http::Response<IncomingBody>,
        impl Future<Output = wasmtime_wasi_http::Result<()>> + Send + use<>,
    ),
    HttpError,
> {
    let uri = request.uri().clone();
    let scheme = uri.scheme_str().unwrap_or("https").to_string();
    let host = uri
        .host()
        .map(normalize_host)
        .ok_or(HttpError::HttpRequestUriInvalid)?;
    policy
        .check_host(&scheme, &host)
        .map_err(|d| deny(label, counters, &d))?;
    let use_tls = uri.scheme() == Some(&Scheme::HTTPS);
    let port = uri.port_u16().unwrap_or(if use_tls { 443 } else { 80 });

    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(DEFAULT_FIRST_BYTE_TIMEOUT);
    let between_bytes_timeout = options
        .and_then(|o| o.between_bytes_timeout)
        .unwrap_or(DEFAULT_BETWEEN_BYTES_TIMEOUT)
        .max(Duration::from_millis(1));

    let addrs = match resolve_allowed(policy, &host, port, connect_timeout).await {
        Ok(addrs) => addrs,
        Err(Ok(denial)) => return Err(deny(label, counters, &denial)),
        Err(Err(error)) => return Err(error),
    };

    let mut last_error = HttpError::ConnectionRefused;
    let mut tcp = None;
    for addr in addrs {
        match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                tcp = Some(stream);
                break;
            }
            Ok(Err(e)) => last_error = HttpError::Connect(e),
            Err(_) => last_error = HttpError::ConnectionTimeout,
        }
    }
    let tcp = tcp.ok_or(last_error)?;
    let _ = tcp.set_nodelay(true);
    counters.requests.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(adapter = %label.adapter, run_id = %label.run_id, host = %host, "egress request");

    let stream: Box<dyn TokioStream> = if use_tls {
        let server_name = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => rustls_pki_types::ServerName::from(ip),
            Err(_) => rustls_pki_types::ServerName::try_from(host.clone())
                .map_err(|_| HttpError::HttpRequestUriInvalid)?,
        };
        let connector = tokio_rustls::TlsConnector::from(tls);
        let stream = tokio::time::timeout(connect_timeout, connector.connect(server_name, tcp))
            .await
            .map_err(|_| HttpError::ConnectionTimeout)?
            .map_err(HttpError::Tls)?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };

    let (mut sender, conn) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;

    // The request carries scheme and authority; on the wire only the path.
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    *request.uri_mut() = path.parse().map_err(|_| HttpError::HttpRequestUriInvalid)?;

    let send = async move {
        let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
            .await
            .map_err(|_| HttpError::ConnectionReadTimeout)??;
        let mut timer = tokio::time::interval(between_bytes_timeout);
        timer.reset();
        Ok::<_, HttpError>(response.map(|incoming| IncomingBody { incoming, timer }))
    };
    let mut send = pin!(send);
    let mut conn = Some(conn);
    // Drive the connection while waiting for the response head.
    let response = std::future::poll_fn(|cx| match send.as_mut().poll(cx) {
        Poll::Ready(result) => Poll::Ready(result),
        Poll::Pending => {
            let Some(fut) = conn.as_mut() else {
                return Poll::Pending;
            };
            let result = ready!(Pin::new(fut).poll(cx));
            conn = None;
            match result {
                Ok(()) => send.as_mut().poll(cx),
                Err(e) => Poll::Ready(Err(HttpError::from(e))),
            }
        }
    })
    .await?;
    Ok((response, async move {
        match conn {
            Some(conn) => conn.await.map_err(|e| {
                if e.is_timeout() {
                    HttpError::HttpResponseTimeout
                } else {
                    HttpError::from(e)
                }
            }),
            None => Ok(()),
        }
    }))
}

/// A response body that fails when the server stalls between frames.
pub struct IncomingBody {
    incoming: hyper::body::Incoming,
    timer: tokio::time::Interval,
}

impl http_body::Body for IncomingBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(if e.is_timeout() {
                HttpError::HttpResponseTimeout
            } else {
                HttpError::from(e)
            }))),
            Poll::Ready(Some(Ok(frame))) => {
                self.timer.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timer.poll_tick(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

/// TLS client configuration for adapter egress: the webpki roots plus any
/// extra CA certificates the operator configured (for on-prem sources with a
/// private CA).
pub fn tls_client_config(extra_roots_pem: &[Vec<u8>]) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    for pem in extra_roots_pem {
        use rustls_pki_types::pem::PemObject;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("reading extra CA certificate: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("adding extra CA certificate: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
