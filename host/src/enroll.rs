//! `sr-sync enroll --token <t> --dir <dir>`: redeems an edge enrollment
//! token (the client lives in `sr_proto::enrollment::client`, shared with
//! `sr-agent`).

pub use sr_proto::enrollment::client::*;
pub use sr_proto::enrollment::{CA_FILE, CERT_FILE, KEY_FILE};
