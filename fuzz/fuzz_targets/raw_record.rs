//! See `pricefeed::fuzzing::raw_record` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pricefeed::fuzzing::raw_record(data));
