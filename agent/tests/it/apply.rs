//! The application rules of the sweep reference, case by case, through the
//! public API: a GetConfig response in, a decision out.

use serde_json::{Value, json};
use sr_agent::document::validate;
use sr_agent::{Decision, KeepReason, SweepDocument, decide, sweep_section};
use sr_proto::monitoring::{AgentConfigResponse, SweepConfig};

use crate::support::{armis_device, faker_device, sweep_of};

fn with_json(config_json: Value) -> AgentConfigResponse {
    AgentConfigResponse {
        config_version: "v2".into(),
        config_json: serde_json::to_vec(&config_json).unwrap(),
        ..Default::default()
    }
}

fn with_typed(sweep: SweepConfig) -> AgentConfigResponse {
    AgentConfigResponse {
        config_version: "v2".into(),
        sweep: Some(sweep),
        ..Default::default()
    }
}

fn doc(value: Value) -> SweepDocument {
    validate(&value).unwrap().document
}

fn local_file() -> SweepDocument {
    doc(
        json!({"networks": ["192.168.1.0/24"], "ports": [22], "sweep_modes": ["icmp"],
               "interval": "10m"}),
    )
}

fn replaced(decision: Decision) -> (SweepDocument, Vec<String>) {
    match decision {
        Decision::Replace { document, warnings } => (document, warnings),
        other => panic!("expected a replacement, got {other:?}"),
    }
}

#[test]
fn a_sweep_section_replaces_the_whole_configuration() {
    let current = local_file();
    let generated = sweep_of(&[faker_device(1, "10.0.0.1"), armis_device(2, "10.0.0.2")]);
    let response =
        with_json(serde_json::from_slice(&generated.document.agent_config_json()).unwrap());
    let (document, warnings) = replaced(decide(Some(&current), &sweep_section(&response)));
    assert!(warnings.is_empty(), "{warnings:?}");
    // Nothing of the local file survives: the gateway's document as is.
    let written = serde_json::to_value(&document).unwrap();
    let sent: Value = serde_json::from_slice(&generated.document.to_json()).unwrap();
    assert_eq!(written, sent);
    assert!(!document.networks.contains(&"192.168.1.0/24".to_string()));
}

#[test]
fn no_section_keeps_the_current_configuration() {
    let current = local_file();
    for response in [
        AgentConfigResponse::default(),
        with_json(json!({})),
        with_json(json!({"sweep": null})),
        with_json(json!({"checks": []})),
    ] {
        assert_eq!(
            decide(Some(&current), &sweep_section(&response)),
            Decision::Keep(KeepReason::Absent)
        );
        // Also with nothing current: nothing is written.
        assert_eq!(
            decide(None, &sweep_section(&response)),
            Decision::Keep(KeepReason::Absent)
        );
    }
}

#[test]
fn an_empty_section_clears_the_targets() {
    let current = doc(serde_json::from_slice(
        &sweep_of(&[faker_device(1, "10.0.0.1")]).document.to_json(),
    )
    .unwrap());
    // As the gateway sends it for an agent with no devices: both forms.
    let empty = sweep_of(&[]);
    for response in [
        with_json(serde_json::from_slice(&empty.document.agent_config_json()).unwrap()),
        with_typed(empty.document.to_proto()),
        with_json(json!({"sweep": {}})),
        with_typed(SweepConfig::default()),
    ] {
        let (document, _) = replaced(decide(Some(&current), &sweep_section(&response)));
        assert!(document.device_targets.is_empty() && document.networks.is_empty());
        assert!(document.is_empty());
    }
}

#[test]
fn the_same_config_hash_is_a_no_op() {
    let generated = sweep_of(&[faker_device(1, "10.0.0.1")]);
    let current = doc(serde_json::from_slice(&generated.document.to_json()).unwrap());
    let json_response =
        with_json(serde_json::from_slice(&generated.document.agent_config_json()).unwrap());
    assert_eq!(
        decide(Some(&current), &sweep_section(&json_response)),
        Decision::Keep(KeepReason::SameHash)
    );
    assert_eq!(
        decide(
            Some(&current),
            &sweep_section(&with_typed(generated.document.to_proto()))
        ),
        Decision::Keep(KeepReason::SameHash)
    );
    // The hash decides, not the content.
    let mut same_hash = json!({"sweep": {"networks": ["10.9.9.9/32"],
                                          "config_hash": generated.document.config_hash}});
    assert_eq!(
        decide(Some(&current), &sweep_section(&with_json(same_hash.take()))),
        Decision::Keep(KeepReason::SameHash)
    );
    // A hash-less section equal to the current content is a no-op too.
    let local = local_file();
    let response = with_json(json!({"sweep": serde_json::to_value(&local).unwrap()}));
    assert_eq!(
        decide(Some(&local), &sweep_section(&response)),
        Decision::Keep(KeepReason::Unchanged)
    );
}

