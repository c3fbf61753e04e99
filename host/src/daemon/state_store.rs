//! Local, durable per-source state: the committed cursor and the run number.
//!
//! A cursor is committed only after the gateway acknowledged everything
//! emitted before it; the run number advances only when a run succeeded, so
//! a retried run asks the adapter for the same thing again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The state file could not be read or written.
#[derive(Debug, Error)]
#[error("sync state {path}: {message}")]
pub struct StateError {
    path: PathBuf,
    message: String,
}

/// What is remembered about one integration source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceState {
    /// The committed cursor (none: the next run is a full inventory).
    #[serde(default)]
    pub cursor: Option<String>,
    /// Successful runs so far.
    #[serde(default)]
    pub run_number: u64,
}

/// Per-source state in one JSON file, written atomically.
#[derive(Debug)]
pub struct StateStore {
    path: PathBuf,
    sources: Mutex<BTreeMap<String, SourceState>>,
}

impl StateStore {
    /// Opens (or creates) the state file `sources.json` in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let error = |message: String| StateError {
            path: dir.join("sources.json"),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| error(e.to_string()))?;
        let path = dir.join("sources.json");
        let sources = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| error(format!("corrupt ({e}); move it away to start over")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(error(e.to_string())),
        };
        Ok(Self {
            path,
            sources: Mutex::new(sources),
        })
    }

    /// The state of a source (default when unknown).
    pub fn get(&self, source_id: &str) -> SourceState {
        self.lock().get(source_id).cloned().unwrap_or_default()
    }

    /// Commits a checkpointed cursor (everything before it was acknowledged).
    pub fn commit_cursor(&self, source_id: &str, cursor: &str) -> Result<(), StateError> {
        let mut sources = self.lock();
        sources.entry(source_id.to_string()).or_default().cursor = Some(cursor.to_string());
        self.persist(&sources)
    }

    /// Records a successful run: its final cursor (none clears it) and the
    /// next run number.
    pub fn finish_run(&self, source_id: &str, cursor: Option<String>) -> Result<(), StateError> {
        let mut sources = self.lock();
        let state = sources.entry(source_id.to_string()).or_default();
        state.cursor = cursor;
        state.run_number += 1;
        self.persist(&sources)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SourceState>> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, sources: &BTreeMap<String, SourceState>) -> Result<(), StateError> {
        let error = |message: String| StateError {
            path: self.path.clone(),
            message,
        };
        let text = serde_json::to_vec_pretty(sources).map_err(|e| error(e.to_string()))?;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(|e| error(e.to_string()))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| error(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_and_run_number_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        assert_eq!(store.get("s1"), SourceState::default());
        store.commit_cursor("s1", "page-3").unwrap();
        store.finish_run("s2", None).unwrap();
        let reopened = StateStore::open(dir.path()).unwrap();
        assert_eq!(reopened.get("s1").cursor.as_deref(), Some("page-3"));
        assert_eq!(reopened.get("s1").run_number, 0);
        assert_eq!(reopened.get("s2").run_number, 1);
        reopened.finish_run("s1", None).unwrap();
        assert_eq!(
            reopened.get("s1"),
            SourceState {
                cursor: None,
                run_number: 1
            }
        );
    }

    #[test]
    fn corrupt_file_is_reported_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sources.json"), "{oops").unwrap();
        let err = StateStore::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("corrupt") && err.contains("move it away"),
            "{err}"
        );
    }
}
