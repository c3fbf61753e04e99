//! The wasmtime engine and the epoch ticker that drives CPU deadlines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, OptLevel};

/// Builds the one engine all adapters share.
pub fn build_engine() -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // CPU deadlines: the ticker bumps the epoch; a run traps (or yields to
    // the executor) when its deadline passes.
    config.epoch_interruption(true);
    config.parallel_compilation(true);
    config.cranelift_opt_level(OptLevel::Speed);
    // Deep recursion in a guest is a trap, not a host stack overflow.
    config.max_wasm_stack(1 << 20);
    config.async_stack_size(2 << 20);
    Engine::new(&config)
}

/// Increments the engine's epoch at a fixed interval until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engine` every `tick`.
    pub fn start(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("sr-epoch-ticker".to_string())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
