//! The tunnel listener's parsers: muxado frames and the agent protocol's requests.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    innergate_dataplane::tunnel::parse_untrusted(data);
});
