//! The sandbox: compiles adapter components once and runs every call in a
//! fresh `Store` under per-run limits.
//!
//! - memory: a cap per linear memory ([`limits::MemoryLimiter`]);
//! - CPU: epoch interruption — the guest yields to the executor every tick
//!   (so one busy guest cannot starve others) and traps when its budget of
//!   ticks is spent;
//! - wall clock: a timeout around the whole call;
//! - output: caps on emitted devices and bytes, enforced in `emit`;
//! - I/O: WASI with nothing granted, egress only through policed wasi:http.
//!
//! A trap, timeout or limit fails that call only, with a [`RunError`] that
//! names the limit and the adapter.

pub mod bindings;
mod engine;
pub mod error;
pub mod limits;
mod state;
pub mod world;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store, UpdateDeadline};

pub use self::bindings::serviceradar::adapter::types::Device;
use self::bindings::serviceradar::adapter::types::{
    AdapterError, DiscoverRequest, DiscoverSummary,
};
use self::bindings::{Adapter, AdapterPre};
use self::engine::EpochTicker;
pub use self::error::{AdapterFailure, LoadError, RunError, SandboxError};
use self::limits::LimitTrap;
pub use self::limits::{LimitHit, RunLimits};
pub(crate) use self::state::RunState;
pub use self::state::{MAX_CURSOR_BYTES, RunEvent};
use self::world::ComponentInterface;
use crate::adapter::{AdapterDescription, Digest, LoadedAdapter};
use crate::egress::policy::EgressPolicy;
use crate::egress::send::{EgressCounters, EgressHooks, tls_client_config};

/// Who a run is for, stamped on every log record and egress decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunLabel {
    /// `name@version` of the adapter.
    pub adapter: String,
    /// Tenant slug (empty for local runs).
    pub tenant: String,
    /// Integration source name (empty for local runs).
    pub integration: String,
    /// Run id.
    pub run_id: String,
}

/// How the sandbox is set up.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Epoch tick: the granularity of CPU accounting and of yielding.
    pub epoch_tick: Duration,
    /// Extra CA certificates (PEM) trusted for adapter HTTPS egress.
    pub extra_ca_pem: Vec<Vec<u8>>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            epoch_tick: Duration::from_millis(10),
            extra_ca_pem: Vec::new(),
        }
    }
}

/// What one call may do: limits, egress, and who it is for.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Tenant, integration and run id for logs (the adapter is filled in).
    pub label: RunLabel,
    /// Limits of the call.
    pub limits: RunLimits,
    /// Hosts and addresses the call may reach.
    pub egress: Arc<EgressPolicy>,
}

impl RunSettings {
    /// Settings for a local run: default limits, the given egress policy.
    pub fn local(run_id: impl Into<String>, egress: EgressPolicy) -> Self {
        Self {
            label: RunLabel {
                run_id: run_id.into(),
                ..Default::default()
            },
            limits: RunLimits::default(),
            egress: Arc::new(egress),
        }
    }
}

/// The discovery request as the host builds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoverInput {
    /// The integration config (JSON object).
    pub config: String,
    /// Last committed cursor.
    pub cursor: Option<String>,
    /// Run id.
    pub run_id: String,
    /// Runs of this integration before this one.
    pub run_number: u64,
}

/// How a discovery call ended, as the adapter reported and the host counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverOutcome {
    /// Devices the adapter says it emitted.
    pub reported_devices: u64,
    /// Whether the run was a complete inventory.
    pub complete: bool,
    /// The cursor for the next run.
    pub cursor: Option<String>,
    /// Devices the host received.
    pub emitted_devices: u64,
    /// Bytes of device data the host received.
    pub emitted_bytes: u64,
    /// Egress requests sent.
    pub egress_requests: u64,
    /// Egress requests refused.
    pub egress_denials: u64,
    /// Wall-clock duration of the call.
    pub elapsed: Duration,
}

/// Compiles and runs adapter components.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<RunState>,
    tls: Arc<rustls::ClientConfig>,
    tick: Duration,
    _ticker: EpochTicker,
}

