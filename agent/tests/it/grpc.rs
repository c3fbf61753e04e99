//! Pulls from a gateway over real mTLS (certificates issued in the test):
//! the first pull writes the file, an unchanged version leaves it alone,
//! changed content rewrites it, and an unreachable gateway changes nothing.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sr_agent::{ConfigSource, KeepReason, PollOutcome, SweepAgent};

use crate::support::{
    FakeGateway, Pki, armis_device, faker_device, load_config, local_any, start, sweep_of,
};

const AGENT: &str = "agent-x";

/// The file's bytes and inode: a rewrite (rename) always changes the inode.
fn snapshot(path: &Path) -> (Vec<u8>, u64) {
    (
        std::fs::read(path).unwrap(),
        std::fs::metadata(path).unwrap().ino(),
    )
}

fn file_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test]
async fn pulls_write_once_skip_unchanged_and_rewrite_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::issue(AGENT);
    let gateway = FakeGateway::default();
    let devices = vec![
        faker_device(1, "10.0.0.1"),
        faker_device(2, "10.0.0.2"),
        faker_device(3, "10.0.0.3"),
        armis_device(4, "10.0.0.4"),
        armis_device(5, "2001:db8::5"),
    ];
    let first = sweep_of(&devices);
    gateway.state.lock().unwrap().serve(&first);
    let server = start(gateway.clone(), &pki, local_any()).await;
    let config = load_config(&pki.write_agent_config(dir.path(), AGENT, server.addr));
    let mut agent = SweepAgent::new(&config).unwrap();
    assert_eq!(agent.source(), ConfigSource::None);

    // First pull: the file is written with exactly the gateway's document.
    let poll = agent.poll_once().await.unwrap();
    assert!(
        matches!(poll.outcome, PollOutcome::Written { targets: 5, .. }),
        "{poll:?}"
    );
    assert_eq!(poll.next_poll, std::time::Duration::from_secs(60));
    let sent: serde_json::Value = serde_json::from_slice(&first.document.to_json()).unwrap();
    assert_eq!(file_json(&config.sweep_file), sent);
    assert_eq!(agent.source(), ConfigSource::Gateway);
    assert_eq!(agent.version(), first.config_version());
    let written = snapshot(&config.sweep_file);

    // Same version: not_modified, the file untouched.
    let poll = agent.poll_once().await.unwrap();
    assert_eq!(poll.outcome, PollOutcome::NotModified);
    assert_eq!(snapshot(&config.sweep_file), written);

    // A re-sync that changed nothing generates the same version.
    let resync = sweep_of(&devices.iter().rev().cloned().collect::<Vec<_>>());
    gateway.state.lock().unwrap().serve(&resync);
    assert_eq!(
        agent.poll_once().await.unwrap().outcome,
        PollOutcome::NotModified
    );
    assert_eq!(snapshot(&config.sweep_file), written);

    // A device's IP moved: new version, file rewritten.
    let mut moved = devices.clone();
    moved[1] = faker_device(2, "10.0.7.2");
    let second = sweep_of(&moved);
    assert_ne!(second.config_version(), first.config_version());
    gateway.state.lock().unwrap().serve(&second);
    let poll = agent.poll_once().await.unwrap();
    assert!(
        matches!(poll.outcome, PollOutcome::Written { .. }),
        "{poll:?}"
    );
    let sent: serde_json::Value = serde_json::from_slice(&second.document.to_json()).unwrap();
    assert_eq!(file_json(&config.sweep_file), sent);
    assert!(
        sent["networks"]
            .as_array()
            .unwrap()
            .contains(&"10.0.7.2/32".into())
    );

    // A new version with the same sweep content: no rewrite.
    let rewritten = snapshot(&config.sweep_file);
    gateway.state.lock().unwrap().version = "v-other-settings".into();
    let poll = agent.poll_once().await.unwrap();
    assert_eq!(poll.outcome, PollOutcome::Kept(KeepReason::SameHash));
    assert_eq!(snapshot(&config.sweep_file), rewritten);
    assert_eq!(agent.version(), "v-other-settings");

    // The gateway saw one Hello (mTLS-authenticated) and versioned pulls.
    {
        let state = gateway.state.lock().unwrap();
        assert_eq!(state.hellos.len(), 1);
        assert_eq!(state.hellos[0].agent_id, AGENT);
        assert_eq!(state.hellos[0].capabilities, vec!["sweep"]);
        assert_eq!(state.hellos[0].config_source, "default");
        let versions: Vec<&str> = state
            .config_requests
            .iter()
            .map(|r| r.config_version.as_str())
            .collect();
        assert_eq!(versions[0], "");
        assert_eq!(versions[1], first.config_version());
        assert_eq!(state.not_modified_answers, 2);
    }
    server.stop().await;
}

