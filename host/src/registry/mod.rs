//! The adapter registry: a directory of components, content-addressed by
//! SHA-256, hot-reloaded without a restart.
//!
//! New runs pick the newest version serving a source type (or a pinned
//! name/version/digest). A run holds its `Arc<LoadedAdapter>`, so replacing
//! or removing a file never disturbs runs in flight. A file that fails to
//! load is refused with its cause and the previous version keeps serving.

pub mod cache;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use sr_proto::sync_config::AdapterPin;
use thiserror::Error;
use tokio::sync::mpsc;

use self::cache::CompiledCache;
use crate::adapter::{Digest, LoadedAdapter};
use crate::sandbox::{LoadError, Sandbox};

/// Why no adapter could be chosen.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SelectError {
    /// Nothing serves the source type (or matches the pin).
    #[error(
        "no installed adapter serves source type `{source_type}`{pin}; installed: {installed}. Copy a component serving it into {dir}"
    )]
    NoAdapter {
        /// The source type asked for.
        source_type: String,
        /// The pin, described, if one was given.
        pin: String,
        /// Installed adapters, `name@version (source type)`.
        installed: String,
        /// The registry directory.
        dir: String,
    },
}

/// Why the registry could not start.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// The directory could not be read or created.
    #[error("adapter directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The directory watcher could not start.
    #[error("watching adapter directory {path}: {message}")]
    Watch {
        /// The directory.
        path: PathBuf,
        /// Cause.
        message: String,
    },
}

/// One loaded file.
#[derive(Debug, Clone)]
pub struct RegistryEntry {
    /// The file.
    pub path: PathBuf,
    /// The loaded adapter.
    pub adapter: Arc<LoadedAdapter>,
    /// When it was loaded.
    pub loaded_at: SystemTime,
}

/// What a scan changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanReport {
    /// Files loaded (new or changed), `path: name@version`.
    pub loaded: Vec<String>,
    /// Files whose content did not change.
    pub unchanged: usize,
    /// Files gone from the directory.
    pub removed: Vec<String>,
    /// Files refused, with the cause.
    pub refused: Vec<String>,
}

/// A listing row.
#[derive(Debug, Clone, Serialize)]
pub struct InstalledAdapter {
    /// Adapter name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Source type served.
    pub source_type: String,
    /// Component digest.
    pub digest: String,
    /// File.
    pub path: String,
}

#[derive(Default)]
struct State {
    entries: BTreeMap<PathBuf, RegistryEntry>,
    /// Digests of files that failed to load, so a broken file is not
    /// recompiled on every scan.
    refused: HashMap<PathBuf, Digest>,
}

/// A directory of adapter components.
pub struct Registry {
    sandbox: Arc<Sandbox>,
    dir: PathBuf,
    cache: Option<CompiledCache>,
    state: RwLock<State>,
    scan_lock: tokio::sync::Mutex<()>,
}

