//! The load client's reading of a price frame's position, and its gap rule (the same as
//! `/client.js`): pure, so that `tests/load_client_seq.rs` checks it.

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `partition` and `seqNo` of a price frame: they come right after the topic near the start.
pub fn partition_and_seq(frame: &[u8]) -> Option<(u64, u64)> {
    partition_seq_prev(frame).map(|(p, seq, _)| (p, seq))
}

/// Where `"partition":` starts in the head of a frame: only the quotes are candidates, so the
/// search costs a few comparisons per frame (this runs for every frame of every client).
fn partition_key(frame: &[u8]) -> Option<usize> {
    const KEY: &[u8] = b"\"partition\":";
    let head = &frame[..frame.len().min(128)];
    head.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'"')
        .map(|(i, _)| i)
        .find(|&i| head[i..].starts_with(KEY))
}

/// The partition, seqNo and, from a pricefeed edge, `prev` (the record before) of a frame.
pub fn partition_seq_prev(frame: &[u8]) -> Option<(u64, u64, Option<i64>)> {
    let at = partition_key(frame)? + 12;
    let (p, rest) = digits(&frame[at..]);
    let (seq, rest) = digits(rest.strip_prefix(b",\"seqNo\":")?);
    let prev = rest
        .strip_prefix(b",\"prev\":")
        .map(|r| match r.strip_prefix(b"-") {
            Some(r) => -(digits(r).0 as i64),
            None => digits(r).0 as i64,
        });
    Some((p, seq, prev))
}

/// Whether a frame skips a record after `last`: its `prev` is past `last` (seqNos are Kafka
/// offsets and transaction markers take some), or without `prev` its seqNo is not `last + 1`.
pub fn is_gap(seq: u64, prev: Option<i64>, last: i64) -> bool {
    match prev {
        Some(prev) => prev > last,
        None => seq as i64 != last + 1,
    }
}

pub fn digits(b: &[u8]) -> (u64, &[u8]) {
    let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let v = b[..n]
        .iter()
        .fold(0u64, |v, c| v * 10 + u64::from(c - b'0'));
    (v, &b[n..])
}
