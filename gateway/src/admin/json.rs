//! The JSON body extractor of the admin API: strict (unknown fields are
//! refused by the request types), and every failure is problem JSON naming
//! the field when serde knows it.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use super::problem::Problem;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A JSON request body.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(kind) = req.headers().get(header::CONTENT_TYPE) {
            let kind = kind.to_str().unwrap_or_default().to_ascii_lowercase();
            let essence = kind
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(Problem::new(
                    axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported media type",
                    format!("send the body as application/json, not {essence}"),
                ));
            }
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| Problem::bad_request(format!("reading the request body: {e}")))?;
        if bytes.len() > MAX_BODY_BYTES {
            return Err(Problem::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "body too large",
                format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
            ));
        }
        parse(&bytes).map(ApiJson)
    }
}

/// Parses a body (a JSON object: every request body of this API is one),
/// turning serde errors into problems naming the field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    // serde would otherwise accept an array for a struct, field by position.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        None => {
            return Err(Problem::new(
                axum::http::StatusCode::BAD_REQUEST,
                "malformed JSON",
                "the body is empty; send a JSON object",
            ));
        }
        Some(_) => {
            return Err(Problem::new(
                axum::http::StatusCode::BAD_REQUEST,
                "malformed JSON",
                "the body must be a JSON object",
            ));
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return Problem::new(
                axum::http::StatusCode::BAD_REQUEST,
                "malformed JSON",
                format!("the body is not valid JSON: {inner}"),
            );
        }
        let message = inner.to_string();
        let field = field_of(&path, &message);
        let mut problem = Problem::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid request body",
            match &field {
                Some(f) => format!("{f}: {message}"),
                None => message.clone(),
            },
        );
        problem.field = field;
        problem
    })?;
    de.end().map_err(|e| {
        Problem::new(
            axum::http::StatusCode::BAD_REQUEST,
            "malformed JSON",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    Ok(value)
}

/// The field a serde error is about: the path, extended by the name in
/// "unknown field `x`" / "missing field `x`" messages (those point at the
/// enclosing object).
fn field_of(path: &str, message: &str) -> Option<String> {
    let named = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    match (path, named) {
        (".", Some(name)) => Some(name.to_string()),
        (".", None) => None,
        // serde_path_to_error already ends the path with an unknown field.
        (p, Some(name)) if p == name || p.ends_with(&format!(".{name}")) => Some(p.to_string()),
        (p, Some(name)) => Some(format!("{p}.{name}")),
        (p, None) => Some(p.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integration_sources::CreateSource;

    #[test]
    fn unknown_and_missing_fields_are_named() {
        let p =
            parse::<CreateSource>(br#"{"name":"a","type":"faker","colour":"red"}"#).unwrap_err();
        assert_eq!(p.status, 400);
        assert_eq!(p.field.as_deref(), Some("colour"));
        let p = parse::<CreateSource>(br#"{"type":"faker"}"#).unwrap_err();
        assert_eq!(p.field.as_deref(), Some("name"));
        let p = parse::<CreateSource>(
            br#"{"name":"a","type":"faker","queries":[{"label":"l","query":"q","bogus":1}]}"#,
        )
        .unwrap_err();
        assert_eq!(p.field.as_deref(), Some("queries[0].bogus"));
    }

    #[test]
    fn wrong_types_name_the_field() {
        let p =
            parse::<CreateSource>(br#"{"name":"a","type":"faker","page_size":"ten"}"#).unwrap_err();
        assert_eq!(p.field.as_deref(), Some("page_size"));
        let p = parse::<CreateSource>(br#"{"name":"a","type":"faker","sync_service_id":"nope"}"#)
            .unwrap_err();
        assert_eq!(p.field.as_deref(), Some("sync_service_id"));
    }

    #[test]
    fn malformed_json_is_a_400_without_field() {
        for body in [
            &b"{"[..],
            b"{\"name\": }",
            b"[1,2]",
            br#"{"name":"a","type":"faker"} x"#,
            b"",
            b"42",
        ] {
            let p = parse::<CreateSource>(body).unwrap_err();
            assert_eq!(p.status, 400, "{body:?}");
            assert_eq!(p.title, "malformed JSON");
            assert_eq!(p.field, None);
        }
    }
}
