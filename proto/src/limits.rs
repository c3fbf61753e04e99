//! Size limits of the protocol, shared so sender and receiver agree.

/// Target payload size of one results chunk. The sender keeps each chunk's
/// JSON array at or below this.
pub const CHUNK_TARGET_BYTES: usize = 1024 * 1024;

/// The gateway refuses a single results payload larger than this.
pub const MAX_RESULTS_PAYLOAD_BYTES: usize = 15 * 1024 * 1024;

/// The gateway refuses a stream carrying more service statuses than this.
pub const MAX_SERVICES_PER_STREAM: usize = 5_000;

/// gRPC message size both sides configure (the results payload limit plus
/// room for the envelope).
pub const MAX_GRPC_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Service name of sync results and heartbeats.
pub const SYNC_SERVICE_NAME: &str = "sync";

/// Service type of sync results and heartbeats.
pub const SYNC_SERVICE_TYPE: &str = "sync";

/// Service name of a sync run lifecycle report (see [`crate::run_report`]).
pub const SYNC_RUN_SERVICE_NAME: &str = "sync-run";

/// `source` of a results payload.
pub const SOURCE_RESULTS: &str = "results";

/// `source` of a status payload (heartbeats, run reports).
pub const SOURCE_STATUS: &str = "status";
