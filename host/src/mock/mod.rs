//! Mock Armis and NetBox servers that behave like the real APIs described
//! in the source reference, quirks included, for adapter tests, benchmarks,
//! the conformance kit and adapter authors (`sr-sync mock armis|netbox`).
//!
//! Each mock is an axum server started in-process on a port of your choice
//! (0 for any), serving an [`inventory::Inventory`]. Its handle exposes the
//! base URL and knobs that change behaviour at runtime: the run number
//! (churn), device count, injected failures, rate limits, slow pages,
//! token lifetime, redirects to a foreign host. Counters say what was
//! served.

pub mod armis;
pub mod inventory;
pub mod netbox;
pub mod source;

pub use source::{SourceKnobs, SourceState};

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running mock server. Dropping it stops the server.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Binds `addr` (port 0: any free port) and serves `router` on the
    /// current tokio runtime.
    pub async fn start(router: Router, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = rx.await;
            });
            if let Err(error) = serve.await {
                tracing::warn!(%error, "mock server stopped");
            }
        });
        Ok(Self {
            addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// What a faulty request gets instead of its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injected {
    /// Answer with this status.
    Fail(u16),
    /// 429 with this `Retry-After` (seconds).
    RateLimit(u64),
    /// 302 to this base URL (same path and query).
    Redirect(String),
}

/// Faults injected into a mock's data requests (not its token endpoint),
/// consumed request by request. Rate limits come first, then failures.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    rate_limits: u32,
    retry_after_secs: u64,
    /// Failures queued as (requests to let through first, failures, status).
    failures: VecDeque<(u32, u32, u16)>,
    slow: Duration,
    redirect_to: Option<String>,
}

impl Faults {
    /// After `ok` more requests succeed, the next `count` fail with `status`.
    pub fn fail_after(&mut self, ok: u32, count: u32, status: u16) {
        self.failures.push_back((ok, count, status));
    }

    /// The next `count` requests answer 429 with `Retry-After: secs`.
    pub fn rate_limit_next(&mut self, count: u32, retry_after_secs: u64) {
        self.rate_limits = count;
        self.retry_after_secs = retry_after_secs;
    }

    /// Every data request waits `delay` before answering.
    pub fn slow_pages(&mut self, delay: Duration) {
        self.slow = delay;
    }

    /// Every data request is redirected to `base` (a foreign host), or no
    /// longer with `None`.
    pub fn redirect_to(&mut self, base: Option<String>) {
        self.redirect_to = base;
    }

    /// Clears everything.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// The delay of slow pages.
    pub fn delay(&self) -> Duration {
        self.slow
    }

    /// What the next request gets, consuming it.
    pub fn take(&mut self) -> Option<Injected> {
        if let Some(base) = &self.redirect_to {
            return Some(Injected::Redirect(base.clone()));
        }
        if self.rate_limits > 0 {
            self.rate_limits -= 1;
            return Some(Injected::RateLimit(self.retry_after_secs));
        }
        let (ok, count, status) = self.failures.front_mut()?;
        if *ok > 0 {
            *ok -= 1;
            return None;
        }
        let status = *status;
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.failures.pop_front();
        }
        Some(Injected::Fail(status))
    }
}

/// The response for an injected fault: JSON bodies like the real APIs'.
pub fn injected_response(fault: &Injected, path_and_query: &str) -> Response {
    match fault {
        Injected::Fail(status) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            json_response(
                status,
                &serde_json::json!({"success": false, "message": format!("mock: injected {}", status.as_u16())}),
            )
        }
        Injected::RateLimit(secs) => {
            let mut response = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                &serde_json::json!({"success": false, "message": "Too many requests"}),
            );
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Injected::Redirect(base) => redirect(
            StatusCode::FOUND,
            &format!("{}{path_and_query}", base.trim_end_matches('/')),
        ),
    }
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

/// A redirect to `location`.
pub fn redirect(status: StatusCode, location: &str) -> Response {
    let mut response = status.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Decodes `%XX` and `+` (form encoding); invalid escapes stay as they are.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(byte) => {
                    out.push(byte);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decoded `key=value` pairs of a query string or form body, in order,
/// repeated keys kept.
pub fn query_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// Percent-encodes a query component (everything but `A-Za-z0-9-._~`).
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Serialises pairs as a query string.
pub fn encode_pairs(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_consumed_in_order() {
        let mut faults = Faults::default();
        assert_eq!(faults.take(), None);
        faults.rate_limit_next(1, 2);
        faults.fail_after(1, 2, 503);
        assert_eq!(faults.take(), Some(Injected::RateLimit(2)));
        assert_eq!(faults.take(), None);
        assert_eq!(faults.take(), Some(Injected::Fail(503)));
        assert_eq!(faults.take(), Some(Injected::Fail(503)));
        assert_eq!(faults.take(), None);
        faults.redirect_to(Some("http://elsewhere:1".into()));
        assert_eq!(
            faults.take(),
            Some(Injected::Redirect("http://elsewhere:1".into()))
        );
        faults.clear();
        assert_eq!(faults.take(), None);
    }

    #[test]
    fn query_strings_decode_and_encode() {
        assert_eq!(
            query_pairs("aql=in%3Adevices+after%3A2024-05-01T10%3A00%3A00&from=0&x&bad=%zz"),
            [
                (
                    "aql".to_string(),
                    "in:devices after:2024-05-01T10:00:00".to_string()
                ),
                ("from".to_string(), "0".to_string()),
                ("x".to_string(), String::new()),
                ("bad".to_string(), "%zz".to_string()),
            ]
        );
        let pairs = vec![("a b".to_string(), "c&d,e".to_string())];
        assert_eq!(encode_pairs(&pairs), "a%20b=c%26d%2Ce");
        assert_eq!(query_pairs(&encode_pairs(&pairs)), pairs);
    }
}
