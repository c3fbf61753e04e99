//! The glue between an [`Adapter`] and the generated WIT exports.

use std::marker::PhantomData;
use std::sync::Once;

use crate::adapter::Adapter;
use crate::bindings::Guest;
use crate::bindings::serviceradar::adapter::types as wit;
use crate::config::{Config, config_schema};
use crate::run::{HostSink, Run};

/// Implements the generated `Guest` trait for an [`Adapter`]. Used through
/// [`export_adapter!`](crate::export_adapter); not meant to be named.
#[doc(hidden)]
pub struct Export<A>(PhantomData<A>);

impl<A: Adapter> Guest for Export<A> {
    fn describe() -> wit::Description {
        forward_panics_to_host_log();
        let d = A::describe();
        wit::Description {
            config_schema: d.config_schema.unwrap_or_else(config_schema::<A::Settings>),
            name: d.name,
            version: d.version,
            source_type: d.source_type,
            summary: d.summary,
            hosts: d.hosts,
        }
    }

    fn validate(config: String) -> Result<(), wit::AdapterError> {
        forward_panics_to_host_log();
        let config = Config::<A::Settings>::from_json(&config)?;
        A::validate(&config)?;
        Ok(())
    }

    fn discover(request: wit::DiscoverRequest) -> Result<wit::DiscoverSummary, wit::AdapterError> {
        forward_panics_to_host_log();
        let config = Config::<A::Settings>::from_json(&request.config)?;
        let mut run = Run::new(
            config,
            request.cursor,
            request.run_id,
            request.run_number,
            Box::new(HostSink),
        );
        let outcome = A::discover(&mut run);
        run.flush();
        let summary = outcome?;
        Ok(wit::DiscoverSummary {
            devices: run.emitted(),
            complete: summary.complete,
            cursor: summary.cursor,
        })
    }
}

/// A panic traps the component; the host then only sees the trap. Log the
/// panic message and location through the host first (the default hook
/// still writes them to stderr, which the host may not capture).
fn forward_panics_to_host_log() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info.payload_as_str().unwrap_or("(no message)");
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                .unwrap_or_default();
            crate::log::error(
                &format!("adapter panicked: {message}"),
                &[("location", &location)],
            );
            default_hook(info);
        }));
    });
}

/// Exports an [`Adapter`] implementation as the component's `describe`,
/// `validate` and `discover`: `sr_adapter_sdk::export_adapter!(MyAdapter);`
/// once, at the crate root of a `cdylib` crate. The crate documentation has
/// a complete example.
#[macro_export]
macro_rules! export_adapter {
    ($adapter:ty) => {
        #[doc(hidden)]
        type __SrAdapterExport = $crate::Export<$adapter>;
        $crate::bindings::export!(__SrAdapterExport with_types_in $crate::bindings);
    };
}
