//! The sync config document of a sync service and its version. Pure: no
//! I/O, no clock.
//!
//! Canonical form: compact serde_json output of the wire structs (fields in
//! declaration order), with every JSON object map (credentials, settings,
//! and objects nested in them) in sorted key order, and sources sorted by
//! key. The version is the hex SHA-256 of those bytes.
//!
//! A document is assembled from per-source fragments, so a rebuild after a
//! change re-renders only the sources that changed; [`assemble`] produces
//! exactly the bytes `serde_json::to_vec` gives for the whole document.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sr_proto::sync_config::{Scope, SourceConfig, SyncConfigDocument};
use uuid::Uuid;

/// A rendered document: canonical bytes and their version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedConfig {
    /// Hex SHA-256 of `json`.
    pub version: String,
    /// Canonical JSON.
    pub json: Bytes,
}

/// One source, rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFragment {
    /// Its key in the document.
    pub key: String,
    /// Canonical JSON of the `SourceConfig`.
    pub json: Bytes,
}

/// The key of a source in a document: `<tenant_slug>/<name>` in platform
/// scope, the name in tenant scope.
pub fn source_key(scope: Scope, tenant_slug: &str, name: &str) -> String {
    match scope {
        Scope::Platform => format!("{tenant_slug}/{name}"),
        Scope::Tenant => name.to_string(),
    }
}

/// Builds the document for a sync service from the sources assigned to it.
pub fn build_document(
    sync_service_id: Uuid,
    component_id: &str,
    scope: Scope,
    sources: Vec<SourceConfig>,
) -> SyncConfigDocument {
    let sources: BTreeMap<String, SourceConfig> = sources
        .into_iter()
        .map(|s| (source_key(scope, &s.tenant_slug, &s.name), s))
        .collect();
    SyncConfigDocument {
        sync_service_id: sync_service_id.to_string(),
        component_id: component_id.to_string(),
        scope,
        sources,
    }
}

/// Renders one source canonically.
pub fn render_source(
    scope: Scope,
    mut source: SourceConfig,
) -> Result<SourceFragment, serde_json::Error> {
    source.credentials = sorted_map(std::mem::take(&mut source.credentials));
    source.settings = sorted_map(std::mem::take(&mut source.settings));
    Ok(SourceFragment {
        key: source_key(scope, &source.tenant_slug, &source.name),
        json: Bytes::from(serde_json::to_vec(&source)?),
    })
}

/// Assembles a document from fragments (in any order; sorted here by key)
/// and computes its version.
pub fn assemble<'a>(
    sync_service_id: &str,
    component_id: &str,
    scope: Scope,
    fragments: impl IntoIterator<Item = &'a SourceFragment>,
) -> Result<RenderedConfig, serde_json::Error> {
    let mut fragments: Vec<&SourceFragment> = fragments.into_iter().collect();
    fragments.sort_by(|a, b| a.key.cmp(&b.key));
    let size: usize = fragments
        .iter()
        .map(|f| f.json.len() + f.key.len() + 4)
        .sum();
    let mut out = Vec::with_capacity(size + 256);
    out.extend_from_slice(b"{\"sync_service_id\":");
    serde_json::to_writer(&mut out, sync_service_id)?;
    out.extend_from_slice(b",\"component_id\":");
    serde_json::to_writer(&mut out, component_id)?;
    out.extend_from_slice(b",\"scope\":");
    serde_json::to_writer(&mut out, &scope)?;
    out.extend_from_slice(b",\"sources\":{");
    for (i, fragment) in fragments.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, &fragment.key)?;
        out.push(b':');
        out.extend_from_slice(&fragment.json);
    }
    out.extend_from_slice(b"}}");
    let version = hex::encode(Sha256::digest(&out));
    Ok(RenderedConfig {
        version,
        json: Bytes::from(out),
    })
}

