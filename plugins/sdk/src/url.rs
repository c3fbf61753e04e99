//! [`Url`]: absolute `http`/`https` URLs, with correct query encoding and
//! relative-reference resolution, and the percent-encoding helpers behind it.
//!
//! Deliberately small: adapters only ever talk HTTP(S) to hosts an operator
//! configured, so this type accepts exactly that and refuses the rest with
//! a message saying why. (The `url` crate would add about 250 KB of
//! internationalised-domain tables to every component; write non-ASCII
//! host names in punycode, `xn--...`.)

use std::fmt;
use std::net::Ipv6Addr;

/// Why a string is not a usable URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(String);

/// An absolute `http` or `https` URL.
///
/// The path and query are kept percent-encoded as they go on the wire;
/// characters that may not appear there raw (spaces, quotes, non-ASCII, ...)
/// are encoded on parse. A fragment is dropped: it is never sent.
///
/// `Display` prints the whole URL including its query, which may hold
/// secrets for some APIs: use [`Url::redacted`] in logs and errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    https: bool,
    host: String,
    port: Option<u16>,
    path: String,
    query: Option<String>,
}

impl Url {
    /// Parses an absolute `http://` or `https://` URL.
    ///
    /// User info (`user:pass@host`) is refused: send credentials in headers,
    /// where they stay out of logs.
    pub fn parse(input: &str) -> Result<Self, UrlError> {
        let input = input.trim_matches(|c: char| c.is_ascii_whitespace() || c.is_ascii_control());
        if input.chars().any(|c| c.is_ascii_control()) {
            return Err(UrlError(
                "contains control characters (tab, newline, ...)".into(),
            ));
        }
        let Some((scheme, rest)) = input.split_once("://") else {
            return Err(UrlError(format!(
                "`{}` is not an absolute URL: expected http://host/... or https://host/...",
                shorten(input)
            )));
        };
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            other => {
                return Err(UrlError(format!(
                    "unsupported scheme `{}`: use http or https",
                    shorten(other)
                )));
            }
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (host, port) = parse_authority(&rest[..authority_end])?;
        let (path, query) = split_path_query(&rest[authority_end..]);
        let path = if path.is_empty() { "/" } else { path };
        Ok(Self {
            https,
            host,
            port,
            path: remove_dot_segments(&encode_loose(path)),
            query: query.filter(|q| !q.is_empty()).map(encode_loose),
        })
    }

    /// Resolves a reference against this URL the way a browser resolves a
    /// link or a `Location` header (RFC 3986 section 5): `/a`, `b/c`,
    /// `../d`, `?q=1`, `//other.host/x` and absolute URLs all work.
    ///
    /// Note that a relative reference replaces the last path segment:
    /// `https://h/api` joined with `devices` is `https://h/devices`. To
    /// append path segments use [`Url::join_path`].
    pub fn join(&self, reference: &str) -> Result<Self, UrlError> {
        let reference =
            reference.trim_matches(|c: char| c.is_ascii_whitespace() || c.is_ascii_control());
        if has_scheme(reference) {
            return Self::parse(reference);
        }
        if let Some(network_path) = reference.strip_prefix("//") {
            return Self::parse(&format!("{}://{network_path}", self.scheme()));
        }
        let (path, query) = split_path_query(reference);
        let (path, query) = if path.is_empty() {
            (
                self.path.clone(),
                query.map(str::to_string).or_else(|| self.query.clone()),
            )
        } else if path.starts_with('/') {
            (path.to_string(), query.map(str::to_string))
        } else {
            let directory = &self.path[..=self.path.rfind('/').unwrap_or(0)];
            (format!("{directory}{path}"), query.map(str::to_string))
        };
        Ok(Self {
            path: remove_dot_segments(&encode_loose(&path)),
            query: query.filter(|q| !q.is_empty()).map(|q| encode_loose(&q)),
            ..self.clone()
        })
    }

    /// Appends path segments to this URL's path, with exactly one `/`
    /// between them, and drops the query: `https://h/api` +
    /// `dcim/devices/` is `https://h/api/dcim/devices/`. Characters that
    /// may not appear raw in a path are percent-encoded.
    pub fn join_path(&self, segments: &str) -> Self {
        let base = self.path.trim_end_matches('/');
        let tail = segments.trim_start_matches('/');
        Self {
            path: remove_dot_segments(&encode_loose(&format!("{base}/{tail}"))),
            query: None,
            ..self.clone()
        }
    }

