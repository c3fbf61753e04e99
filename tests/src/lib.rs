//! The end-to-end suite lives in `it/`; this crate has no library code.