#[test]
fn a_different_hash_replaces() {
    let before = sweep_of(&[faker_device(1, "10.0.0.1")]);
    let after = sweep_of(&[faker_device(1, "10.0.0.99")]);
    let current = doc(serde_json::from_slice(&before.document.to_json()).unwrap());
    let (document, _) = replaced(decide(
        Some(&current),
        &sweep_section(&with_typed(after.document.to_proto())),
    ));
    assert_eq!(document.config_hash, after.document.config_hash);
    assert_eq!(document.networks, vec!["10.0.0.99/32"]);
}

#[test]
fn invalid_targets_are_skipped_with_a_warning_and_unknown_modes_ignored() {
    let response = with_json(json!({"sweep": {
        "networks": ["10.0.0.0/30", "10.0.0.300/32"],
        "sweep_modes": ["icmp", "udp"],
        "device_targets": [
            {"network": "10.0.0.1/32", "sweep_modes": ["tcp", "bogus"], "source": "faker"},
            {"network": "not-an-ip", "source": "faker"},
            {"network": "10.0.0.2"},
            42
        ],
        "config_hash": "h2"
    }}));
    let (document, warnings) = replaced(decide(Some(&local_file()), &sweep_section(&response)));
    assert_eq!(document.networks, vec!["10.0.0.0/30"]);
    assert_eq!(document.sweep_modes, vec!["icmp"]);
    let networks: Vec<&str> = document
        .device_targets
        .iter()
        .map(|t| t.network.as_str())
        .collect();
    assert_eq!(networks, ["10.0.0.1/32", "10.0.0.2"]);
    assert_eq!(document.device_targets[0].sweep_modes, vec!["tcp"]);
    assert_eq!(warnings.len(), 5, "{warnings:#?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("device_targets[1]") && w.contains("not-an-ip"))
    );
    assert!(warnings.iter().any(|w| w.contains("\"udp\"")));
    // A typed target without a usable IP is skipped the same way.
    let mut typed = sweep_of(&[faker_device(1, "10.0.0.1")]).document.to_proto();
    typed.device_targets[0].ip = "10.0.0.256".into();
    typed.config_hash = "h3".into();
    let (document, warnings) = replaced(decide(None, &sweep_section(&with_typed(typed))));
    assert!(document.device_targets.is_empty());
    assert_eq!(warnings.len(), 1);
}

#[test]
fn a_section_with_the_wrong_structure_is_refused_whole() {
    let current = local_file();
    for bad in [
        json!({"sweep": {"networks": "10.0.0.0/8"}}),
        json!({"sweep": {"device_targets": {"network": "10.0.0.1"}}}),
        json!({"sweep": "10.0.0.0/8"}),
    ] {
        assert!(matches!(
            decide(Some(&current), &sweep_section(&with_json(bad))),
            Decision::Keep(KeepReason::Refused(_))
        ));
    }
    let unreadable = AgentConfigResponse {
        config_json: b"{\"sweep\": {".to_vec(),
        ..Default::default()
    };
    assert!(matches!(
        decide(Some(&current), &sweep_section(&unreadable)),
        Decision::Keep(KeepReason::Refused(_))
    ));
}

#[test]
fn typed_and_json_forms_give_the_same_configuration() {
    let generated = sweep_of(&[
        faker_device(1, "10.0.0.1"),
        faker_device(2, "2001:db8::2"),
        armis_device(3, "10.0.0.3"),
    ]);
    let (from_json, _) = replaced(decide(
        None,
        &sweep_section(&with_json(
            serde_json::from_slice(&generated.document.agent_config_json()).unwrap(),
        )),
    ));
    let (from_typed, warnings) = replaced(decide(
        None,
        &sweep_section(&with_typed(generated.document.to_proto())),
    ));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(from_typed.networks, from_json.networks);
    assert_eq!(from_typed.ports, from_json.ports);
    assert_eq!(from_typed.sweep_modes, from_json.sweep_modes);
    assert_eq!(from_typed.device_targets, from_json.device_targets);
    assert_eq!(from_typed.interval, from_json.interval);
    assert_eq!(from_typed.config_hash, from_json.config_hash);
    // Concurrency and timeout only travel in the JSON form.
    assert_eq!(from_json.concurrency, Some(100));
    assert_eq!(from_typed.concurrency, None);
}
