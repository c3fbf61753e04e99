//! Host bindings of the `serviceradar:adapter/adapter` world, generated from
//! `wit/adapter.wit`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "serviceradar:adapter/adapter@0.1.0",
    imports: {
        "serviceradar:adapter/host.emit": async | trappable,
        "serviceradar:adapter/host.checkpoint": async | trappable,
        "serviceradar:adapter/host.log": trappable,
    },
    exports: { default: async },
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
    },
    require_store_data_send: true,
});
