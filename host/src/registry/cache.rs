//! On-disk cache of compiled components, keyed by the component's digest and
//! the engine's compatibility hash, so a restart does not recompile.
//!
//! The cache directory must be writable only by the sync service's user:
//! loading a cached artifact maps its machine code as-is.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::adapter::Digest;

/// Compiled-artifact cache in one directory.
#[derive(Debug, Clone)]
pub struct CompiledCache {
    dir: PathBuf,
    engine_key: String,
}

impl CompiledCache {
    /// A cache in `dir` for artifacts compiled by `engine`.
    pub fn new(dir: impl Into<PathBuf>, engine: &Engine) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            engine_key: engine_key(engine),
        })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", digest.hex(), self.engine_key))
    }

    /// The cached component for `digest`, if present and loadable. A stale or
    /// corrupt artifact is deleted and reported as a miss.
    pub fn load(&self, engine: &Engine, digest: &Digest) -> Option<Component> {
        let path = self.path(digest);
        if !path.exists() {
            return None;
        }
        // Read into memory rather than mmap the file: a cache file replaced
        // or truncated while mapped would crash the process (SIGBUS).
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(path = %path.display(), error = %error, "cannot read compiled artifact");
                return None;
            }
        };
        // SAFETY: the bytes were written by `store` from `Component::serialize`
        // of an engine with the same compatibility hash (part of the name), in
        // a directory only this service writes. wasmtime additionally checks
        // the artifact header against the engine and refuses incompatible
        // ones, which we treat as a miss.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), error = %error, "discarding unusable compiled artifact");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores the compiled form of `component` (atomically: write + rename).
    pub fn store(&self, digest: &Digest, component: &Component) -> std::io::Result<()> {
        let bytes = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("serializing compiled component: {e}")))?;
        let path = self.path(digest);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &path)
    }
}

/// A stable-per-build key of the engine's compilation settings.
fn engine_key(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}
