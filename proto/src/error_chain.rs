//! Error messages that keep their causes: the top of a transport error says
//! little ("transport error", "error sending request"), and the reason an
//! operator can act on (connection refused, unknown CA, expired
//! certificate) is further down the chain.

use std::error::Error;

/// `text` followed by each cause in the chain from `source` whose text it
/// does not already contain, joined with `": "`.
pub fn with_causes(mut text: String, mut source: Option<&(dyn Error + 'static)>) -> String {
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// A call's status message followed by its causes (see [`with_causes`]).
pub fn status_with_causes(status: &tonic::Status) -> String {
    with_causes(status.message().to_string(), status.source())
}
