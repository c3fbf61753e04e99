//! Per-run resource limits and the memory limiter that enforces them.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits of one adapter call. Host defaults, tightened per integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunLimits {
    /// Largest size of a linear memory, in MiB.
    pub memory_mb: u64,
    /// CPU time the guest may spend executing, in seconds (epoch-measured).
    pub cpu_secs: u64,
    /// Wall-clock time of the whole call, in seconds, including time spent
    /// waiting on the network or on delivery.
    pub wall_clock_secs: u64,
    /// Devices one run may emit.
    pub max_devices: u64,
    /// Bytes of device data one run may emit (sum of all string fields), in MiB.
    pub max_emit_mb: u64,
}

impl Default for RunLimits {
    fn default() -> Self {
        Self {
            memory_mb: 256,
            cpu_secs: 600,
            wall_clock_secs: 3_600,
            max_devices: 10_000_000,
            max_emit_mb: 8_192,
        }
    }
}

impl RunLimits {
    /// Limits for `describe`: tiny, no egress, no emits.
    pub fn for_describe() -> Self {
        Self {
            memory_mb: 64,
            cpu_secs: 5,
            wall_clock_secs: 10,
            max_devices: 0,
            max_emit_mb: 0,
        }
    }

    /// The stricter of two limit sets, field by field: an integration can
    /// tighten host defaults, never loosen them.
    pub fn tightened_by(self, other: &RunLimits) -> RunLimits {
        RunLimits {
            memory_mb: self.memory_mb.min(other.memory_mb),
            cpu_secs: self.cpu_secs.min(other.cpu_secs),
            wall_clock_secs: self.wall_clock_secs.min(other.wall_clock_secs),
            max_devices: self.max_devices.min(other.max_devices),
            max_emit_mb: self.max_emit_mb.min(other.max_emit_mb),
        }
    }

    /// Memory cap in bytes.
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
    }

    /// Emitted-bytes cap in bytes.
    pub fn max_emit_bytes(&self) -> u64 {
        self.max_emit_mb.saturating_mul(1024 * 1024)
    }

    /// CPU budget.
    pub fn cpu(&self) -> Duration {
        Duration::from_secs(self.cpu_secs)
    }

    /// Wall-clock budget.
    pub fn wall_clock(&self) -> Duration {
        Duration::from_secs(self.wall_clock_secs)
    }
}

/// Which limit ended a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// Linear memory would have grown past the cap.
    Memory {
        /// The cap, bytes.
        cap: usize,
        /// The size the guest asked for, bytes.
        requested: usize,
    },
    /// The guest executed longer than its CPU budget.
    Cpu {
        /// The budget.
        budget: Duration,
    },
    /// The call took longer than its wall-clock budget.
    WallClock {
        /// The budget.
        budget: Duration,
    },
    /// The run emitted more devices than allowed.
    Devices {
        /// The cap.
        max: u64,
    },
    /// The run emitted more bytes of device data than allowed.
    Bytes {
        /// The cap, bytes.
        max: u64,
    },
    /// A table would have grown past the cap.
    Table {
        /// The cap, elements.
        cap: usize,
    },
}

impl fmt::Display for LimitHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory { cap, requested } => write!(
                f,
                "memory limit: linear memory would grow to {} MiB, over the {} MiB cap (limits.memory_mb)",
                requested / (1024 * 1024),
                cap / (1024 * 1024)
            ),
            Self::Cpu { budget } => write!(
                f,
                "CPU limit: the adapter computed for more than {}s (limits.cpu_secs)",
                budget.as_secs()
            ),
            Self::WallClock { budget } => write!(
                f,
                "wall-clock limit: the call ran longer than {}s (limits.wall_clock_secs)",
                budget.as_secs()
            ),
            Self::Devices { max } => write!(
                f,
                "device limit: the run emitted more than {max} devices (limits.max_devices)"
            ),
            Self::Bytes { max } => write!(
                f,
                "emitted-bytes limit: the run emitted more than {} MiB of device data (limits.max_emit_mb)",
                max / (1024 * 1024)
            ),
            Self::Table { cap } => write!(f, "table limit: a table would grow past {cap} elements"),
        }
    }
}

/// Error raised inside the guest when a limit is hit; it unwinds the call as
/// a trap and the run reports the recorded [`LimitHit`].
#[derive(Debug)]
pub struct LimitTrap(pub LimitHit);

impl fmt::Display for LimitTrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for LimitTrap {}

const MAX_TABLE_ELEMENTS: usize = 100_000;
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 8;

/// Enforces the memory and table caps of one store and remembers which one
/// was hit.
#[derive(Debug)]
pub struct MemoryLimiter {
    memory_cap: usize,
    /// The limit that ended the run, if any.
    pub hit: Option<LimitHit>,
}

impl MemoryLimiter {
    /// A limiter capping each linear memory at `memory_cap` bytes.
    pub fn new(memory_cap: usize) -> Self {
        Self {
            memory_cap,
            hit: None,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            let hit = LimitHit::Memory {
                cap: self.memory_cap,
                requested: desired,
            };
            self.hit = Some(hit);
            // An error (not `Ok(false)`) traps at once, so the run fails with
            // this cause instead of a guest abort that hides it.
            return Err(wasmtime::Error::new(LimitTrap(hit)));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            let hit = LimitHit::Table {
                cap: MAX_TABLE_ELEMENTS,
            };
            self.hit = Some(hit);
            return Err(wasmtime::Error::new(LimitTrap(hit)));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integration_limits_only_tighten() {
        let host = RunLimits::default();
        let tighter = RunLimits {
            memory_mb: 64,
            cpu_secs: 10_000,
            ..host
        };
        let merged = host.tightened_by(&tighter);
        assert_eq!(merged.memory_mb, 64);
        assert_eq!(merged.cpu_secs, host.cpu_secs);
    }

    #[test]
    fn limit_messages_name_the_setting() {
        let text = LimitHit::Memory {
            cap: 64 << 20,
            requested: 128 << 20,
        }
        .to_string();
        assert!(
            text.contains("64 MiB") && text.contains("limits.memory_mb"),
            "{text}"
        );
        assert!(
            LimitHit::Devices { max: 5 }
                .to_string()
                .contains("limits.max_devices")
        );
    }
}
