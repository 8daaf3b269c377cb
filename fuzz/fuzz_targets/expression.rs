//! A CEL expression, compiled for the request phase.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = innergate_table::policy::expr::Expression::compile(
            text,
            innergate_table::policy::Phase::HttpRequest,
        );
    }
});
