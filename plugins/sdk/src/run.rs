//! [`Run`]: the context of one discovery run, and the page buffer between
//! the adapter and the host's `emit`.

use crate::bindings::serviceradar::adapter::{host, types as wit};
use crate::config::Config;
use crate::device::Device;
use crate::log::Level;

/// Devices per `emit` call when the configuration sets no `page_size`.
pub const DEFAULT_PAGE_SIZE: usize = 1000;

/// The most devices handed to the host in one `emit` call.
pub const MAX_PAGE_SIZE: usize = 5000;

/// Where a run's devices, cursors and logs go. The export glue sends them
/// to the host; a test can record them to run [`Adapter::discover`]
/// natively.
///
/// [`Adapter::discover`]: crate::Adapter::discover
pub trait Sink {
    /// Takes one page of devices. The host may block here (backpressure).
    fn emit(&mut self, devices: Vec<Device>);
    /// Records a cursor; everything emitted before it was handed over first.
    fn checkpoint(&mut self, cursor: &str);
    /// Takes one log record written with [`Run::log`]. The default drops
    /// it, so a test sink need not implement it; the export glue writes it
    /// to the host's log.
    fn log(&mut self, level: Level, message: &str, fields: &[(&str, &str)]) {
        let _ = (level, message, fields);
    }
}

/// The host's `emit` and `checkpoint` imports.
pub(crate) struct HostSink;

impl Sink for HostSink {
    fn emit(&mut self, devices: Vec<Device>) {
        let devices: Vec<wit::Device> = devices.into_iter().map(Into::into).collect();
        host::emit(&devices);
    }

    fn checkpoint(&mut self, cursor: &str) {
        host::checkpoint(cursor);
    }

    fn log(&mut self, level: Level, message: &str, fields: &[(&str, &str)]) {
        crate::log::log(level, message, fields);
    }
}

/// Everything one discovery run has: the configuration, where the last run
/// stopped, and the way to hand devices to the host.
///
/// [`Run::emit`] buffers devices and hands them to the host a page at a
/// time, so an adapter can emit one device at a time and memory stays flat.
pub struct Run<S> {
    config: Config<S>,
    cursor: Option<String>,
    run_id: String,
    run_number: u64,
    page_size: usize,
    pending: Vec<Device>,
    emitted: u64,
    sink: Box<dyn Sink>,
}

impl<S> Run<S> {
    /// A run over `config` handing devices to `sink`. The page size is the
    /// configuration's `page_size` (default [`DEFAULT_PAGE_SIZE`]) clamped
    /// to 1..=[`MAX_PAGE_SIZE`].
    pub fn new(
        config: Config<S>,
        cursor: Option<String>,
        run_id: impl Into<String>,
        run_number: u64,
        sink: Box<dyn Sink>,
    ) -> Self {
        let page_size = config
            .page_size
            .map_or(DEFAULT_PAGE_SIZE, |n| {
                usize::try_from(n).unwrap_or(MAX_PAGE_SIZE)
            })
            .clamp(1, MAX_PAGE_SIZE);
        Self {
            config,
            cursor,
            run_id: run_id.into(),
            run_number,
            page_size,
            pending: Vec::new(),
            emitted: 0,
            sink,
        }
    }

    /// The integration's configuration.
    pub fn config(&self) -> &Config<S> {
        &self.config
    }

    /// The adapter's settings (`config().settings`).
    pub fn settings(&self) -> &S {
        &self.config.settings
    }

    /// The cursor the host committed after the previous run; `None` means
    /// run a full inventory.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// Unique id of this run, for logs.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// How many runs of this integration came before this one.
    pub fn run_number(&self) -> u64 {
        self.run_number
    }

    /// Devices per `emit` call to the host.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Changes the devices per `emit` call (clamped to 1..=[`MAX_PAGE_SIZE`]);
    /// pending devices are flushed first when the buffer is over the new size.
    pub fn set_page_size(&mut self, page_size: usize) {
        self.page_size = page_size.clamp(1, MAX_PAGE_SIZE);
        if self.pending.len() >= self.page_size {
            self.flush();
        }
    }

