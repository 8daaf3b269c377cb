//! The ClientHello reader of tls passthrough endpoints.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = innergate_dataplane::tls::sni::client_hello_sni(data);
});
