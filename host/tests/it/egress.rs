//! Egress goes only through wasi:http, only to allowed hosts, and never to
//! loopback, link-local or metadata addresses unless the operator says so.
//! Every denial is logged with the adapter and the host.

use std::net::SocketAddr;

use serde_json::json;
use sr_host::egress::AddressPermissions;
use sr_host::sandbox::AdapterFailure;

use crate::support::{LogCapture, discover, load, quick_limits, settings};

async fn serve_ok() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn egress_config(url: &str) -> serde_json::Value {
    json!({"settings": {"mode": "egress", "url": url}})
}

fn loopback() -> AddressPermissions {
    AddressPermissions {
        allow_loopback: true,
        ..Default::default()
    }
}

fn attribute<'a>(device: &'a sr_host::sandbox::Device, key: &str) -> Option<&'a str> {
    device
        .attributes
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn allowed_host_is_reached() {
    let addr = serve_ok().await;
    let adapter = load("sr-test-misbehave").await;
    let url = format!("http://127.0.0.1:{}/ping", addr.port());
    let run = discover(
        &adapter,
        egress_config(&url),
        &settings(quick_limits(), &["127.0.0.1"], loopback()),
        0,
    )
    .await;
    let outcome = run.outcome.expect("allowed egress succeeds");
    assert_eq!(outcome.egress_requests, 1);
    assert_eq!(outcome.egress_denials, 0);
    assert_eq!(run.devices.len(), 1);
    assert_eq!(attribute(&run.devices[0], "http_status"), Some("200"));
}

#[tokio::test]
async fn host_outside_the_allowlist_is_denied_and_logged() {
    let addr = serve_ok().await;
    let adapter = load("sr-test-misbehave").await;
    let logs = LogCapture::default();
    let _guard = logs.install();
    // Allowed: 127.0.0.1 only; the request goes to "localhost".
    let url = format!("http://localhost:{}/", addr.port());
    let run = discover(
        &adapter,
        egress_config(&url),
        &settings(quick_limits(), &["127.0.0.1"], loopback()),
        0,
    )
    .await;
    let error = run.outcome.unwrap_err();
    assert!(
        matches!(
            error.adapter_failure(),
            Some(AdapterFailure::Unavailable(_))
        ),
        "{error}"
    );
    let text = logs.text();
    assert!(text.contains("egress denied"), "{text}");
    assert!(text.contains("host=localhost"), "{text}");
    assert!(text.contains("misbehave@1.0.0"), "{text}");
    assert!(run.devices.is_empty());
}

#[tokio::test]
async fn metadata_endpoint_is_denied_even_when_the_host_is_listed() {
    let adapter = load("sr-test-misbehave").await;
    let logs = LogCapture::default();
    let _guard = logs.install();
    let url = "http://169.254.169.254/latest/meta-data/";
    // The operator listed the address and allowed loopback and link-local:
    // metadata still needs its own explicit permission.
    let permissions = AddressPermissions {
        allow_loopback: true,
        allow_link_local: true,
        ..Default::default()
    };
    let run = discover(
        &adapter,
        egress_config(url),
        &settings(quick_limits(), &["169.254.169.254"], permissions),
        0,
    )
    .await;
    assert!(run.outcome.is_err());
    let text = logs.text();
    assert!(
        text.contains("egress denied") && text.contains("cloud metadata"),
        "{text}"
    );
    assert!(text.contains("host=169.254.169.254"), "{text}");
}

#[tokio::test]
async fn allowed_name_resolving_to_loopback_is_denied() {
    let addr = serve_ok().await;
    let adapter = load("sr-test-misbehave").await;
    let logs = LogCapture::default();
    let _guard = logs.install();
    let url = format!("http://localhost:{}/", addr.port());
    let run = discover(
        &adapter,
        egress_config(&url),
        &settings(quick_limits(), &["localhost"], Default::default()),
        0,
    )
    .await;
    assert!(
        run.outcome.is_err(),
        "localhost resolves to loopback, which is not allowed"
    );
    let text = logs.text();
    assert!(text.contains("loopback"), "{text}");
    assert!(
        text.contains("resolves to 127.0.0.1") || text.contains("resolves to ::1"),
        "{text}"
    );
}

#[tokio::test]
async fn describe_and_generators_get_no_egress_at_all() {
    let addr = serve_ok().await;
    let adapter = load("sr-test-misbehave").await;
    let url = format!("http://127.0.0.1:{}/", addr.port());
    // No hosts allowed: even loopback permission does not open anything.
    let run = discover(
        &adapter,
        egress_config(&url),
        &settings(quick_limits(), &[], loopback()),
        0,
    )
    .await;
    assert!(run.outcome.is_err());
}

#[tokio::test]
async fn validate_is_policed_too() {
    let addr = serve_ok().await;
    let adapter = load("sr-test-misbehave").await;
    let url = format!("http://127.0.0.1:{}/check", addr.port());
    let config = json!({"settings": {"mode": "noop", "validate_url": url}}).to_string();
    let sandbox = crate::support::sandbox();
    let allowed = settings(quick_limits(), &["127.0.0.1"], loopback());
    sandbox
        .validate(&adapter, &config, &allowed)
        .await
        .expect("validate may reach the endpoint");
    let denied = settings(quick_limits(), &["example.com"], loopback());
    let error = sandbox
        .validate(&adapter, &config, &denied)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error.adapter_failure(),
            Some(AdapterFailure::Unavailable(_))
        ),
        "{error}"
    );
}