    /// This URL with `suffix` (path segments such as `/api/v1`) taken off
    /// the end of its path, so an endpoint may be configured with or
    /// without its API prefix. A trailing `/` is ignored; when the suffix
    /// is there, the path ends in `/` and the query is dropped; otherwise
    /// the URL comes back as it is.
    ///
    /// ```
    /// use sr_adapter_sdk::url::Url;
    ///
    /// for endpoint in ["https://h/api/v1", "https://h/api/v1/", "https://h"] {
    ///     let base = Url::parse(endpoint)?.strip_path_suffix("/api/v1");
    ///     assert_eq!(base.join_path("api/v1/search/").to_string(), "https://h/api/v1/search/");
    /// }
    /// # Ok::<(), sr_adapter_sdk::url::UrlError>(())
    /// ```
    pub fn strip_path_suffix(&self, suffix: &str) -> Self {
        let path = self.path.trim_end_matches('/');
        match path.strip_suffix(suffix) {
            // An absolute path always resolves; the fallback is never taken.
            Some(prefix) => self
                .join(&format!("{prefix}/"))
                .unwrap_or_else(|_| self.clone()),
            None => self.clone(),
        }
    }

    /// Appends `key=value` to the query, percent-encoding both (every
    /// character outside `A-Z a-z 0-9 - . _ ~` is encoded), so values such
    /// as `in:devices after:2024-05-01T10:00:00` arrive intact.
    pub fn with_query_param(mut self, key: &str, value: &str) -> Self {
        let pair = format!("{}={}", encode_component(key), encode_component(value));
        self.query = Some(match self.query.take() {
            Some(existing) => format!("{existing}&{pair}"),
            None => pair,
        });
        self
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }

    /// Whether the scheme is `https`.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The host, lower-case; IPv6 addresses in brackets (`[2001:db8::1]`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port written in the URL, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The port written in the URL, or the scheme's default (443 or 80).
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.https { 443 } else { 80 })
    }

    /// `host` or `host:port`, as sent in the request's authority.
    pub fn authority(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }

    /// The percent-encoded path; always starts with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The percent-encoded query without the `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// Path and query as they go on the request line (`/a/b?c=d`).
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }

    /// The URL without its query (`https://host:8443/api/v1/search/`): safe
    /// to put in logs and error messages.
    pub fn redacted(&self) -> String {
        format!("{}://{}{}", self.scheme(), self.authority(), self.path)
    }

    /// Whether both URLs have the same scheme, host and port. Credentials
    /// must not follow a redirect to another origin.
    pub fn same_origin(&self, other: &Url) -> bool {
        self.https == other.https
            && self.host == other.host
            && self.port_or_default() == other.port_or_default()
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme(), self.authority(), self.path)?;
        if let Some(query) = &self.query {
            write!(f, "?{query}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Url {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Percent-encodes `text` for use as one query key or value (or one path
/// segment): everything except `A-Z a-z 0-9 - . _ ~` becomes `%XX` of its
/// UTF-8 bytes, so `a b&c` becomes `a%20b%26c`.
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            push_escaped(&mut out, byte);
        }
    }
    out
}

/// Serialises pairs as an `application/x-www-form-urlencoded` body (the
/// WHATWG algorithm): space becomes `+`, `A-Z a-z 0-9 * - . _` stay, every
/// other byte becomes `%XX`.
pub fn form_urlencode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut out = String::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        form_encode_into(&mut out, key.as_ref());
        out.push('=');
        form_encode_into(&mut out, value.as_ref());
    }
    out
}

fn form_encode_into(out: &mut String, text: &str) {
    for &byte in text.as_bytes() {
        match byte {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_') => {
                out.push(char::from(b))
            }
            b => push_escaped(out, b),
        }
    }
}

fn push_escaped(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0F)]));
}

