//! The fuzz corpus (`fuzz/corpus/<target>/`, and any crash inputs saved beside it) replayed
//! through the fuzz targets' checks in every test run: an input that once found a panic stays
//! fixed. The fuzzing itself is `scripts/fuzz.sh`.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} panics", path.display());
        n += 1;
    }
    assert!(n >= 5, "only {n} inputs in {}", dir.display());
}

#[test]
fn raw_record_corpus() {
    replay("raw_record", pricefeed::fuzzing::raw_record);
}

#[test]
fn client_frame_corpus() {
    replay("client_frame", pricefeed::fuzzing::client_frame);
}

#[test]
fn channels_toml_corpus() {
    replay("channels_toml", pricefeed::fuzzing::channels_toml);
}
