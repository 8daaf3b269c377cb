//! A request head and its body framing, as a client connection reads them.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = innergate_dataplane::http::framing::frame_request(data);
});