/// Encodes what may not appear raw in a path or query (RFC 3986): keeps
/// unreserved characters, sub-delimiters, `: @ / ?` and valid `%XX`
/// escapes; encodes everything else, including a `%` not followed by two
/// hex digits.
fn encode_loose(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    for (i, &byte) in bytes.iter().enumerate() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
                    | b'?'
            )
            || (byte == b'%'
                && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit));
        if keep {
            out.push(char::from(byte));
        } else {
            push_escaped(&mut out, byte);
        }
    }
    out
}

fn has_scheme(reference: &str) -> bool {
    let Some(colon) = reference.find(':') else {
        return false;
    };
    let scheme = &reference[..colon];
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Splits `path?query#fragment`, dropping the fragment.
fn split_path_query(text: &str) -> (&str, Option<&str>) {
    let text = text.split_once('#').map_or(text, |(before, _)| before);
    match text.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (text, None),
    }
}

fn parse_authority(authority: &str) -> Result<(String, Option<u16>), UrlError> {
    if authority.contains('@') {
        return Err(UrlError(
            "user info (user:password@) in URLs is not supported: pass credentials in headers"
                .into(),
        ));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((address, after)) = bracketed.split_once(']') else {
            return Err(UrlError("IPv6 host is missing its closing `]`".into()));
        };
        address
            .parse::<Ipv6Addr>()
            .map_err(|_| UrlError(format!("`[{}]` is not an IPv6 address", shorten(address))))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| {
                UrlError(format!("unexpected `{}` after the IPv6 host", shorten(p)))
            })?),
        };
        (format!("[{}]", address.to_ascii_lowercase()), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_ascii_lowercase(), Some(port)),
            None => (authority.to_ascii_lowercase(), None),
        }
    };
    if host.is_empty() {
        return Err(UrlError("the URL has no host".into()));
    }
    if !host.is_ascii() {
        return Err(UrlError(format!(
            "host `{host}` is not ASCII: write internationalised names in punycode (xn--...)"
        )));
    }
    if !host.starts_with('[')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(UrlError(format!(
            "host `{}` contains characters a host name cannot have",
            shorten(&host)
        )));
    }
    let port = match port {
        None | Some("") => None,
        Some(text) => Some(text.parse::<u16>().map_err(|_| {
            UrlError(format!(
                "port `{}` is not a number from 0 to 65535",
                shorten(text)
            ))
        })?),
    };
    Ok((host, port))
}

/// RFC 3986 section 5.2.4 on a path that starts with `/`.
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let last = segments.len() - 1;
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." | "%2e" | "%2E" => {}
            ".." | ".%2e" | ".%2E" | "%2e." | "%2E." | "%2e%2e" | "%2E%2E" => {
                out.pop();
            }
            other => {
                out.push(other);
                continue;
            }
        }
        if i == last {
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}

