//! A traffic policy document (YAML or JSON), as control validates it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = innergate_table::Policy::parse(text);
    }
});
