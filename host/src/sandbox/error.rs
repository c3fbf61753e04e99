//! Errors of loading and running adapters. Every message names the adapter
//! and says what went wrong in terms an adapter author or operator can act on.

use std::fmt;

use serde::Serialize;
use thiserror::Error;

use super::limits::LimitHit;
use super::world::WorldMismatch;

/// Why a component could not be loaded as an adapter.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The bytes are not WebAssembly at all.
    #[error(
        "not a WebAssembly file (no \\0asm header); expected an adapter component built for wasm32-wasip2"
    )]
    NotWasm,
    /// A core module instead of a component.
    #[error(
        "this is a core WebAssembly module, not a component; build the adapter with `cargo build --target wasm32-wasip2` (or another WASI 0.2 component toolchain)"
    )]
    CoreModule,
    /// Compilation failed (invalid or unsupported component).
    #[error("the component could not be compiled: {0}")]
    Compile(String),
    /// The component does not implement the adapter world.
    #[error("the component does not implement the serviceradar:adapter/adapter world: {0}")]
    World(#[from] WorldMismatch),
    /// Linking failed (an import the host does not provide, a type mismatch).
    #[error("the component cannot be linked against the host: {0}")]
    Link(String),
    /// `describe` failed.
    #[error("describe() failed: {0}")]
    Describe(Box<RunError>),
    /// `describe` returned something unusable.
    #[error("describe() returned an invalid description: {0}")]
    Description(String),
}

/// The adapter's own error, as returned by `validate` or `discover`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum AdapterFailure {
    /// The configuration is wrong.
    InvalidConfig(String),
    /// Credentials were rejected.
    Unauthorized(String),
    /// The source is unreachable or failing.
    Unavailable(String),
    /// The source is rate limiting; retry after the given seconds.
    RateLimited {
        /// Seconds to wait.
        retry_after_secs: u32,
        /// What was being fetched.
        message: String,
    },
    /// The source answered something unexpected.
    Protocol(String),
    /// A bug inside the adapter.
    Internal(String),
}

impl AdapterFailure {
    /// Short kind name (`invalid-config`, `unauthorized`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidConfig(_) => "invalid-config",
            Self::Unauthorized(_) => "unauthorized",
            Self::Unavailable(_) => "unavailable",
            Self::RateLimited { .. } => "rate-limited",
            Self::Protocol(_) => "protocol",
            Self::Internal(_) => "internal",
        }
    }

    /// Whether retrying without a configuration change can help.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::RateLimited { .. } | Self::Protocol(_) | Self::Internal(_)
        )
    }
}

impl fmt::Display for AdapterFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidConfig(m) => write!(f, "invalid configuration: {m}"),
            Self::Unauthorized(m) => write!(f, "unauthorized: {m}"),
            Self::Unavailable(m) => write!(f, "source unavailable: {m}"),
            Self::RateLimited {
                retry_after_secs,
                message,
            } => write!(
                f,
                "rate limited (retry after {retry_after_secs}s): {message}"
            ),
            Self::Protocol(m) => write!(f, "protocol error: {m}"),
            Self::Internal(m) => write!(f, "internal adapter error: {m}"),
        }
    }
}

/// Why an adapter call failed. The host process and other runs are never
/// affected; only this call is.
#[derive(Debug, Error)]
pub enum RunError {
    /// A resource limit ended the call.
    #[error("adapter {adapter}: {hit}")]
    Limit {
        /// `name@version` of the adapter.
        adapter: String,
        /// Which limit.
        hit: LimitHit,
    },
    /// The guest trapped (panic, unreachable, out-of-bounds access, ...).
    #[error("adapter {adapter} crashed: {message}")]
    Trap {
        /// `name@version` of the adapter.
        adapter: String,
        /// The trap and, when the guest printed one, its panic message.
        message: String,
    },
    /// The adapter returned an error.
    #[error("adapter {adapter}: {failure}")]
    Adapter {
        /// `name@version` of the adapter.
        adapter: String,
        /// The adapter's error.
        failure: AdapterFailure,
    },
    /// The consumer of the run's devices stopped (delivery failed).
    #[error("adapter {adapter}: the run was stopped because its devices could not be delivered")]
    DeliveryStopped {
        /// `name@version` of the adapter.
        adapter: String,
    },
    /// The component could not be instantiated.
    #[error("adapter {adapter}: could not be instantiated: {message}")]
    Instantiate {
        /// `name@version` of the adapter.
        adapter: String,
        /// Cause.
        message: String,
    },
}

impl RunError {
    /// The adapter's own failure, if that is what this is.
    pub fn adapter_failure(&self) -> Option<&AdapterFailure> {
        match self {
            Self::Adapter { failure, .. } => Some(failure),
            _ => None,
        }
    }

    /// The limit that ended the call, if that is what this is.
    pub fn limit(&self) -> Option<LimitHit> {
        match self {
            Self::Limit { hit, .. } => Some(*hit),
            _ => None,
        }
    }
}

/// Why the sandbox itself could not be set up.
#[derive(Debug, Error)]
pub enum SandboxError {
    /// The wasmtime engine could not be created.
    #[error("creating the WebAssembly engine: {0}")]
    Engine(String),
    /// The linker could not be set up.
    #[error("setting up host imports: {0}")]
    Linker(String),
    /// TLS configuration for adapter egress failed.
    #[error("setting up TLS for adapter egress: {0}")]
    Tls(String),
}