/// Renders a whole document (every source) canonically.
pub fn render(doc: &SyncConfigDocument) -> Result<RenderedConfig, serde_json::Error> {
    let fragments = doc
        .sources
        .values()
        .map(|s| render_source(doc.scope, s.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    assemble(
        &doc.sync_service_id,
        &doc.component_id,
        doc.scope,
        &fragments,
    )
}

/// The map with its keys (and those of nested objects) in sorted order,
/// whichever map type serde_json was built with (its `preserve_order`
/// feature may be on in a larger build; insertion in sorted order then
/// iterates sorted too).
fn sorted_map(map: Map<String, Value>) -> Map<String, Value> {
    let mut entries: Vec<(String, Value)> = map.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
        .into_iter()
        .map(|(k, v)| (k, sorted_value(v)))
        .collect()
}

fn sorted_value(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(sorted_map(map)),
        Value::Array(items) => Value::Array(items.into_iter().map(sorted_value).collect()),
        scalar => scalar,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn source(slug: &str, name: &str) -> SourceConfig {
        SourceConfig {
            id: format!("{slug}-{name}-id"),
            name: name.to_string(),
            source_type: "armis".into(),
            endpoint: "https://x.example".into(),
            credentials: serde_json::from_str(r#"{"z":"1","a":"2"}"#).unwrap(),
            queries: vec![],
            poll_interval: None,
            discovery_interval: Some(Duration::from_secs(3600)),
            sweep_interval: None,
            agent_id: String::new(),
            partition: "default".into(),
            network_blacklist: vec![],
            page_size: None,
            tenant_id: format!("{slug}-tenant"),
            tenant_slug: slug.to_string(),
            sync_service_id: "ss".into(),
            adapter: None,
            settings: serde_json::from_str(r#"{"b":{"y":1,"x":2},"a":[3,{"d":1,"c":2}]}"#).unwrap(),
        }
    }

    #[test]
    fn platform_scope_keys_by_tenant_and_name() {
        let doc = build_document(
            Uuid::nil(),
            "platform-sync",
            Scope::Platform,
            vec![source("globex", "netbox"), source("acme", "armis")],
        );
        let keys: Vec<&String> = doc.sources.keys().collect();
        assert_eq!(keys, ["acme/armis", "globex/netbox"]);
        let edge = build_document(
            Uuid::nil(),
            "edge",
            Scope::Tenant,
            vec![source("acme", "armis")],
        );
        assert!(edge.sources.contains_key("armis"));
    }

    #[test]
    fn assembled_bytes_equal_serde_output_of_the_document() {
        let doc = build_document(
            Uuid::from_u128(5),
            "platform-sync",
            Scope::Platform,
            vec![
                source("globex", "netbox"),
                source("acme", "armis"),
                source("acme", "b"),
            ],
        );
        let rendered = render(&doc).unwrap();
        let mut expected = doc.clone();
        for s in expected.sources.values_mut() {
            s.credentials = sorted_map(std::mem::take(&mut s.credentials));
            s.settings = sorted_map(std::mem::take(&mut s.settings));
        }
        assert_eq!(rendered.json, serde_json::to_vec(&expected).unwrap());
        let parsed: SyncConfigDocument = serde_json::from_slice(&rendered.json).unwrap();
        assert_eq!(parsed, doc);
        // Fragments in any order give the same document.
        let mut fragments: Vec<SourceFragment> = doc
            .sources
            .values()
            .map(|s| render_source(Scope::Platform, s.clone()).unwrap())
            .collect();
        fragments.reverse();
        let again = assemble(
            &doc.sync_service_id,
            &doc.component_id,
            doc.scope,
            &fragments,
        )
        .unwrap();
        assert_eq!(again, rendered);
    }

    #[test]
    fn maps_are_sorted_at_every_level() {
        let fragment = render_source(Scope::Tenant, source("acme", "armis")).unwrap();
        let text = std::str::from_utf8(&fragment.json).unwrap();
        assert!(
            text.contains(r#""credentials":{"a":"2","z":"1"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#""settings":{"a":[3,{"c":2,"d":1}],"b":{"x":2,"y":1}}"#),
            "{text}"
        );
    }

    #[test]
    fn version_is_stable_and_changes_with_content() {
        let a = build_document(
            Uuid::nil(),
            "p",
            Scope::Platform,
            vec![source("acme", "armis")],
        );
        let b = build_document(
            Uuid::nil(),
            "p",
            Scope::Platform,
            vec![source("acme", "armis")],
        );
        let ra = render(&a).unwrap();
        assert_eq!(ra, render(&b).unwrap());
        assert_eq!(ra.version.len(), 64);
        assert_eq!(ra.version, hex::encode(Sha256::digest(&ra.json)));

        let mut changed = source("acme", "armis");
        changed.endpoint = "https://y.example".into();
        let c = build_document(Uuid::nil(), "p", Scope::Platform, vec![changed]);
        assert_ne!(render(&c).unwrap().version, ra.version);

        let mut creds = source("acme", "armis");
        creds.credentials.insert("a".into(), Value::from("rotated"));
        let d = build_document(Uuid::nil(), "p", Scope::Platform, vec![creds]);
        assert_ne!(render(&d).unwrap().version, ra.version);

        let e = build_document(Uuid::nil(), "p", Scope::Platform, vec![]);
        assert_eq!(
            std::str::from_utf8(&render(&e).unwrap().json).unwrap(),
            r#"{"sync_service_id":"00000000-0000-0000-0000-000000000000","component_id":"p","scope":"platform","sources":{}}"#
        );
    }
}
