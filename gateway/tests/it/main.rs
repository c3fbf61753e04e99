//! The gateway's integration tests (one binary, one module per area).

mod dire;
