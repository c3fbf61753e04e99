//! The sweep file is replaced atomically: a reader looping while the writer
//! rewrites it never sees a partial or invalid file.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sr_agent::SweepDocument;
use sr_agent::document::validate;
use sr_agent::sweep_file;

use crate::support::{faker_device, sweep_of};

fn document(targets: u32, tag: u32) -> SweepDocument {
    let devices: Vec<_> = (0..targets)
        .map(|i| faker_device(i, &format!("10.{}.{}.{}", tag % 200, i / 250, i % 250 + 1)))
        .collect();
    let generated = sweep_of(&devices);
    validate(&serde_json::from_slice(&generated.document.to_json()).unwrap())
        .unwrap()
        .document
}

#[test]
fn a_concurrent_reader_never_sees_a_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sweep.json");
    // A large and a small document: a torn write would show as invalid JSON
    // or as a document that is neither.
    let versions = Arc::new([document(2_000, 1), document(3, 2), document(500, 3)]);
    sweep_file::write(&path, &versions[0]).unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (path, done, versions) = (path.clone(), done.clone(), versions.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(Ordering::Relaxed) {
                let bytes = std::fs::read(&path).expect("the file is always there");
                let value: serde_json::Value = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|e| panic!("partial file after {reads} reads: {e}"));
                let seen = validate(&value).unwrap().document;
                assert!(versions.contains(&seen), "a file that was never written");
                reads += 1;
            }
            reads
        })
    };
    for round in 0..300 {
        sweep_file::write(&path, &versions[round % versions.len()]).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert!(reads > 0);
    // Nothing but the file is left in the directory.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn the_local_file_is_read_leniently_as_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sweep.json");
    std::fs::write(
        &path,
        r#"{"networks": ["192.168.1.0/24", "bad"], "ports": [22, 80], "sweep_modes": ["icmp", "tcp"],
            "interval": "5m", "concurrency": 50, "timeout": "2s",
            "icmp_settings": {"rate_limit": 100}}"#,
    )
    .unwrap();
    let validated = sweep_file::read(&path).unwrap().unwrap();
    assert_eq!(validated.document.networks, vec!["192.168.1.0/24"]);
    assert_eq!(validated.warnings.len(), 1);
    assert!(validated.document.extra.contains_key("icmp_settings"));
}
