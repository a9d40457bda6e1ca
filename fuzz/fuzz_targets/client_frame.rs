//! See `pricefeed::fuzzing::client_frame` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pricefeed::fuzzing::client_frame(data));
