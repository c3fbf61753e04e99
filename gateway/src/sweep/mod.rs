//! Sweep configuration for monitoring agents, generated from device data.
//! Pure: no I/O. The control plane loads the rows and delivers the result.
//!
//! - [`generate`](fn@generate): one agent's [`SweepDocument`] from its tenant's devices
//!   ([`SweepDevice`]), the integration sources' settings ([`SweepSource`])
//!   and the global defaults ([`SweepDefaults`]), with [`SweepStats`].
//! - [`aggregate`](fn@aggregate): the smallest exact CIDR set covering a set of addresses.
//! - [`document`]: the `sweep.json` shape, its content hash, the GetConfig
//!   `config_json` body and the typed `SweepConfig`.
//! - [`device_metadata`]: what generation reads from a device's metadata,
//!   decoded straight from the stored JSON.
//! - [`source_values`]: ports and modes as they appear in source data.
//!
//! Delivery: `config_version` = `document.config_hash`; `config_json` =
//! [`SweepDocument::agent_config_json`] (written together with the hash by
//! [`generate_with_config_json`]); field 10 = [`SweepDocument::to_proto`],
//! encoded straight from the document by [`SweepDocument::encode_proto`].

pub mod aggregate;
pub mod device_metadata;
pub mod document;
pub mod generate;
pub mod source_values;

pub use aggregate::aggregate;
pub use device_metadata::SweepMetadata;
pub use document::{DeviceTarget, SweepDocument, SweepMode, content_hash};
pub use generate::{
    GeneratedSweep, SweepDefaults, SweepDevice, SweepSettingsError, SweepSource, SweepStats,
    generate, generate_with_config_json,
};
