//! [`Recording`]: a [`Sink`] that keeps what a run hands over, to test
//! `discover` natively.

use std::cell::RefCell;
use std::rc::Rc;

use crate::device::Device;
use crate::log::Level;
use crate::run::Sink;

/// One thing a run handed to its sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A page of devices ([`Sink::emit`]).
    Devices(Vec<Device>),
    /// A cursor ([`Sink::checkpoint`]).
    Checkpoint(String),
    /// A log record ([`Sink::log`]).
    Log {
        /// Severity.
        level: Level,
        /// The message.
        message: String,
        /// Key/value fields.
        fields: Vec<(String, String)>,
    },
}

/// A recorded log record: level, message and key/value fields.
pub type LogRecord = (Level, String, Vec<(String, String)>);

/// A [`Sink`] that records everything, in order. Clones share the record:
/// hand one to [`Run::new`](crate::Run::new) and read the other.
///
/// ```
/// use sr_adapter_sdk::{Config, Device, NoSettings, Recording, Run};
///
/// let recording = Recording::default();
/// let config: Config<NoSettings> = Config::from_json(r#"{"page_size": 2}"#).unwrap();
/// let mut run = Run::new(config, None, "run-1", 0, Box::new(recording.clone()));
/// for id in ["a", "b", "c"] {
///     run.emit(Device::new(id));
/// }
/// run.checkpoint("after-c");
/// assert_eq!(recording.ids(), ["a", "b", "c"]);
/// assert_eq!(recording.checkpoints(), [(3, "after-c".to_string())]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Recording(Rc<RefCell<Vec<Recorded>>>);

impl Recording {
    /// Everything recorded so far, in order.
    pub fn events(&self) -> Vec<Recorded> {
        self.0.borrow().clone()
    }

    /// Every device emitted so far, in order.
    pub fn devices(&self) -> Vec<Device> {
        self.0
            .borrow()
            .iter()
            .filter_map(|event| match event {
                Recorded::Devices(devices) => Some(devices.iter().cloned()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// The `source_id` of every device emitted so far, in order.
    pub fn ids(&self) -> Vec<String> {
        self.devices().into_iter().map(|d| d.source_id).collect()
    }

    /// Every cursor checkpointed so far, each with how many devices had
    /// been handed over before it.
    pub fn checkpoints(&self) -> Vec<(usize, String)> {
        let mut delivered = 0;
        let mut checkpoints = Vec::new();
        for event in self.0.borrow().iter() {
            match event {
                Recorded::Devices(devices) => delivered += devices.len(),
                Recorded::Checkpoint(cursor) => checkpoints.push((delivered, cursor.clone())),
                Recorded::Log { .. } => {}
            }
        }
        checkpoints
    }

    /// Every log record so far: level, message and fields.
    pub fn logs(&self) -> Vec<LogRecord> {
        self.0
            .borrow()
            .iter()
            .filter_map(|event| match event {
                Recorded::Log {
                    level,
                    message,
                    fields,
                } => Some((*level, message.clone(), fields.clone())),
                _ => None,
            })
            .collect()
    }
}

impl Sink for Recording {
    fn emit(&mut self, devices: Vec<Device>) {
        self.0.borrow_mut().push(Recorded::Devices(devices));
    }

    fn checkpoint(&mut self, cursor: &str) {
        self.0
            .borrow_mut()
            .push(Recorded::Checkpoint(cursor.to_string()));
    }

    fn log(&mut self, level: Level, message: &str, fields: &[(&str, &str)]) {
        let fields = fields
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        self.0.borrow_mut().push(Recorded::Log {
            level,
            message: message.to_string(),
            fields,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_pages_cursors_and_logs_in_order() {
        let mut sink = Recording::default();
        let reader = sink.clone();
        sink.emit(vec![Device::new("1"), Device::new("2")]);
        sink.log(Level::Warn, "slow", &[("page", "1")]);
        sink.checkpoint("c1");
        sink.emit(vec![Device::new("3")]);
        sink.checkpoint("c2");
        assert_eq!(reader.ids(), ["1", "2", "3"]);
        assert_eq!(
            reader.checkpoints(),
            [(2, "c1".to_string()), (3, "c2".to_string())]
        );
        assert_eq!(
            reader.logs(),
            [(
                Level::Warn,
                "slow".to_string(),
                vec![("page".to_string(), "1".to_string())]
            )]
        );
        assert_eq!(reader.events().len(), 5);
        assert_eq!(
            reader.events()[0],
            Recorded::Devices(vec![Device::new("1"), Device::new("2")])
        );
    }
}
