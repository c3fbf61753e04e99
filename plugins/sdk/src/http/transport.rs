//! One request/response exchange over `wasi:http/outgoing-handler`.
//!
//! Resource order matters to the host: a child (a stream, a headers view)
//! must be dropped before its parent, so every step below releases what it
//! opened before moving on.

use std::time::Duration;

use super::{HttpError, Method, Request, Response, Timeouts};
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    self as wasi, ErrorCode, Fields, IncomingBody, OutgoingBody, OutgoingRequest, RequestOptions,
    Scheme,
};
use crate::bindings::wasi::io::streams::StreamError;

/// `wasi:io` streams accept at most 4096 bytes per blocking write.
const WRITE_CHUNK: usize = 4096;
/// Bytes asked for per read of the response body.
const READ_CHUNK: u64 = 64 * 1024;

/// Sends `request` once (no redirects, no retries) and reads the whole
/// response, refusing bodies over `max_body_bytes`.
pub(crate) fn round_trip(
    request: &Request,
    timeouts: &Timeouts,
    max_body_bytes: usize,
) -> Result<Response, HttpError> {
    let method = request.method.as_str();
    let url = request.url.redacted();
    let invalid = |reason: String| HttpError::InvalidRequest {
        method,
        url: url.clone(),
        reason,
    };

    let headers = Fields::new();
    for (name, value) in &request.headers {
        headers
            .append(&name.to_ascii_lowercase(), value.as_bytes())
            .map_err(|e| invalid(format!("header `{name}` refused: {e:?}")))?;
    }
    if let Some(body) = &request.body {
        headers
            .set("content-length", &[body.len().to_string().into_bytes()])
            .map_err(|e| invalid(format!("header `content-length` refused: {e:?}")))?;
    }

    let outgoing = OutgoingRequest::new(headers);
    outgoing
        .set_method(&wasi_method(request.method))
        .map_err(|()| invalid("the host refused the method".into()))?;
    let scheme = if request.url.is_https() {
        Scheme::Https
    } else {
        Scheme::Http
    };
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("the host refused the scheme".into()))?;
    outgoing
        .set_authority(Some(&request.url.authority()))
        .map_err(|()| invalid("the host refused the host name or port".into()))?;
    outgoing
        .set_path_with_query(Some(&request.url.path_and_query()))
        .map_err(|()| invalid("the host refused the path or query".into()))?;

    let body = match &request.body {
        Some(_) => Some(
            outgoing
                .body()
                .map_err(|()| invalid("the request body was already taken".into()))?,
        ),
        None => None,
    };

    let transport = |code: ErrorCode| transport_error(method, &url, &code);
    let future =
        outgoing_handler::handle(outgoing, Some(request_options(timeouts))).map_err(transport)?;

    if let (Some(body), Some(bytes)) = (body, &request.body) {
        write_body(&body, bytes).map_err(|reason| HttpError::Transport {
            method,
            url: url.clone(),
            code: reason,
            transient: true,
        })?;
        OutgoingBody::finish(body, None).map_err(transport)?;
    }

    let pollable = future.subscribe();
    pollable.block();
    drop(pollable);
    let incoming = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(transport(code)),
        Some(Err(())) | None => {
            return Err(HttpError::Transport {
                method,
                url,
                code: "the host returned no response".into(),
                transient: true,
            });
        }
    };
    drop(future);

    let status = incoming.status();
    let fields = incoming.headers();
    let headers: Vec<(String, String)> = fields
        .entries()
        .into_iter()
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(&value).into_owned(),
            )
        })
        .collect();
    drop(fields);

    let too_large = || HttpError::BodyTooLarge {
        method,
        url: url.clone(),
        limit: max_body_bytes,
    };
    let declared = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body_bytes as u64) {
        return Err(too_large());
    }

    let body = incoming
        .consume()
        .map_err(|()| invalid("the response body was already consumed".into()))?;
    let bytes = read_body(&body, max_body_bytes).map_err(|failure| match failure {
        ReadFailure::TooLarge => too_large(),
        ReadFailure::Stream(code) => HttpError::Transport {
            method,
            url: url.clone(),
            code: format!("reading the response body: {code}"),
            transient: true,
        },
    })?;
    drop(IncomingBody::finish(body));
    drop(incoming);

    Ok(Response {
        method: request.method,
        url: request.url.clone(),
        status,
        headers,
        body: bytes,
    })
}

fn wasi_method(method: Method) -> wasi::Method {
    match method {
        Method::Get => wasi::Method::Get,
        Method::Head => wasi::Method::Head,
        Method::Post => wasi::Method::Post,
        Method::Put => wasi::Method::Put,
        Method::Patch => wasi::Method::Patch,
        Method::Delete => wasi::Method::Delete,
    }
}

