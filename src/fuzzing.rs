//! The bodies of the fuzz targets (`fuzz/`), here so that `tests/fuzz_corpus.rs` replays the
//! corpus through exactly the same checks in every test run. Each takes any bytes and panics
//! only on a bug.

use std::sync::OnceLock;

use crate::config::Rules;
use crate::edge::wire::protocol;
use crate::edge::wire::reader::{FrameReader, Incoming};
use crate::transform::process::{ChannelOutput, Processor, RecordMeta};

/// The rules the raw-record target prices with: the repository's own channels.toml.
const RULES: &str = include_str!("../channels.toml");

/// A raw record (the first byte says how many of the next bytes are the Kafka key, 0 for none;
/// the rest is the value) through decode → validate → price every channel → encode: a price or
/// a rejection with its reason; a published price is a JSON object with the symbol it is keyed by.
pub fn raw_record(data: &[u8]) {
    static R: OnceLock<Rules> = OnceLock::new();
    let rules = R.get_or_init(|| Rules::parse(RULES, "channels.toml").expect("channels.toml"));
    let (key, value) = match data.split_first() {
        Some((&n, rest)) if n > 0 && (n as usize) <= rest.len() => {
            (Some(&rest[..n as usize]), &rest[n as usize..])
        }
        Some((_, rest)) => (None, rest),
        None => (None, data),
    };
    let meta = RecordMeta {
        key,
        timestamp_ms: Some(1_700_000_000_000),
    };
    let mut p = Processor::new();
    let _ = p.process(rules, None, meta, value, 1_700_000_000_500, |_, out| {
        if let ChannelOutput::Publish { key, value, .. } = out {
            let v: serde_json::Value =
                serde_json::from_slice(value).expect("a published value is JSON");
            assert_eq!(v["symbol"].as_str().map(str::as_bytes), Some(key));
        }
    });
}

/// What a WebSocket client sends: the bytes as one text frame for the protocol parser, and as a
/// stream of WebSocket frames arriving in uneven pieces (masking, fragments, control frames,
/// limits), each text message through the parser. Frames or a clear error.
pub fn client_frame(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = protocol::parse(text);
    }
    let mut reader = FrameReader::new(64 * 1024);
    for chunk in data.chunks(7) {
        reader.push(chunk);
        loop {
            match reader.next_message() {
                Ok(Some(Incoming::Text(t))) => {
                    let _ = protocol::parse(&t);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// A channels.toml: rules or a list of errors, never a panic; valid rules parse again to the
/// same version.
pub fn channels_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Rules::parse(text, "fuzz.toml") {
        Ok(rules) => {
            let again = Rules::parse(text, "fuzz.toml").expect("parses twice");
            assert_eq!(rules.version, again.version);
        }
        Err(errors) => assert!(!errors.to_string().is_empty()),
    }
}
