//! A small blocking HTTP client over `wasi:http/outgoing-handler`, the only
//! way out of the sandbox.
//!
//! - [`Client::send`] makes one request and follows redirects (301, 302,
//!   303, 307, 308; at most 5 by default). Every hop is a new outgoing
//!   request, so the host's egress policy checks every host. Credentials
//!   (`Authorization`, `Cookie`, `Proxy-Authorization`) are dropped when a
//!   redirect leaves the origin.
//! - [`Client::fetch`] adds status checking and retries with the client's
//!   [`RetryPolicy`]: exponential backoff on 5xx and transport errors,
//!   `Retry-After` on 429, bounded in attempts and total wait.
//! - [`Client::fetch_json`] also decodes a JSON body.
//!
//! ```no_run
//! use sr_adapter_sdk::http::{Client, Request};
//! use sr_adapter_sdk::{AdapterError, Config, NoSettings};
//!
//! fn first_page(config: &Config<NoSettings>) -> Result<serde_json::Value, AdapterError> {
//!     let url = config
//!         .endpoint_url()?
//!         .join_path("api/devices")
//!         .with_query_param("limit", "500");
//!     let token = config.credential("token")?;
//!     let request = Request::get(url).header("Authorization", format!("Bearer {token}"));
//!     Ok(Client::new().fetch_json(&request)?)
//! }
//! ```

mod error;
mod redirect;
mod transport;

use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::retry::RetryPolicy;
use crate::url::{Url, form_urlencode};
pub use error::HttpError;

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

impl Method {
    /// The method name as sent (`GET`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

/// A request to send with a [`Client`].
///
/// Its `Debug` output shows header names only, never their values.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    method: Method,
    url: Url,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: Method, url: Url) -> Self {
        Self {
            method,
            url,
            headers: Vec::new(),
            body: None,
        }
    }

    /// A GET request.
    pub fn get(url: Url) -> Self {
        Self::new(Method::Get, url)
    }

    /// A POST request (add a body with [`Request::json`], [`Request::form`]
    /// or [`Request::body`]).
    pub fn post(url: Url) -> Self {
        Self::new(Method::Post, url)
    }

    /// Sets a header, replacing any earlier value of the same name (names
    /// compare case-insensitively).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the body and its `Content-Type`.
    pub fn body(self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        let mut request = self.header("Content-Type", content_type);
        request.body = Some(body.into());
        request
    }

    /// Sets a JSON body (`Content-Type: application/json`).
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, HttpError> {
        let body = serde_json::to_vec(value).map_err(|e| HttpError::InvalidRequest {
            method: self.method.as_str(),
            url: self.url.redacted(),
            reason: format!("cannot encode the JSON body: {e}"),
        })?;
        Ok(self.body("application/json", body))
    }

    /// Sets an `application/x-www-form-urlencoded` body, percent-encoding
    /// keys and values.
    pub fn form<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> Self {
        self.body("application/x-www-form-urlencoded", form_urlencode(pairs))
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The value of header `name`, if set.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &self.url.redacted())
            .field("headers", &names)
            .field("body_bytes", &self.body.as_ref().map(Vec::len))
            .finish()
    }
}

/// A response, body read in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    method: Method,
    url: Url,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The URL that answered (after redirects).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All headers, names lower-case, in the order received.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body bytes, taken out of the response (no copy), for parsers
    /// that borrow from them.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str, HttpError> {
        std::str::from_utf8(&self.body).map_err(|e| self.decode_error(format!("not UTF-8: {e}")))
    }

    /// The body decoded from JSON. Errors name the JSON path that did not
    /// match (`data.results[3].id: invalid type: ...`).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        let mut deserializer = serde_json::Deserializer::from_slice(&self.body);
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let path = e.path().to_string();
            let reason = if path == "." {
                e.inner().to_string()
            } else {
                format!("{path}: {}", e.inner())
            };
            self.decode_error(reason)
        })
    }

    /// The `Retry-After` header as a wait: seconds, or an HTTP date
    /// measured from now.
    pub fn retry_after(&self) -> Option<Duration> {
        self.header("retry-after")
            .and_then(|v| crate::retry::parse_retry_after(v, SystemTime::now()))
    }

    /// `Ok(self)` for 2xx (and 1xx/3xx that were not followed), an
    /// [`HttpError::Status`] with a body excerpt for 4xx and 5xx.
    pub fn error_for_status(self) -> Result<Self, HttpError> {
        if self.status < 400 {
            return Ok(self);
        }
        Err(HttpError::Status {
            method: self.method.as_str(),
            url: self.url.redacted(),
            status: self.status,
            retry_after: self.retry_after(),
            excerpt: error::excerpt(&self.body),
        })
    }

    fn decode_error(&self, reason: String) -> HttpError {
        HttpError::Decode {
            method: self.method.as_str(),
            url: self.url.redacted(),
            reason,
        }
    }
}

/// Timeouts of one request hop, passed to the host as `wasi:http`
/// request options. A host that does not support an option ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the connection (including TLS).
    pub connect: Duration,
    /// From sending the request to the first byte of the response.
    pub first_byte: Duration,
    /// Between two chunks of the response body.
    pub between_bytes: Duration,
}