impl Registry {
    /// Opens `dir` (created if missing) and loads every `*.wasm` in it.
    /// Compiled artifacts are cached in `cache_dir` when given.
    pub async fn open(
        sandbox: Arc<Sandbox>,
        dir: impl Into<PathBuf>,
        cache_dir: Option<PathBuf>,
    ) -> Result<(Arc<Self>, ScanReport), RegistryError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| RegistryError::Dir {
            path: dir.clone(),
            source,
        })?;
        let cache =
            match cache_dir {
                Some(path) => Some(CompiledCache::new(&path, sandbox.engine()).map_err(
                    |source| RegistryError::Dir {
                        path: path.clone(),
                        source,
                    },
                )?),
                None => None,
            };
        let registry = Arc::new(Self {
            sandbox,
            dir,
            cache,
            state: RwLock::new(State::default()),
            scan_lock: tokio::sync::Mutex::new(()),
        });
        let report = registry.rescan().await;
        Ok((registry, report))
    }

    /// The registry directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Re-reads the directory: loads new and changed files, forgets removed
    /// ones, refuses broken ones (keeping what was there before).
    pub async fn rescan(&self) -> ScanReport {
        let _guard = self.scan_lock.lock().await;
        let mut report = ScanReport::default();
        let files = match wasm_files(&self.dir) {
            Ok(files) => files,
            Err(error) => {
                report.refused.push(format!(
                    "{}: cannot list directory: {error}",
                    self.dir.display()
                ));
                return report;
            }
        };

        let known: Vec<PathBuf> = self.read_state().entries.keys().cloned().collect();
        for path in known.iter().filter(|p| !files.contains(p)) {
            let mut state = self.write_state();
            if let Some(entry) = state.entries.remove(path) {
                tracing::info!(path = %path.display(), adapter = %entry.adapter.label(), "adapter removed");
                report.removed.push(path.display().to_string());
            }
            state.refused.remove(path);
        }

        for path in files {
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(error) => {
                    report.refused.push(format!("{}: {error}", path.display()));
                    continue;
                }
            };
            let digest = Digest::of(&bytes);
            {
                let state = self.read_state();
                let current = state
                    .entries
                    .get(&path)
                    .map(|e| e.adapter.digest() == &digest);
                let known_bad = state.refused.get(&path) == Some(&digest);
                if current == Some(true) || known_bad {
                    report.unchanged += 1;
                    continue;
                }
            }
            match self.load_bytes(&bytes, digest.clone()).await {
                Ok(adapter) => {
                    let label = adapter.label();
                    tracing::info!(
                        path = %path.display(),
                        adapter = %label,
                        source_type = %adapter.description().source_type,
                        digest = %digest,
                        "adapter loaded"
                    );
                    report.loaded.push(format!("{}: {label}", path.display()));
                    let mut state = self.write_state();
                    state.refused.remove(&path);
                    state.entries.insert(
                        path.clone(),
                        RegistryEntry {
                            path,
                            adapter: Arc::new(adapter),
                            loaded_at: SystemTime::now(),
                        },
                    );
                }
                Err(error) => {
                    let keeps = self
                        .read_state()
                        .entries
                        .get(&path)
                        .map(|e| format!("; {} keeps serving", e.adapter.label()))
                        .unwrap_or_default();
                    tracing::error!(path = %path.display(), digest = %digest, error = %error, "adapter refused{keeps}");
                    report
                        .refused
                        .push(format!("{}: {error}{keeps}", path.display()));
                    self.write_state().refused.insert(path, digest);
                }
            }
        }
        report
    }

    async fn load_bytes(&self, bytes: &[u8], digest: Digest) -> Result<LoadedAdapter, LoadError> {
        let cached = self
            .cache
            .as_ref()
            .and_then(|cache| cache.load(self.sandbox.engine(), &digest));
        let fresh = cached.is_none();
        let component = match cached {
            Some(component) => component,
            None => self.sandbox.compile(bytes)?,
        };
        let adapter = self
            .sandbox
            .prepare(component, digest.clone(), bytes.len() as u64)
            .await?;
        if fresh
            && let Some(cache) = &self.cache
            && let Err(error) = cache.store(&digest, adapter.component())
        {
            tracing::warn!(digest = %digest, error = %error, "could not cache compiled adapter");
        }
        Ok(adapter)
    }

    /// Chooses the adapter for a source: the pinned one, else the newest
    /// version serving `source_type`.
    pub fn select(
        &self,
        source_type: &str,
        pin: Option<&AdapterPin>,
    ) -> Result<Arc<LoadedAdapter>, SelectError> {
        let state = self.read_state();
        let pin_digest = pin
            .and_then(|p| p.digest.as_deref())
            .and_then(Digest::parse);
        let candidates = state.entries.values().filter(|entry| {
            let d = entry.adapter.description();
            let by_type = d.source_type == source_type;
            match pin {
                None => by_type,
                Some(pin) => {
                    let name_ok = pin.name.is_empty() || pin.name == d.name;
                    let version_ok = pin
                        .version
                        .as_deref()
                        .is_none_or(|v| v == d.version.to_string());
                    let digest_ok = pin_digest
                        .as_ref()
                        .is_none_or(|dg| dg == entry.adapter.digest());
                    (by_type || !pin.name.is_empty()) && name_ok && version_ok && digest_ok
                }
            }
        });
        let best = candidates.max_by(|a, b| {
            a.adapter
                .description()
                .version
                .cmp(&b.adapter.description().version)
                .then(a.loaded_at.cmp(&b.loaded_at))
        });
        match best {
            Some(entry) => Ok(entry.adapter.clone()),
            None => Err(SelectError::NoAdapter {
                source_type: source_type.to_string(),
                pin: pin.map(describe_pin).unwrap_or_default(),
                installed: {
                    let list = listing(&state);
                    if list.is_empty() {
                        "none".to_string()
                    } else {
                        list.iter()
                            .map(|a| format!("{}@{} ({})", a.name, a.version, a.source_type))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                },
                dir: self.dir.display().to_string(),
            }),
        }
    }

    /// Every loaded file.
    pub fn list(&self) -> Vec<InstalledAdapter> {
        listing(&self.read_state())
    }

    /// Source types served by loaded adapters.
    pub fn source_types(&self) -> Vec<String> {
        let mut types: Vec<String> = self
            .read_state()
            .entries
            .values()
            .map(|e| e.adapter.description().source_type.clone())
            .collect();
        types.sort();
        types.dedup();
        types
    }

    /// Watches the directory and rescans shortly after files change. The
    /// watch stops when the returned handle is dropped.
    pub fn watch(self: &Arc<Self>) -> Result<RegistryWatch, RegistryError> {
        use notify::Watcher;
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok() {
                    let _ = tx.send(());
                }
            })
            .map_err(|e| RegistryError::Watch {
                path: self.dir.clone(),
                message: e.to_string(),
            })?;
        watcher
            .watch(&self.dir, notify::RecursiveMode::NonRecursive)
            .map_err(|e| RegistryError::Watch {
                path: self.dir.clone(),
                message: e.to_string(),
            })?;
        let registry = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Let a copy finish: rescan after a short quiet period.
                loop {
                    match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                let Some(registry) = registry.upgrade() else {
                    return;
                };
                let report = registry.rescan().await;
                if !report.loaded.is_empty()
                    || !report.removed.is_empty()
                    || !report.refused.is_empty()
                {
                    tracing::info!(
                        loaded = report.loaded.len(),
                        removed = report.removed.len(),
                        refused = report.refused.len(),
                        "adapter directory rescanned"
                    );
                }
            }
        });
        Ok(RegistryWatch {
            _watcher: watcher,
            task,
        })
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Keeps a registry watch alive.
pub struct RegistryWatch {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RegistryWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn listing(state: &State) -> Vec<InstalledAdapter> {
    state
        .entries
        .values()
        .map(|e| {
            let d = e.adapter.description();
            InstalledAdapter {
                name: d.name.clone(),
                version: d.version.to_string(),
                source_type: d.source_type.clone(),
                digest: e.adapter.digest().to_string(),
                path: e.path.display().to_string(),
            }
        })
        .collect()
}

fn describe_pin(pin: &AdapterPin) -> String {
    let mut parts = Vec::new();
    if !pin.name.is_empty() {
        parts.push(format!("name {}", pin.name));
    }
    if let Some(v) = &pin.version {
        parts.push(format!("version {v}"));
    }
    if let Some(d) = &pin.digest {
        parts.push(format!("digest {d}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" pinned to {}", parts.join(", "))
    }
}

fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "wasm") && entry.file_type()?.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
