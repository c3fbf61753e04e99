//! The `sweep.json` file: read as the local fallback, written atomically so
//! a reader (this agent's sweeper or any file-only agent) sees the old file
//! or the new one, never a part of either.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

use crate::document::{SweepDocument, Validated, validate};

/// A sweep file that could not be read or written.
#[derive(Debug, Error)]
pub enum SweepFileError {
    /// Reading failed.
    #[error("cannot read sweep file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// The file is not a usable sweep document.
    #[error("sweep file {path} is not usable: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Writing failed; the previous file is unchanged.
    #[error("cannot write sweep file {path} (the previous file is unchanged): {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
}

/// Reads and validates a sweep file; `None` when there is none.
pub fn read(path: &Path) -> Result<Option<Validated>, SweepFileError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SweepFileError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let invalid = |message: String| SweepFileError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
    validate(&value)
        .map(Some)
        .map_err(|e| invalid(e.to_string()))
}

/// Writes a document atomically (pretty JSON with a trailing newline).
pub fn write(path: &Path, document: &SweepDocument) -> Result<(), SweepFileError> {
    let mut bytes = serde_json::to_vec_pretty(document).map_err(|e| SweepFileError::Write {
        path: path.to_path_buf(),
        source: io::Error::other(e),
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes).map_err(|source| SweepFileError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Replaces `path` with `contents` atomically: write a temporary file in the
/// same directory, fsync it, give it the old file's permissions, rename it
/// over `path`, fsync the directory. On failure the old file is untouched
/// and the temporary file removed.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let temp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        if let Ok(existing) = fs::metadata(path) {
            fs::set_permissions(&temp, existing.permissions())?;
        }
        drop(file);
        fs::rename(&temp, path)?;
        // Make the rename itself durable.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_none_and_garbage_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.json");
        assert!(read(&path).unwrap().is_none());
        fs::write(&path, b"{\"networks\": [").unwrap();
        assert!(matches!(read(&path), Err(SweepFileError::Invalid { .. })));
    }

    #[test]
    fn write_then_read_round_trips_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.json");
        let document = SweepDocument {
            networks: vec!["10.0.0.0/24".into()],
            config_hash: "h1".into(),
            ..SweepDocument::default()
        };
        write(&path, &document).unwrap();
        write(&path, &document).unwrap();
        assert_eq!(read(&path).unwrap().unwrap().document, document);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("sweep.json")]);
    }

    #[cfg(unix)]
    #[test]
    fn keeps_the_permissions_of_the_file_it_replaces() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.json");
        fs::write(&path, b"{}").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        write(&path, &SweepDocument::default()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn a_failed_write_reports_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: the rename fails.
        let path = dir.path().join("sweep.json");
        fs::create_dir(&path).unwrap();
        let err = write(&path, &SweepDocument::default()).unwrap_err();
        assert!(
            err.to_string().contains("previous file is unchanged"),
            "{err}"
        );
        assert!(path.is_dir());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let err = write(
            &dir.path().join("absent").join("sweep.json"),
            &SweepDocument::default(),
        );
        assert!(err.is_err());
    }
}
