//! A table message of the control link, as the data plane decodes it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = innergate_table::wire::decode_table(data);
});
