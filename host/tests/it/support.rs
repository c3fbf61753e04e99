//! Shared test support: one sandbox per test process, components compiled
//! once, and a helper that runs discover and collects what it emits.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use sr_host::adapter::{Digest, LoadedAdapter};
use sr_host::egress::{AddressPermissions, EgressPolicy, HostPattern};
use sr_host::sandbox::{
    Device, DiscoverInput, DiscoverOutcome, RunError, RunEvent, RunLimits, RunSettings, Sandbox,
    SandboxConfig,
};
use tokio::sync::mpsc;
use wasmtime::component::Component;

/// The process-wide sandbox (compiled components belong to its engine).
pub fn sandbox() -> Arc<Sandbox> {
    static SANDBOX: OnceLock<Arc<Sandbox>> = OnceLock::new();
    SANDBOX
        .get_or_init(|| Arc::new(Sandbox::new(SandboxConfig::default()).expect("sandbox")))
        .clone()
}

/// Path of a built plugin component (`faker`, `sr-test-misbehave`, ...).
pub fn component_path(name: &str) -> PathBuf {
    sr_testkit::components::component(name).expect("plugin components build")
}

/// A compiled component with its digest and size.
type Compiled = (Component, Digest, u64);

/// Loads a plugin component, compiling it once per process.
pub async fn load(name: &str) -> Arc<LoadedAdapter> {
    static COMPILED: OnceLock<Mutex<HashMap<String, Compiled>>> = OnceLock::new();
    let cache = COMPILED.get_or_init(Default::default);
    let cached = cache.lock().unwrap().get(name).cloned();
    let (component, digest, size) = match cached {
        Some(entry) => entry,
        None => {
            let bytes = std::fs::read(component_path(name)).unwrap();
            let component = sandbox().compile(&bytes).unwrap();
            let entry = (component, Digest::of(&bytes), bytes.len() as u64);
            cache
                .lock()
                .unwrap()
                .insert(name.to_string(), entry.clone());
            entry
        }
    };
    Arc::new(sandbox().prepare(component, digest, size).await.unwrap())
}

/// Settings with the given limits and allowed hosts.
pub fn settings(limits: RunLimits, hosts: &[&str], permissions: AddressPermissions) -> RunSettings {
    let egress = EgressPolicy::new(hosts.iter().map(|h| HostPattern::new(h)), permissions);
    RunSettings {
        limits,
        ..RunSettings::local("test-run", egress)
    }
}

/// What a discover call produced.
pub struct Collected {
    pub outcome: Result<DiscoverOutcome, RunError>,
    pub devices: Vec<Device>,
    pub checkpoints: Vec<String>,
    /// Index into `devices` at which each checkpoint arrived.
    pub checkpoint_positions: Vec<usize>,
}

/// Runs discover with `config` and collects every event.
pub async fn discover(
    adapter: &LoadedAdapter,
    config: serde_json::Value,
    settings: &RunSettings,
    run_number: u64,
) -> Collected {
    let (tx, mut rx) = mpsc::channel(4);
    let input = DiscoverInput {
        config: config.to_string(),
        cursor: None,
        run_id: "test-run".into(),
        run_number,
    };
    let sandbox = sandbox();
    let run = sandbox.discover(adapter, input, settings, tx);
    let collect = async {
        let mut devices = Vec::new();
        let mut checkpoints = Vec::new();
        let mut positions = Vec::new();
        while let Some(event) = rx.recv().await {
            match event {
                RunEvent::Devices(batch) => devices.extend(batch),
                RunEvent::Checkpoint(cursor) => {
                    checkpoints.push(cursor);
                    positions.push(devices.len());
                }
            }
        }
        (devices, checkpoints, positions)
    };
    let (outcome, (devices, checkpoints, checkpoint_positions)) = tokio::join!(run, collect);
    Collected {
        outcome,
        devices,
        checkpoints,
        checkpoint_positions,
    }
}

/// Limits for tests that should hit one limit quickly.
pub fn quick_limits() -> RunLimits {
    RunLimits {
        memory_mb: 64,
        cpu_secs: 2,
        wall_clock_secs: 20,
        max_devices: 1_000_000,
        max_emit_mb: 1024,
    }
}

/// Captures tracing output of the current thread into a string buffer.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Installs the capture for the current thread until the guard drops.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