impl Default for Timeouts {
    /// 10 s to connect, 60 s to the first byte, 30 s between bytes.
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(60),
            between_bytes: Duration::from_secs(30),
        }
    }
}

/// A blocking HTTP client. Cheap to create and to clone; holds only
/// settings (connections are the host's business).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    timeouts: Timeouts,
    max_body_bytes: usize,
    max_redirects: u32,
    retry: RetryPolicy,
    user_agent: String,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    /// Default response body limit: 32 MiB.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 32 << 20;
    /// Default redirect limit.
    pub const DEFAULT_MAX_REDIRECTS: u32 = 5;

    /// A client with default timeouts, a 32 MiB body limit, at most 5
    /// redirects and the default [`RetryPolicy`].
    pub fn new() -> Self {
        Self {
            timeouts: Timeouts::default(),
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            max_redirects: Self::DEFAULT_MAX_REDIRECTS,
            retry: RetryPolicy::default(),
            user_agent: concat!("sr-adapter-sdk/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }

    /// Sets the timeouts.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Sets the largest response body accepted, in bytes.
    pub fn with_max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// Sets how many redirects to follow (0: none, the 3xx is returned).
    pub fn with_max_redirects(mut self, max: u32) -> Self {
        self.max_redirects = max;
        self
    }

    /// Sets the retry policy of [`Client::fetch`] and [`Client::fetch_json`].
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Sets the `User-Agent` sent when a request has none.
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Sends the request once, following redirects; answers whatever status
    /// the source returned. No retries.
    pub fn send(&self, request: &Request) -> Result<Response, HttpError> {
        let mut hop = request.clone();
        if hop.header_value("user-agent").is_none() {
            hop = hop.header("User-Agent", self.user_agent.as_str());
        }
        let mut redirects = 0;
        loop {
            let response = transport::round_trip(&hop, &self.timeouts, self.max_body_bytes)?;
            if self.max_redirects == 0 {
                return Ok(response);
            }
            let Some(next) =
                redirect::next_hop(&hop, response.status, response.header("location"))?
            else {
                return Ok(response);
            };
            if redirects >= self.max_redirects {
                return Err(HttpError::TooManyRedirects {
                    method: request.method.as_str(),
                    url: request.url.redacted(),
                    max: self.max_redirects,
                });
            }
            redirects += 1;
            hop = next;
        }
    }

    /// Sends the request, turns 4xx/5xx into [`HttpError::Status`], and
    /// retries transient failures with the client's [`RetryPolicy`]. Each
    /// retry is logged at `warn`.
    pub fn fetch(&self, request: &Request) -> Result<Response, HttpError> {
        self.retry
            .run(|| self.send(request).and_then(Response::error_for_status))
    }

    /// [`Client::fetch`], then decodes the body as JSON. Sends
    /// `Accept: application/json` unless the request sets `Accept`.
    pub fn fetch_json<T: DeserializeOwned>(&self, request: &Request) -> Result<T, HttpError> {
        let response = if request.header_value("accept").is_some() {
            self.fetch(request)?
        } else {
            self.fetch(&request.clone().header("Accept", "application/json"))?
        };
        response.json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            method: Method::Get,
            url: Url::parse("https://h/api/devices?token=secret").unwrap(),
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn error_for_status_keeps_successes_and_describes_failures() {
        assert!(response(200, &[], "{}").error_for_status().is_ok());
        assert!(response(304, &[], "").error_for_status().is_ok());
        let err = response(429, &[("retry-after", "12")], "slow down")
            .error_for_status()
            .unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(12)));
        let text = err.to_string();
        assert_eq!(
            text,
            "GET https://h/api/devices answered 429 Too Many Requests: slow down"
        );
        assert!(!text.contains("secret"));
    }

    #[test]
    fn json_errors_name_the_path() {
        #[derive(serde::Deserialize, Debug)]
        struct Page {
            #[allow(dead_code)]
            results: Vec<Item>,
        }
        #[derive(serde::Deserialize, Debug)]
        struct Item {
            #[allow(dead_code)]
            id: u64,
        }
        let err = response(200, &[], r#"{"results":[{"id":1},{"id":"x"}]}"#)
            .json::<Page>()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "GET https://h/api/devices: cannot read the response: results[1].id: invalid type: string \"x\", expected u64 at line 1 column 30"
        );
        let err = response(200, &[], "<html>").json::<Page>().unwrap_err();
        assert!(err.to_string().contains("expected value"), "{err}");
    }

    #[test]
    fn request_builders_set_headers_and_bodies() {
        let url = Url::parse("https://h/token").unwrap();
        let r = Request::post(url.clone())
            .header("authorization", "one")
            .header("Authorization", "two")
            .form(&[("secret_key", "a b&c")]);
        assert_eq!(r.header_value("AUTHORIZATION"), Some("two"));
        assert_eq!(
            r.header_value("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(r.body.as_deref(), Some(&b"secret_key=a+b%26c"[..]));
        let debug = format!("{r:?}");
        assert!(
            !debug.contains("two") && !debug.contains("secret_key="),
            "{debug}"
        );

        let r = Request::post(url)
            .json(&serde_json::json!({"a": 1}))
            .unwrap();
        assert_eq!(r.header_value("content-type"), Some("application/json"));
        assert_eq!(r.body.as_deref(), Some(&br#"{"a":1}"#[..]));
    }
}