/// Keeps error messages short when someone pastes a whole document.
fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn parses_the_parts() {
        let u = url("HTTPS://Inventory.Example.COM:8443/api/v1/search/?aql=in:devices#frag");
        assert!(u.is_https());
        assert_eq!(u.host(), "inventory.example.com");
        assert_eq!(u.port(), Some(8443));
        assert_eq!(u.path(), "/api/v1/search/");
        assert_eq!(u.query(), Some("aql=in:devices"));
        assert_eq!(u.authority(), "inventory.example.com:8443");
        assert_eq!(
            u.to_string(),
            "https://inventory.example.com:8443/api/v1/search/?aql=in:devices"
        );
        assert_eq!(
            u.redacted(),
            "https://inventory.example.com:8443/api/v1/search/"
        );

        let u = url("http://example.com");
        assert_eq!(u.path(), "/");
        assert_eq!(u.port_or_default(), 80);
        assert_eq!(u.to_string(), "http://example.com/");

        let u = url("http://[2001:DB8::1]:8080/x");
        assert_eq!(u.host(), "[2001:db8::1]");
        assert_eq!(u.authority(), "[2001:db8::1]:8080");
        assert_eq!(url("http://127.0.0.1:9/").authority(), "127.0.0.1:9");
    }

    #[test]
    fn encodes_what_may_not_appear_raw() {
        let u = url("https://h/a b/\u{e9}?q=a b\"<>&x=%zz&y=%41");
        assert_eq!(u.path(), "/a%20b/%C3%A9");
        assert_eq!(u.query(), Some("q=a%20b%22%3C%3E&x=%25zz&y=%41"));
    }

    #[test]
    fn refuses_what_is_not_an_http_url() {
        for (input, needle) in [
            ("ftp://h/", "unsupported scheme `ftp`"),
            ("h/path", "not an absolute URL"),
            ("https://user:pw@h/", "user info"),
            ("https://h:99999/", "port `99999`"),
            ("https:///x", "no host"),
            ("https://[::1/", "closing `]`"),
            ("https://[zz]/", "not an IPv6 address"),
            ("https://b\u{fc}cher.example/", "punycode"),
            ("https://a b/", "characters a host name cannot have"),
            ("https://h/a\nb", "control characters"),
        ] {
            let err = Url::parse(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn query_params_are_percent_encoded() {
        let u = url("https://h/api/v1/search/")
            .with_query_param("aql", "in:devices after:2024-05-01T10:00:00")
            .with_query_param("from", "0")
            .with_query_param("k&=", "a+b/c\u{e9}");
        assert_eq!(
            u.query(),
            Some(
                "aql=in%3Adevices%20after%3A2024-05-01T10%3A00%3A00&from=0&k%26%3D=a%2Bb%2Fc%C3%A9"
            )
        );
        let u = url("https://h/x?a=1").with_query_param("b", "2");
        assert_eq!(u.query(), Some("a=1&b=2"));
    }

    #[test]
    fn form_encoding_follows_whatwg() {
        assert_eq!(
            form_urlencode(&[("secret_key", "a b+c&d=e/\u{e9}*~"), ("x", "")]),
            "secret_key=a+b%2Bc%26d%3De%2F%C3%A9*%7E&x="
        );
    }

    #[test]
    fn join_resolves_rfc3986_examples() {
        let base = url("http://a/b/c/d;p?q");
        for (reference, expected) in [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("g#s", "http://a/b/c/g"),
            (";x", "http://a/b/c/;x"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("g/../h", "http://a/b/c/h"),
            ("https://other:444/x?y", "https://other:444/x?y"),
        ] {
            assert_eq!(
                base.join(reference).unwrap().to_string(),
                expected,
                "{reference}"
            );
        }
        assert!(base.join("ftp://x/").is_err());
    }

    #[test]
    fn join_path_appends_segments() {
        let base = url("https://h/api?x=1");
        assert_eq!(
            base.join_path("dcim/devices/").to_string(),
            "https://h/api/dcim/devices/"
        );
        assert_eq!(
            url("https://h/api/").join_path("/devices").to_string(),
            "https://h/api/devices"
        );
        assert_eq!(
            url("https://h").join_path("devices").to_string(),
            "https://h/devices"
        );
        assert_eq!(url("https://h/").join_path("a b").path(), "/a%20b");
    }

    #[test]
    fn strip_path_suffix_accepts_endpoints_with_or_without_the_api_prefix() {
        let strip = |u: &str, suffix: &str| url(u).strip_path_suffix(suffix).to_string();
        assert_eq!(strip("https://h/api/v1", "/api/v1"), "https://h/");
        assert_eq!(
            strip("https://h:8443/api/v1/?x=1", "/api/v1"),
            "https://h:8443/"
        );
        assert_eq!(
            strip("https://h/armis/api/v1", "/api/v1"),
            "https://h/armis/"
        );
        assert_eq!(strip("https://h/netbox/api/", "/api"), "https://h/netbox/");
        // Without the suffix the URL is kept as it is, query included.
        assert_eq!(strip("https://h", "/api"), "https://h/");
        assert_eq!(strip("https://h/x?y=1", "/api"), "https://h/x?y=1");
        assert_eq!(strip("https://h/xapi", "/api"), "https://h/xapi");
        assert_eq!(strip("https://h/api/v2", "/api/v1"), "https://h/api/v2");
    }

    #[test]
    fn same_origin_compares_scheme_host_and_effective_port() {
        assert!(url("https://h/a").same_origin(&url("https://H:443/b")));
        assert!(!url("https://h/a").same_origin(&url("http://h/a")));
        assert!(!url("https://h/a").same_origin(&url("https://h:8443/a")));
        assert!(!url("https://h/a").same_origin(&url("https://g/a")));
    }
}
