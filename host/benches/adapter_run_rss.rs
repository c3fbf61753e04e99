//! Peak RSS of `sr-sync adapter run` over Faker devices written to /dev/null,
//! at several counts, to show memory stays flat as the count grows.
//!
//! Run: `cargo bench -p sr-host --bench adapter_run_rss`.

use std::process::{Command, Stdio};
use std::time::Instant;

/// Runs the command and returns (exit success, peak RSS in KiB) of the child.
fn run_measured(command: &mut Command) -> (bool, i64) {
    let child = command.spawn().expect("spawn sr-sync");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: wait4 writes only the status and the rusage we pass; the pid
    // is our own child, reaped exactly once here.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4 failed");
    std::mem::forget(child);
    (
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        usage.ru_maxrss,
    )
}

fn main() {
    let faker = sr_testkit::components::component("faker").expect("plugins build");
    let dir = tempfile::tempdir().expect("tempdir");
    println!("adapter_run_rss: sr-sync adapter run faker.wasm > /dev/null");
    println!(
        "  {:>10} {:>12} {:>10}",
        "devices", "peak RSS MB", "seconds"
    );
    for count in [100_000u64, 250_000, 500_000, 1_000_000] {
        let config = dir.path().join(format!("faker-{count}.json"));
        std::fs::write(
            &config,
            format!(r#"{{"settings": {{"seed": 1, "count": {count}}}}}"#),
        )
        .expect("write config");
        let started = Instant::now();
        let (ok, rss_kib) = run_measured(
            Command::new(env!("CARGO_BIN_EXE_sr-sync"))
                .args(["adapter", "run"])
                .arg(&faker)
                .arg("--config")
                .arg(&config)
                .arg("--no-progress")
                .env("SR_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        assert!(ok, "sr-sync adapter run failed for {count} devices");
        println!(
            "  {count:>10} {:>12.1} {:>10.2}",
            rss_kib as f64 / 1024.0,
            started.elapsed().as_secs_f64()
        );
    }
    println!("  target: ≤ 150 MB at 1,000,000, flat as the count grows");
}
