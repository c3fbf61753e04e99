pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "serviceradar:adapter/adapter@0.1.0",
        generate_all,
        pub_export_macro: true,
        default_bindings_module: "sr_adapter_sdk::bindings",
    });
}
