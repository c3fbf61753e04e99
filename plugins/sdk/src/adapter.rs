//! The [`Adapter`] trait an author implements, and what its functions
//! return: [`Description`] and [`Summary`].

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::error::AdapterError;
use crate::run::Run;

/// An integration adapter. Implement it on a unit struct and export it with
/// [`export_adapter!`](crate::export_adapter); the SDK parses the
/// configuration, builds the [`Run`] and converts results and errors to the
/// WIT types.
pub trait Adapter {
    /// The adapter's own settings: the `settings` object of the integration
    /// configuration. Derive `serde::Deserialize` and `schemars::JsonSchema`;
    /// use serde defaults for optional fields and
    /// `#[serde(deny_unknown_fields)]` to catch typos. An adapter without
    /// settings uses [`NoSettings`](crate::NoSettings).
    type Settings: DeserializeOwned + JsonSchema;

    /// What the adapter is. Must not do I/O: it runs with no egress.
    fn describe() -> Description;

    /// Checks a configuration that already parsed (field types are right)
    /// and, where the source allows, the credentials with one cheap request.
    /// The default accepts every configuration that parses.
    fn validate(config: &Config<Self::Settings>) -> Result<(), AdapterError> {
        let _ = config;
        Ok(())
    }

    /// Pages through the source, emitting devices with [`Run::emit`], and
    /// says how the run ended. Devices still buffered when it returns are
    /// flushed to the host, whether it returns `Ok` or `Err`.
    fn discover(run: &mut Run<Self::Settings>) -> Result<Summary, AdapterError>;
}

/// What an adapter is and what it needs; returned by [`Adapter::describe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// Adapter name: lower-case letters, digits and `-`.
    pub name: String,
    /// Adapter version, semver; usually `env!("CARGO_PKG_VERSION")`.
    pub version: String,
    /// The integration source type this adapter serves.
    pub source_type: String,
    /// One line for humans: what the adapter reads.
    pub summary: String,
    /// Hosts needed besides the integration's `endpoint`
    /// (`*.example.com` matches sub-domains).
    pub hosts: Vec<String>,
    /// JSON Schema of the configuration. `None` (the default) derives it
    /// from `Config<Settings>`.
    pub config_schema: Option<String>,
}

impl Description {
    /// A description with no extra hosts and a derived configuration schema.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        source_type: impl Into<String>,
        summary: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            source_type: source_type.into(),
            summary: summary.into(),
            hosts: Vec::new(),
            config_schema: None,
        }
    }

    /// Declares a host needed besides the integration's `endpoint`.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.hosts.push(host.into());
        self
    }

    /// Replaces the derived configuration schema with a hand-written one
    /// (JSON Schema draft 2020-12, as a JSON string).
    pub fn config_schema(mut self, schema_json: impl Into<String>) -> Self {
        self.config_schema = Some(schema_json.into());
        self
    }
}

/// How a discovery run ended; returned by [`Adapter::discover`]. The device
/// count is filled in by the SDK from what [`Run::emit`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// True when the run emitted the complete inventory.
    pub complete: bool,
    /// Where the next incremental run should start, if anywhere.
    pub cursor: Option<String>,
}

impl Summary {
    /// The run emitted the complete inventory: devices not emitted are no
    /// longer in the source.
    pub fn complete() -> Self {
        Self {
            complete: true,
            cursor: None,
        }
    }

    /// The run emitted only changes (since the cursor it started from).
    pub fn incremental() -> Self {
        Self {
            complete: false,
            cursor: None,
        }
    }

    /// Sets where the next incremental run should start.
    pub fn with_cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }
}