impl Sandbox {
    /// Creates the engine, the linker with every host import, and the ticker.
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let engine = engine::build_engine().map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        let mut linker: Linker<RunState> = Linker::new(&engine);
        // All of WASI p2 is linked so components built with any toolchain
        // load, but the per-run WasiCtx grants nothing.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| SandboxError::Linker(format!("{e:#}")))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| SandboxError::Linker(format!("{e:#}")))?;
        bindings::serviceradar::adapter::host::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| SandboxError::Linker(format!("{e:#}")))?;
        let tls = Arc::new(tls_client_config(&config.extra_ca_pem).map_err(SandboxError::Tls)?);
        let tick = config.epoch_tick.max(Duration::from_millis(1));
        let ticker = EpochTicker::start(engine.clone(), tick)
            .map_err(|e| SandboxError::Engine(format!("starting the epoch ticker: {e}")))?;
        Ok(Self {
            engine,
            linker,
            tls,
            tick,
            _ticker: ticker,
        })
    }

    /// The shared engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles component bytes, refusing non-wasm and core modules clearly.
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, LoadError> {
        check_header(bytes)?;
        Component::new(&self.engine, bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))
    }

    /// Checks the world, links, and calls `describe`: the component is ready
    /// to run. `digest` identifies the bytes it was compiled from.
    pub async fn prepare(
        &self,
        component: Component,
        digest: Digest,
        size_bytes: u64,
    ) -> Result<LoadedAdapter, LoadError> {
        world::check(&component, &self.engine)?;
        let interface = ComponentInterface::of(&component, &self.engine);
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = AdapterPre::new(instance_pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let description = self.describe(&pre, &digest).await?;
        Ok(LoadedAdapter::new(
            description,
            digest,
            pre,
            interface,
            size_bytes,
            component,
        ))
    }

    /// Compiles and prepares component bytes in one step.
    pub async fn load(&self, bytes: &[u8]) -> Result<LoadedAdapter, LoadError> {
        let digest = Digest::of(bytes);
        let component = self.compile(bytes)?;
        self.prepare(component, digest, bytes.len() as u64).await
    }

    async fn describe(
        &self,
        pre: &AdapterPre<RunState>,
        digest: &Digest,
    ) -> Result<AdapterDescription, LoadError> {
        let label = RunLabel {
            adapter: format!("<{}>", digest.short()),
            run_id: "describe".to_string(),
            ..Default::default()
        };
        let settings = RunSettings {
            label,
            limits: RunLimits::for_describe(),
            egress: Arc::new(EgressPolicy::deny_all()),
        };
        let (mut store, label) = self.new_store(&settings, "", None);
        let call = async {
            let adapter = pre.instantiate_async(&mut store).await?;
            adapter.call_describe(&mut store).await
        };
        let result = tokio::time::timeout(settings.limits.wall_clock(), call).await;
        let raw = self
            .finish(result, &mut store, &label, &settings)
            .map_err(|e| LoadError::Describe(Box::new(e)))?;
        AdapterDescription::from_wit(raw).map_err(LoadError::Description)
    }

    /// Runs `validate(config)` in a fresh store.
    pub async fn validate(
        &self,
        adapter: &LoadedAdapter,
        config: &str,
        settings: &RunSettings,
    ) -> Result<(), RunError> {
        let (mut store, label) = self.new_store(settings, &adapter.label(), None);
        let call = async {
            let instance = adapter.pre().instantiate_async(&mut store).await?;
            instance.call_validate(&mut store, config).await
        };
        let result = tokio::time::timeout(settings.limits.wall_clock(), call).await;
        self.finish(result, &mut store, &label, settings)?
            .map_err(|e| RunError::Adapter {
                adapter: label.adapter.clone(),
                failure: failure_of(e),
            })
    }

    /// Runs `discover` in a fresh store; devices and checkpoints go to
    /// `events` in emission order (the call waits when `events` is full).
    pub async fn discover(
        &self,
        adapter: &LoadedAdapter,
        input: DiscoverInput,
        settings: &RunSettings,
        events: mpsc::Sender<RunEvent>,
    ) -> Result<DiscoverOutcome, RunError> {
        let started = Instant::now();
        let counters = Arc::new(EgressCounters::default());
        let (mut store, label) = self.new_store_with_counters(
            settings,
            &adapter.label(),
            Some(events),
            counters.clone(),
        );
        let request = DiscoverRequest {
            config: input.config,
            cursor: input.cursor,
            run_id: input.run_id,
            run_number: input.run_number,
        };
        let call = async {
            let instance: Adapter = adapter.pre().instantiate_async(&mut store).await?;
            tracing::debug!(adapter = %label.adapter, run_id = %label.run_id,
                elapsed_ms = started.elapsed().as_millis() as u64, "adapter instantiated");
            instance.call_discover(&mut store, &request).await
        };
        let result = tokio::time::timeout(settings.limits.wall_clock(), call).await;
        store.data_mut().close_events();
        let summary: DiscoverSummary =
            self.finish(result, &mut store, &label, settings)?
                .map_err(|e| RunError::Adapter {
                    adapter: label.adapter.clone(),
                    failure: failure_of(e),
                })?;
        let data = store.data();
        Ok(DiscoverOutcome {
            reported_devices: summary.devices,
            complete: summary.complete,
            cursor: summary.cursor,
            emitted_devices: data.emitted_devices,
            emitted_bytes: data.emitted_bytes,
            egress_requests: counters.requests(),
            egress_denials: counters.denials(),
            elapsed: started.elapsed(),
        })
    }

    fn new_store(
        &self,
        settings: &RunSettings,
        adapter_label: &str,
        events: Option<mpsc::Sender<RunEvent>>,
    ) -> (Store<RunState>, Arc<RunLabel>) {
        self.new_store_with_counters(
            settings,
            adapter_label,
            events,
            Arc::new(EgressCounters::default()),
        )
    }

    fn new_store_with_counters(
        &self,
        settings: &RunSettings,
        adapter_label: &str,
        events: Option<mpsc::Sender<RunEvent>>,
        counters: Arc<EgressCounters>,
    ) -> (Store<RunState>, Arc<RunLabel>) {
        let mut label = settings.label.clone();
        if !adapter_label.is_empty() {
            label.adapter = adapter_label.to_string();
        }
        let label = Arc::new(label);
        let hooks = EgressHooks::new(
            settings.egress.clone(),
            self.tls.clone(),
            label.clone(),
            counters,
        );
        let tick_nanos = self.tick.as_nanos().max(1);
        let budget_ticks = u64::try_from(settings.limits.cpu().as_nanos() / tick_nanos)
            .unwrap_or(u64::MAX)
            .max(1);
        let state = RunState::new(label.clone(), settings.limits, hooks, events, budget_ticks);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        let budget = settings.limits.cpu();
        store.epoch_deadline_callback(move |mut ctx| {
            let state = ctx.data_mut();
            state.cpu_ticks += 1;
            if state.cpu_ticks > state.cpu_budget_ticks {
                let hit = LimitHit::Cpu { budget };
                state.hit = Some(hit);
                return Err(wasmtime::Error::new(LimitTrap(hit)));
            }
            // Yield every tick so a busy guest shares the executor.
            Ok(UpdateDeadline::Yield(1))
        });
        (store, label)
    }

    /// Turns the outcome of a call into the call's result or a [`RunError`]
    /// naming the cause: a recorded limit first, then delivery, then traps.
    fn finish<T>(
        &self,
        result: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
        store: &mut Store<RunState>,
        label: &RunLabel,
        settings: &RunSettings,
    ) -> Result<T, RunError> {
        let adapter = label.adapter.clone();
        let error = match result {
            Ok(Ok(value)) => return Ok(value),
            Err(_) => {
                return Err(RunError::Limit {
                    adapter,
                    hit: LimitHit::WallClock {
                        budget: settings.limits.wall_clock(),
                    },
                });
            }
            Ok(Err(error)) => error,
        };
        let state = store.data();
        if let Some(hit) = state.limit_hit() {
            return Err(RunError::Limit { adapter, hit });
        }
        if let Some(LimitTrap(hit)) = error.downcast_ref::<LimitTrap>() {
            return Err(RunError::Limit { adapter, hit: *hit });
        }
        if state.consumer_gone {
            return Err(RunError::DeliveryStopped { adapter });
        }
        let mut message = match error.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => trap.to_string(),
            None => format!("{error:#}"),
        };
        let stderr = state.stderr_text();
        if let Some(panic) = panic_line(&stderr) {
            message = format!("{message}; {panic}");
        }
        if error.downcast_ref::<wasmtime::Trap>().is_none() && message.contains("instantiat") {
            return Err(RunError::Instantiate { adapter, message });
        }
        Err(RunError::Trap { adapter, message })
    }
}

