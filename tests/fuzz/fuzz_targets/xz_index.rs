#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bootforge::fuzzing::xz_index(data));
