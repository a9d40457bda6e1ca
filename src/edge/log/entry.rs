//! One channel record, encoded once as the `message` frame every subscriber receives.

use std::sync::Arc;

use super::symbols::SymbolId;

/// One channel record, encoded once as the `message` frame every subscriber receives.
#[derive(Clone, Debug)]
pub struct Entry {
    pub offset: i64,
    pub symbol: SymbolId,
    pub partition: u32,
    /// Source timestamp of the price (ms since the epoch), for the latency histogram.
    pub ts_ms: i64,
    /// When this edge read the record ([`clock_us`]).
    pub received_us: u64,
    /// `{"type":"message","topic":…,"partition":…,"seqNo":…,"messageId":…,"data":…}`
    pub frame: Arc<str>,
    /// Where `data` starts in `frame` (it ends before the final `}`).
    data_start: u32,
}

impl Entry {
    /// The record value (the transformed price) as it came from Kafka.
    pub fn data(&self) -> &str {
        let f = &*self.frame;
        &f[self.data_start as usize..f.len() - 1]
    }

    /// The same record as a frame with `"conflated":true`, in three parts to write in a row.
    pub fn conflated_parts(&self) -> [&str; 3] {
        let head = "{\"type\":\"message\",";
        [head, "\"conflated\":true,", &self.frame[head.len()..]]
    }
}

/// Why a Kafka record could not be turned into a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum EntryError {
    NoKey,
    NotJsonObject,
}

/// Builds the frame for one record of `prices.<channel>`. `prev` is the offset of the record
/// before it in the partition (no record lies between the two): a client that has taken in
/// `prev` or later has missed nothing, whatever offsets transaction markers took in between.
#[allow(clippy::too_many_arguments)]
pub fn encode_entry(
    channel: &str,
    partition: i32,
    offset: i64,
    prev: i64,
    symbol: SymbolId,
    value: &[u8],
    fallback_ts_ms: i64,
) -> Result<Entry, EntryError> {
    let text = std::str::from_utf8(value).map_err(|_| EntryError::NotJsonObject)?;
    let trimmed = text.trim();
    if !(trimmed.starts_with('{') && trimmed.ends_with('}')) {
        return Err(EntryError::NotJsonObject);
    }
    let mut p = itoa::Buffer::new();
    let mut o = itoa::Buffer::new();
    let mut b = itoa::Buffer::new();
    let (p, o, prev) = (p.format(partition), o.format(offset), b.format(prev));
    // Built in a buffer kept by the thread, then copied once into the shared frame: one
    // allocation per record.
    thread_local!(static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) });
    let (frame, data_start) = SCRATCH.with_borrow_mut(|f| {
        f.clear();
        f.push_str("{\"type\":\"message\",\"topic\":\"");
        // Channel names are validated to [A-Za-z0-9._-]: nothing to escape.
        f.push_str(channel);
        f.push_str("\",\"partition\":");
        f.push_str(p);
        f.push_str(",\"seqNo\":");
        f.push_str(o);
        f.push_str(",\"prev\":");
        f.push_str(prev);
        f.push_str(",\"messageId\":\"");
        f.push_str(p);
        f.push('-');
        f.push_str(o);
        f.push_str("\",\"data\":");
        let data_start = f.len() as u32;
        f.push_str(trimmed);
        f.push('}');
        (Arc::<str>::from(f.as_str()), data_start)
    });
    Ok(Entry {
        offset,
        symbol,
        partition: partition.max(0) as u32,
        ts_ms: source_ts(trimmed).unwrap_or(fallback_ts_ms),
        received_us: clock_us(),
        frame,
        data_start,
    })
}

/// Microseconds on this process's monotonic clock.
pub fn clock_us() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
}

/// The `"ts":<ms>` of a channel record value.
fn source_ts(value: &str) -> Option<i64> {
    let at = value.find("\"ts\":")? + 5;
    let digits: &str = value[at..].trim_start();
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// A record of symbol `S<symbol>` at `offset` whose `prev` is `offset - 2`, for tests.
#[cfg(test)]
pub fn sample(offset: i64, symbol: SymbolId) -> Entry {
    let v = format!("{{\"symbol\":\"S{symbol}\",\"bid\":\"1.0\",\"ask\":\"1.1\",\"ts\":{offset}}}");
    encode_entry("vip", 0, offset, offset - 2, symbol, v.as_bytes(), 0).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_offset_as_seq_and_the_value_as_data() {
        let e = sample(42, 1);
        assert_eq!(
            &*e.frame,
            "{\"type\":\"message\",\"topic\":\"vip\",\"partition\":0,\"seqNo\":42,\"prev\":40,\
             \"messageId\":\"0-42\",\"data\":{\"symbol\":\"S1\",\"bid\":\"1.0\",\"ask\":\"1.1\",\"ts\":42}}"
        );
        assert_eq!(e.ts_ms, 42);
        assert!(e.data().starts_with("{\"symbol\"") && e.data().ends_with("42}"));
        let c: serde_json::Value = serde_json::from_str(&e.conflated_parts().concat()).unwrap();
        assert_eq!(c["conflated"], true);
        assert_eq!(c["seqNo"], 42);
        assert_eq!(
            encode_entry("vip", 0, 1, 0, 0, b"[1]", 0).unwrap_err(),
            EntryError::NotJsonObject
        );
    }
}
