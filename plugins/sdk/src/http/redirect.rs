//! Which request a redirect leads to: pure, so it is tested natively.

use super::{HttpError, Method, Request};

/// Headers that carry credentials; they never follow a redirect to
/// another origin.
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// The request to send after a response with `status` and `location`, or
/// `None` when the response is not a redirect to follow (not 301, 302,
/// 303, 307 or 308, or no `Location`).
///
/// 303, and 301/302 after a POST, continue as a GET without a body (what
/// browsers and every HTTP library do); 307 and 308 repeat the method and
/// body. Leaving the origin drops the credential headers.
pub(crate) fn next_hop(
    request: &Request,
    status: u16,
    location: Option<&str>,
) -> Result<Option<Request>, HttpError> {
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return Ok(None);
    }
    let Some(location) = location else {
        return Ok(None);
    };
    let url = request
        .url
        .join(location)
        .map_err(|e| HttpError::BadRedirect {
            method: request.method.as_str(),
            url: request.url.redacted(),
            reason: format!("Location is not a usable http(s) URL: {e}"),
        })?;
    let mut next = request.clone();
    let becomes_get =
        status == 303 || (matches!(status, 301 | 302) && request.method == Method::Post);
    if becomes_get && request.method != Method::Head {
        next.method = Method::Get;
        next.body = None;
        next.headers.retain(|(name, _)| {
            !name.eq_ignore_ascii_case("content-type")
                && !name.eq_ignore_ascii_case("content-length")
        });
    }
    if !request.url.same_origin(&url) {
        next.headers.retain(|(name, _)| {
            !CREDENTIAL_HEADERS
                .iter()
                .any(|c| name.eq_ignore_ascii_case(c))
        });
    }
    next.url = url;
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::Url;

    fn post() -> Request {
        Request::post(Url::parse("https://a.example/api/v1/x?q=1").unwrap())
            .header("Authorization", "secret")
            .header("Cookie", "c=1")
            .header("Accept", "application/json")
            .json(&serde_json::json!({"k": "v"}))
            .unwrap()
    }

    #[test]
    fn only_redirect_statuses_with_a_location_are_followed() {
        assert_eq!(next_hop(&post(), 200, Some("/x")).unwrap(), None);
        assert_eq!(next_hop(&post(), 304, Some("/x")).unwrap(), None);
        assert_eq!(next_hop(&post(), 302, None).unwrap(), None);
    }

    #[test]
    fn relative_locations_resolve_against_the_request_url() {
        let next = next_hop(&post(), 307, Some("y?z=2")).unwrap().unwrap();
        assert_eq!(next.url.to_string(), "https://a.example/api/v1/y?z=2");
        let next = next_hop(&post(), 308, Some("/api/v1/x/")).unwrap().unwrap();
        assert_eq!(next.url.to_string(), "https://a.example/api/v1/x/");
    }

    #[test]
    fn see_other_and_post_redirects_become_bodyless_gets() {
        for status in [301, 302, 303] {
            let next = next_hop(&post(), status, Some("/r")).unwrap().unwrap();
            assert_eq!(next.method, Method::Get, "{status}");
            assert_eq!(next.body, None);
            assert_eq!(next.header_value("content-type"), None);
            assert_eq!(next.header_value("accept"), Some("application/json"));
        }
        for status in [307, 308] {
            let next = next_hop(&post(), status, Some("/r")).unwrap().unwrap();
            assert_eq!(next.method, Method::Post);
            assert_eq!(next.body, post().body);
        }
        let put = Request::new(Method::Put, Url::parse("https://a.example/").unwrap());
        assert_eq!(
            next_hop(&put, 301, Some("/r")).unwrap().unwrap().method,
            Method::Put
        );
    }

    #[test]
    fn credentials_stay_on_the_origin() {
        let same = next_hop(&post(), 307, Some("https://A.example:443/other"))
            .unwrap()
            .unwrap();
        assert_eq!(same.header_value("authorization"), Some("secret"));
        for elsewhere in [
            "https://b.example/x",
            "http://a.example/x",
            "https://a.example:8443/x",
        ] {
            let next = next_hop(&post(), 307, Some(elsewhere)).unwrap().unwrap();
            assert_eq!(next.header_value("authorization"), None, "{elsewhere}");
            assert_eq!(next.header_value("cookie"), None, "{elsewhere}");
            assert_eq!(next.header_value("accept"), Some("application/json"));
        }
    }

    #[test]
    fn unusable_locations_are_errors() {
        let err = next_hop(&post(), 302, Some("ftp://x/")).unwrap_err();
        assert!(matches!(err, HttpError::BadRedirect { .. }), "{err}");
        assert!(!err.to_string().contains("q=1"));
    }
}
