//! The data of one run's `Store`: WASI with nothing granted, policed HTTP,
//! the memory limiter, and the host interface (`log`, `emit`, `checkpoint`).

use std::sync::Arc;

use tokio::sync::mpsc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::RunLabel;
use super::bindings::serviceradar::adapter::host::Host;
use super::bindings::serviceradar::adapter::types::{Device, LogLevel};
use super::limits::{LimitHit, LimitTrap, MemoryLimiter, RunLimits};
use crate::egress::send::EgressHooks;

/// Largest cursor an adapter may checkpoint.
pub const MAX_CURSOR_BYTES: usize = 64 * 1024;
const MAX_LOG_RECORDS: u32 = 10_000;
const MAX_LOG_MESSAGE: usize = 8 * 1024;
const MAX_LOG_FIELDS: usize = 32;
const MAX_LOG_FIELD: usize = 1024;
const STDERR_CAPTURE_BYTES: usize = 64 * 1024;

/// What a discovery run hands to its consumer, in emission order.
#[derive(Debug)]
pub enum RunEvent {
    /// A batch of devices, as the adapter emitted it.
    Devices(Vec<Device>),
    /// A cursor: everything before it in the stream belongs to it.
    Checkpoint(String),
}

/// Store data of one run.
pub struct RunState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: EgressHooks,
    table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    pub(super) label: Arc<RunLabel>,
    pub(super) limits: RunLimits,
    events: Option<mpsc::Sender<RunEvent>>,
    pub(super) emitted_devices: u64,
    pub(super) emitted_bytes: u64,
    pub(super) cpu_ticks: u64,
    pub(super) cpu_budget_ticks: u64,
    pub(super) hit: Option<LimitHit>,
    pub(super) consumer_gone: bool,
    log_records: u32,
    stderr: MemoryOutputPipe,
}

impl RunState {
    /// Store data for a run. `events` is `None` for calls that may not emit.
    pub(super) fn new(
        label: Arc<RunLabel>,
        limits: RunLimits,
        hooks: EgressHooks,
        events: Option<mpsc::Sender<RunEvent>>,
        cpu_budget_ticks: u64,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE_BYTES);
        // Nothing is granted: no args, no environment, no preopened
        // directories, no sockets, no name lookup. Only stderr is kept (in
        // memory) so a panic message can be reported.
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            hooks,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits.memory_bytes()),
            label,
            limits,
            events,
            emitted_devices: 0,
            emitted_bytes: 0,
            cpu_ticks: 0,
            cpu_budget_ticks,
            hit: None,
            consumer_gone: false,
            log_records: 0,
            stderr,
        }
    }

    /// The limit that ended the run, if one did.
    pub(super) fn limit_hit(&self) -> Option<LimitHit> {
        self.hit.or(self.limiter.hit)
    }

    /// What the guest wrote to stderr (panic messages), lossy UTF-8.
    pub(super) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents()).into_owned()
    }

    /// Drops the event sender so the consumer sees the end of the stream.
    pub(super) fn close_events(&mut self) {
        self.events = None;
    }

    fn trap_limit(&mut self, hit: LimitHit) -> wasmtime::Error {
        self.hit = Some(hit);
        wasmtime::Error::new(LimitTrap(hit))
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RunState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.hooks,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

/// Approximate size of a device's data: the bytes of its strings.
pub(super) fn device_bytes(device: &Device) -> u64 {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    let list = |l: &[String]| l.iter().map(String::len).sum::<usize>();
    let total = device.source_id.len()
        + list(&device.ips)
        + list(&device.macs)
        + opt(&device.hostname)
        + opt(&device.device_type)
        + opt(&device.manufacturer)
        + opt(&device.model)
        + opt(&device.os)
        + opt(&device.serial)
        + list(&device.tags)
        + opt(&device.first_seen)
        + opt(&device.last_seen)
        + device
            .attributes
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
        + opt(&device.raw);
    total as u64
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Host for RunState {
    fn log(
        &mut self,
        level: LogLevel,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        self.log_records = self.log_records.saturating_add(1);
        if self.log_records > MAX_LOG_RECORDS {
            if self.log_records == MAX_LOG_RECORDS + 1 {
                tracing::warn!(adapter = %self.label.adapter, run_id = %self.label.run_id,
                    "adapter log limit reached ({MAX_LOG_RECORDS} records); further records dropped");
            }
            return Ok(());
        }
        let message = truncate(&message, MAX_LOG_MESSAGE);
        let fields = fields
            .iter()
            .take(MAX_LOG_FIELDS)
            .map(|(k, v)| format!("{}={}", truncate(k, 64), truncate(v, MAX_LOG_FIELD)))
            .collect::<Vec<_>>()
            .join(" ");
        let label = &self.label;
        macro_rules! emit_log {
            ($level:expr) => {
                tracing::event!(
                    target: "adapter",
                    $level,
                    adapter = %label.adapter,
                    tenant = %label.tenant,
                    integration = %label.integration,
                    run_id = %label.run_id,
                    fields = %fields,
                    "{message}"
                )
            };
        }
        match level {
            LogLevel::Trace => emit_log!(tracing::Level::TRACE),
            LogLevel::Debug => emit_log!(tracing::Level::DEBUG),
            LogLevel::Info => emit_log!(tracing::Level::INFO),
            LogLevel::Warn => emit_log!(tracing::Level::WARN),
            LogLevel::Error => emit_log!(tracing::Level::ERROR),
        }
        Ok(())
    }

    async fn emit(&mut self, devices: Vec<Device>) -> wasmtime::Result<()> {
        if self.events.is_none() {
            return Err(wasmtime::Error::msg(
                "emit was called outside discover; describe and validate must not emit devices",
            ));
        }
        let count = devices.len() as u64;
        let bytes: u64 = devices.iter().map(device_bytes).sum();
        self.emitted_devices = self.emitted_devices.saturating_add(count);
        self.emitted_bytes = self.emitted_bytes.saturating_add(bytes);
        if self.emitted_devices > self.limits.max_devices {
            let hit = LimitHit::Devices {
                max: self.limits.max_devices,
            };
            return Err(self.trap_limit(hit));
        }
        if self.emitted_bytes > self.limits.max_emit_bytes() {
            let hit = LimitHit::Bytes {
                max: self.limits.max_emit_bytes(),
            };
            return Err(self.trap_limit(hit));
        }
        if devices.is_empty() {
            return Ok(());
        }
        let Some(events) = self.events.as_ref() else {
            return Ok(());
        };
        // Backpressure: waits while the consumer is behind.
        if events.send(RunEvent::Devices(devices)).await.is_err() {
            self.consumer_gone = true;
            return Err(wasmtime::Error::msg(
                "the host stopped accepting devices for this run (delivery failed)",
            ));
        }
        Ok(())
    }

    async fn checkpoint(&mut self, cursor: String) -> wasmtime::Result<()> {
        if cursor.len() > MAX_CURSOR_BYTES {
            return Err(wasmtime::Error::msg(format!(
                "checkpoint cursor is {} bytes, over the {MAX_CURSOR_BYTES}-byte limit",
                cursor.len()
            )));
        }
        let Some(events) = self.events.as_ref() else {
            return Err(wasmtime::Error::msg(
                "checkpoint was called outside discover",
            ));
        };
        if events.send(RunEvent::Checkpoint(cursor)).await.is_err() {
            self.consumer_gone = true;
            return Err(wasmtime::Error::msg(
                "the host stopped accepting devices for this run (delivery failed)",
            ));
        }
        Ok(())
    }
}

impl super::bindings::serviceradar::adapter::types::Host for RunState {}