/// Timeouts the host does not support are left unset: the host's own
/// limits still apply.
fn request_options(timeouts: &Timeouts) -> RequestOptions {
    let options = RequestOptions::new();
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let _ = options.set_connect_timeout(Some(nanos(timeouts.connect)));
    let _ = options.set_first_byte_timeout(Some(nanos(timeouts.first_byte)));
    let _ = options.set_between_bytes_timeout(Some(nanos(timeouts.between_bytes)));
    options
}

fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<(), String> {
    let stream = body
        .write()
        .map_err(|()| "the request body stream was already taken".to_string())?;
    for chunk in bytes.chunks(WRITE_CHUNK) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(|e| format!("writing the request body: {}", stream_error(e)))?;
    }
    Ok(())
}

enum ReadFailure {
    TooLarge,
    Stream(String),
}

fn read_body(body: &IncomingBody, max_body_bytes: usize) -> Result<Vec<u8>, ReadFailure> {
    let stream = body
        .stream()
        .map_err(|()| ReadFailure::Stream("the response body stream was already taken".into()))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => {
                if bytes.len() + chunk.len() > max_body_bytes {
                    return Err(ReadFailure::TooLarge);
                }
                bytes.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => return Ok(bytes),
            Err(e) => return Err(ReadFailure::Stream(stream_error(e))),
        }
    }
}

fn stream_error(error: StreamError) -> String {
    match error {
        StreamError::Closed => "stream closed".to_string(),
        StreamError::LastOperationFailed(e) => match wasi::http_error_code(&e) {
            Some(code) => describe_code(&code),
            None => e.to_debug_string(),
        },
    }
}

fn transport_error(method: &'static str, url: &str, code: &ErrorCode) -> HttpError {
    let url = url.to_string();
    let text = describe_code(code);
    match code {
        ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => HttpError::Denied {
            method,
            url,
            code: text,
        },
        ErrorCode::HttpRequestUriInvalid
        | ErrorCode::HttpRequestUriTooLong
        | ErrorCode::HttpRequestMethodInvalid
        | ErrorCode::HttpRequestHeaderSectionSize(_)
        | ErrorCode::HttpRequestHeaderSize(_)
        | ErrorCode::ConfigurationError => HttpError::InvalidRequest {
            method,
            url,
            reason: text,
        },
        _ => HttpError::Transport {
            method,
            url,
            code: text,
            transient: !matches!(
                code,
                ErrorCode::TlsCertificateError
                    | ErrorCode::TlsProtocolError
                    | ErrorCode::TlsAlertReceived(_)
                    | ErrorCode::DestinationIpUnroutable
                    | ErrorCode::HttpResponseBodySize(_)
                    | ErrorCode::HttpResponseHeaderSectionSize(_)
                    | ErrorCode::HttpResponseHeaderSize(_)
                    | ErrorCode::LoopDetected
            ),
        },
    }
}

/// A short, readable form of a `wasi:http` error code.
fn describe_code(code: &ErrorCode) -> String {
    match code {
        ErrorCode::DnsTimeout => "DNS timeout".into(),
        ErrorCode::DnsError(p) => match (&p.rcode, p.info_code) {
            (Some(rcode), _) => format!("DNS error ({rcode})"),
            (None, Some(info)) => format!("DNS error (info code {info})"),
            (None, None) => "DNS error".into(),
        },
        ErrorCode::DestinationNotFound => "destination not found".into(),
        ErrorCode::DestinationUnavailable => "destination unavailable".into(),
        ErrorCode::DestinationIpProhibited => "destination IP prohibited".into(),
        ErrorCode::DestinationIpUnroutable => "destination IP unroutable".into(),
        ErrorCode::ConnectionRefused => "connection refused".into(),
        ErrorCode::ConnectionTerminated => "connection terminated".into(),
        ErrorCode::ConnectionTimeout => "connect timeout".into(),
        ErrorCode::ConnectionReadTimeout => "read timeout".into(),
        ErrorCode::ConnectionWriteTimeout => "write timeout".into(),
        ErrorCode::HttpResponseTimeout => "response timeout".into(),
        ErrorCode::HttpRequestDenied => "request denied".into(),
        ErrorCode::TlsCertificateError => "TLS certificate error".into(),
        ErrorCode::TlsProtocolError => "TLS protocol error".into(),
        ErrorCode::TlsAlertReceived(p) => format!(
            "TLS alert received{}",
            p.alert_message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ),
        ErrorCode::InternalError(Some(message)) => message.clone(),
        other => format!("{other:?}"),
    }
}
