//! A response head and its body framing, as an upstream connection reads them.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = innergate_dataplane::http::framing::frame_response(data, false);
});
