//! The strict chunked-body decoder.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = innergate_dataplane::http::framing::decode_chunked(data);
});
