//! See `pricefeed::fuzzing::channels_toml` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pricefeed::fuzzing::channels_toml(data));