#[tokio::test]
async fn an_unreachable_gateway_keeps_the_last_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::issue(AGENT);
    let gateway = FakeGateway::default();
    let good = sweep_of(&[faker_device(1, "10.1.0.1"), faker_device(2, "10.1.0.2")]);
    gateway.state.lock().unwrap().serve(&good);
    let server = start(gateway.clone(), &pki, local_any()).await;
    let addr = server.addr;
    let config = load_config(&pki.write_agent_config(dir.path(), AGENT, addr));
    let mut agent = SweepAgent::new(&config).unwrap();
    agent.poll_once().await.unwrap();
    let last_good = snapshot(&config.sweep_file);
    let current = agent.current().cloned();

    server.stop().await;
    for _ in 0..3 {
        let err = agent.poll_once().await.unwrap_err();
        assert!(err.to_string().contains("Unavailable"), "{err}");
        assert_eq!(snapshot(&config.sweep_file), last_good);
        assert_eq!(agent.current().cloned(), current);
    }

    // Back, with new content: the agent says Hello again and applies it.
    let newer = sweep_of(&[faker_device(1, "10.1.0.1")]);
    gateway.state.lock().unwrap().serve(&newer);
    let server = start(gateway.clone(), &pki, addr).await;
    let poll = agent.poll_once().await.unwrap();
    assert!(
        matches!(poll.outcome, PollOutcome::Written { targets: 1, .. }),
        "{poll:?}"
    );
    assert_eq!(gateway.state.lock().unwrap().hellos.len(), 2);
    assert_eq!(
        gateway.state.lock().unwrap().hellos[1].config_source,
        "remote"
    );
    server.stop().await;
}

#[tokio::test]
async fn no_sweep_section_leaves_the_local_file_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::issue(AGENT);
    let gateway = FakeGateway::default();
    gateway.state.lock().unwrap().version = "v-no-sweep".into();
    let server = start(gateway.clone(), &pki, local_any()).await;
    let config = load_config(&pki.write_agent_config(dir.path(), AGENT, server.addr));
    std::fs::write(
        &config.sweep_file,
        r#"{"networks": ["192.168.50.0/24"], "ports": [22], "sweep_modes": ["icmp"], "interval": "5m"}"#,
    )
    .unwrap();
    let local = snapshot(&config.sweep_file);
    let mut agent = SweepAgent::new(&config).unwrap();
    assert_eq!(agent.source(), ConfigSource::LocalFile);

    let poll = agent.poll_once().await.unwrap();
    assert_eq!(poll.outcome, PollOutcome::Kept(KeepReason::Absent));
    assert_eq!(snapshot(&config.sweep_file), local);
    assert_eq!(agent.source(), ConfigSource::LocalFile);
    assert_eq!(
        gateway.state.lock().unwrap().hellos[0].config_source,
        "local"
    );

    // An empty section (an agent with no devices) clears the targets.
    gateway.state.lock().unwrap().serve(&sweep_of(&[]));
    let poll = agent.poll_once().await.unwrap();
    assert!(
        matches!(
            poll.outcome,
            PollOutcome::Written {
                targets: 0,
                networks: 0,
                ..
            }
        ),
        "{poll:?}"
    );
    let file = file_json(&config.sweep_file);
    assert_eq!(file["networks"], serde_json::json!([]));
    assert_eq!(file["device_targets"], serde_json::json!([]));
    server.stop().await;
}

#[tokio::test]
async fn a_gateway_certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::issue(AGENT);
    let impostor = Pki::issue(AGENT);
    let gateway = FakeGateway::default();
    gateway
        .state
        .lock()
        .unwrap()
        .serve(&sweep_of(&[faker_device(1, "10.2.0.1")]));
    let server = start(gateway.clone(), &impostor, local_any()).await;
    let config = load_config(&pki.write_agent_config(dir.path(), AGENT, server.addr));
    let mut agent = SweepAgent::new(&config).unwrap();
    assert!(agent.poll_once().await.is_err());
    assert!(!config.sweep_file.exists());
    assert!(gateway.state.lock().unwrap().hellos.is_empty());
    server.stop().await;
}
