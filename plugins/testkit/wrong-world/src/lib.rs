//! **TEST FIXTURE, not a product.**
//!
//! A component built from its own WIT world (`wit/world.wit` in this
//! crate): the adapter world's `describe` and `validate`, with the same
//! shapes, but no `discover`. The sync host's world check must refuse it
//! and name `discover` as the missing export.

wit_bindgen::generate!({
    path: "wit",
    world: "serviceradar:adapter/adapter@0.1.0",
});

struct WrongWorld;

impl Guest for WrongWorld {
    fn describe() -> Description {
        Description {
            name: "wrong-world".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            source_type: "wrong-world".to_string(),
            summary: "TEST FIXTURE: exports describe and validate but not discover".to_string(),
            config_schema:
                r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object"}"#
                    .to_string(),
            hosts: Vec::new(),
        }
    }

    fn validate(_config: String) -> Result<(), AdapterError> {
        Ok(())
    }
}

export!(WrongWorld);