/// The most useful line of a guest's stderr: its panic message.
fn panic_line(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let index = lines.iter().position(|l| l.contains("panicked at"))?;
    let mut text = lines[index].trim().to_string();
    // Rust prints the panic payload on the line after the location.
    if let Some(next) = lines.get(index + 1)
        && !next.starts_with("note:")
    {
        text = format!("{text} {}", next.trim());
    }
    Some(text)
}

fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[0..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    // Bytes 4..8: version and layer; a core module is `01 00 00 00`.
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(LoadError::CoreModule);
    }
    Ok(())
}

fn failure_of(error: AdapterError) -> AdapterFailure {
    match error {
        AdapterError::InvalidConfig(m) => AdapterFailure::InvalidConfig(m),
        AdapterError::Unauthorized(m) => AdapterFailure::Unauthorized(m),
        AdapterError::Unavailable(m) => AdapterFailure::Unavailable(m),
        AdapterError::RateLimited(r) => AdapterFailure::RateLimited {
            retry_after_secs: r.retry_after_secs,
            message: r.message,
        },
        AdapterError::Protocol(m) => AdapterFailure::Protocol(m),
        AdapterError::Internal(m) => AdapterFailure::Internal(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check_tells_core_modules_from_components() {
        assert!(matches!(
            check_header(b"hello world"),
            Err(LoadError::NotWasm)
        ));
        assert!(matches!(
            check_header(&[0, b'a', b's', b'm', 1, 0, 0, 0]),
            Err(LoadError::CoreModule)
        ));
        assert!(check_header(&[0, b'a', b's', b'm', 0x0d, 0, 1, 0]).is_ok());
    }

    #[test]
    fn panic_line_finds_the_payload() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:10:5:\nboom\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_line(stderr).as_deref(),
            Some("thread '<unnamed>' panicked at src/lib.rs:10:5: boom")
        );
        assert_eq!(panic_line("nothing here"), None);
    }
}
