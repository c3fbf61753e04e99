//! Waiting without burning CPU.

use std::time::Duration;

use crate::bindings::wasi::clocks::monotonic_clock;

/// Blocks the adapter for `duration` on a `wasi:clocks` monotonic-clock
/// pollable: the host parks the call, no busy waiting. The run's wall-clock
/// limits still apply while it waits.
pub fn sleep(duration: Duration) {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return;
    }
    monotonic_clock::subscribe_duration(nanos).block();
}