    /// Queues a device; a full page goes to the host at once (which may
    /// block while the host delivers earlier pages).
    pub fn emit(&mut self, device: Device) {
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(self.page_size);
        }
        self.pending.push(device);
        self.emitted += 1;
        if self.pending.len() >= self.page_size {
            self.flush();
        }
    }

    /// Hands the buffered devices to the host now.
    pub fn flush(&mut self) {
        if !self.pending.is_empty() {
            let page = std::mem::take(&mut self.pending);
            self.sink.emit(page);
        }
    }

    /// Records how far the run has got. Buffered devices are flushed first,
    /// so the cursor never gets ahead of the devices the host has.
    pub fn checkpoint(&mut self, cursor: impl Into<String>) {
        self.flush();
        self.sink.checkpoint(&cursor.into());
    }

    /// How many devices [`Run::emit`] received so far.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Writes a log record through the run's [`Sink`]: in a component the
    /// host's log, as [`log::log`](crate::log::log) does; natively whatever
    /// the test's sink does with it, so code that logs this way runs in
    /// native tests.
    pub fn log(&mut self, level: Level, message: &str, fields: &[(&str, &str)]) {
        self.sink.log(level, message, fields);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::{Recorded, Recording};

    /// What the sink got: pages as their ids, cursors, log messages.
    fn events(recording: &Recording) -> Vec<String> {
        recording
            .events()
            .into_iter()
            .map(|event| match event {
                Recorded::Devices(devices) => {
                    let ids: Vec<String> = devices.into_iter().map(|d| d.source_id).collect();
                    format!("emit {}", ids.join(","))
                }
                Recorded::Checkpoint(cursor) => format!("checkpoint {cursor}"),
                Recorded::Log { level, message, .. } => format!("log {level:?} {message}"),
            })
            .collect()
    }

    fn run(config: &str) -> (Run<serde_json::Value>, Recording) {
        let recording = Recording::default();
        let config = Config::from_json(config).unwrap();
        let run = Run::new(
            config,
            Some("c0".into()),
            "run-1",
            4,
            Box::new(recording.clone()),
        );
        (run, recording)
    }

    #[test]
    fn emits_in_pages_of_the_configured_size() {
        let (mut run, rec) = run(r#"{"page_size": 3}"#);
        for i in 0..7 {
            run.emit(Device::new(i.to_string()));
        }
        assert_eq!(run.emitted(), 7);
        assert_eq!(events(&rec), ["emit 0,1,2", "emit 3,4,5"]);
        run.flush();
        run.flush();
        assert_eq!(events(&rec), ["emit 0,1,2", "emit 3,4,5", "emit 6"]);
    }

    #[test]
    fn checkpoint_flushes_pending_devices_first() {
        let (mut run, rec) = run(r#"{"page_size": 10}"#);
        run.emit(Device::new("a"));
        run.checkpoint("page-1");
        run.checkpoint("page-1b");
        assert_eq!(
            events(&rec),
            ["emit a", "checkpoint page-1", "checkpoint page-1b"]
        );
    }

    #[test]
    fn page_size_defaults_and_clamps() {
        assert_eq!(run("{}").0.page_size(), DEFAULT_PAGE_SIZE);
        assert_eq!(run(r#"{"page_size": 0}"#).0.page_size(), 1);
        assert_eq!(run(r#"{"page_size": 100000}"#).0.page_size(), MAX_PAGE_SIZE);
        let (mut r, rec) = run(r#"{"page_size": 10}"#);
        r.emit(Device::new("a"));
        r.emit(Device::new("b"));
        r.set_page_size(2);
        assert_eq!(events(&rec), ["emit a,b"]);
    }

    /// A sink written before [`Sink::log`] existed.
    struct Silent;

    impl Sink for Silent {
        fn emit(&mut self, _: Vec<Device>) {}
        fn checkpoint(&mut self, _: &str) {}
    }

    #[test]
    fn logs_go_through_the_sink_and_default_to_nothing() {
        let (mut r, rec) = run("{}");
        r.emit(Device::new("a"));
        r.log(Level::Warn, "odd", &[("page", "3")]);
        assert_eq!(
            events(&rec),
            ["log Warn odd"],
            "a log record does not flush devices"
        );
        assert_eq!(rec.logs()[0].2, [("page".to_string(), "3".to_string())]);
        let config = Config::from_json("{}").unwrap();
        let mut silent: Run<serde_json::Value> = Run::new(config, None, "r", 0, Box::new(Silent));
        silent.log(Level::Info, "dropped", &[]);
    }

    #[test]
    fn exposes_the_request() {
        let (run, _) = run(r#"{"settings": {"x": 1}}"#);
        assert_eq!(run.cursor(), Some("c0"));
        assert_eq!(run.run_id(), "run-1");
        assert_eq!(run.run_number(), 4);
        assert_eq!(run.settings()["x"], 1);
    }
}
