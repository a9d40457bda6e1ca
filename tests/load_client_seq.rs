//! The load client's gap rule (benches/loadgen/seq.rs) on frames as the edge writes them: no gap
//! across the offsets commit markers take, a gap when a record is missed, and the old rule
//! (consecutive seqNos) for a frame without `prev`.

// Only part of it is used here.
#[allow(dead_code)]
#[path = "../benches/loadgen/seq.rs"]
mod seq;

fn frame(seq: i64, prev: i64) -> String {
    format!(
        r#"{{"type":"message","topic":"vip","partition":2,"seqNo":{seq},"prev":{prev},"messageId":"2-{seq}","data":{{}}}}"#
    )
}

#[test]
fn the_load_client_tells_commit_markers_from_missed_records() {
    // Records at 5, 6, 8, 9, 11 (7 and 10 are commit markers): no gap.
    let mut last = 4;
    let mut gaps = 0;
    for (seq, prev) in [(5, 4), (6, 5), (8, 6), (9, 8), (11, 9)] {
        let f = frame(seq, prev);
        let (p, s, prev) = seq::partition_seq_prev(f.as_bytes()).unwrap();
        assert_eq!((p, s as i64, prev), (2, seq, Some(prev.unwrap())));
        gaps += usize::from(seq::is_gap(s, prev, last));
        last = s as i64;
    }
    assert_eq!(gaps, 0);
    // 12 lost: 14 follows 12.
    let f = frame(14, 12);
    let (_, s, prev) = seq::partition_seq_prev(f.as_bytes()).unwrap();
    assert!(seq::is_gap(s, prev, 11));
    // The first record of a partition says -1.
    let (_, _, prev) = seq::partition_seq_prev(frame(0, -1).as_bytes()).unwrap();
    assert_eq!(prev, Some(-1));
    // A frame without prev (another server): consecutive seqNos.
    let old = br#"{"type":"message","topic":"vip","partition":0,"seqNo":9,"messageId":"0-9"}"#;
    let (_, s, prev) = seq::partition_seq_prev(old).unwrap();
    assert_eq!(prev, None);
    assert!(!seq::is_gap(s, prev, 8) && seq::is_gap(s, prev, 7));
}
