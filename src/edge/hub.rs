//! The in-memory view of the channel topics an edge serves: per partition, the recent records
//! (already encoded as `message` frames, shared by every subscriber) and the latest record per
//! symbol (for snapshots and conflation). One writer (the Kafka reader), many readers (sessions).
//!
//! Sessions pull from here at their own cursor (a Kafka offset); the hub only wakes them. That
//! makes resume, slow clients and fan-out the same mechanism: a cursor into a shared log.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;
use tokio::sync::Notify;

pub type SymbolId = u32;

/// Symbol names ↔ small integer ids, so per-record filtering is a bit test.
#[derive(Default)]
pub struct Symbols {
    ids: RwLock<FxHashMap<Arc<str>, SymbolId>>,
    names: RwLock<Vec<Arc<str>>>,
}

impl Symbols {
    pub fn get(&self, name: &str) -> Option<SymbolId> {
        self.ids.read().expect("symbols lock").get(name).copied()
    }

    pub fn intern(&self, name: &str) -> SymbolId {
        if let Some(id) = self.get(name) {
            return id;
        }
        let mut ids = self.ids.write().expect("symbols lock");
        if let Some(id) = ids.get(name) {
            return *id;
        }
        let mut names = self.names.write().expect("symbols lock");
        let id = names.len() as SymbolId;
        let name: Arc<str> = Arc::from(name);
        names.push(name.clone());
        ids.insert(name, id);
        id
    }

    pub fn name(&self, id: SymbolId) -> Arc<str> {
        self.names.read().expect("symbols lock")[id as usize].clone()
    }
}

/// A set of symbol ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SymbolSet(Vec<u64>);

impl SymbolSet {
    pub fn insert(&mut self, id: SymbolId) {
        let (word, bit) = ((id / 64) as usize, id % 64);
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << bit;
    }

    #[inline]
    pub fn contains(&self, id: SymbolId) -> bool {
        let (word, bit) = ((id / 64) as usize, id % 64);
        self.0.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }
}

/// `None` lets every symbol through.
#[inline]
pub fn passes(filter: Option<&SymbolSet>, id: SymbolId) -> bool {
    filter.is_none_or(|f| f.contains(id))
}

/// One channel record, encoded once as the `message` frame every subscriber receives.
#[derive(Clone, Debug)]
pub struct Entry {
    pub offset: i64,
    pub symbol: SymbolId,
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
    let mut f = String::with_capacity(trimmed.len() + channel.len() + 96);
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
    Ok(Entry {
        offset,
        symbol,
        ts_ms: source_ts(trimmed).unwrap_or(fallback_ts_ms),
        received_us: clock_us(),
        frame: Arc::from(f),
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

/// What a session finds at its cursor.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Frames were taken (possibly none); the cursor is now here.
    Advanced(i64),
    /// The cursor is more than `max_lag` records behind the end.
    Lagged,
    /// The cursor is before what memory holds: the records must come from Kafka.
    BeforeMemory,
}

#[derive(Default)]
struct PartInner {
    ring: VecDeque<Entry>,
    /// Offset after the last record read from Kafka.
    next: i64,
    /// Memory holds every record in `[memory_from, next)`.
    memory_from: i64,
    /// The offset of the last record read, or before the first one read: of the last record
    /// before the start (or one less than the start when that is not known).
    previous: i64,
    latest: FxHashMap<SymbolId, Entry>,
}

/// One partition of a channel topic.
#[derive(Default)]
pub struct PartitionLog {
    inner: RwLock<PartInner>,
}

/// Per-session limits on one pull.
pub struct Budget {
    pub frames: usize,
    pub bytes: usize,
}

impl Budget {
    pub fn exhausted(&self) -> bool {
        self.frames == 0 || self.bytes == 0
    }

    pub fn take(&mut self, len: usize) {
        self.frames = self.frames.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(len);
    }
}

impl PartitionLog {
    /// Where the reader starts: nothing before `offset` is in memory; `previous` is the offset
    /// of the last record before it (see [`encode_entry`]'s `prev`).
    pub fn start_at(&self, offset: i64, previous: i64) {
        let mut g = self.inner.write().expect("partition lock");
        g.next = offset;
        g.memory_from = offset;
        g.previous = previous;
    }

    /// The offset of the last record read (or the last one before the start).
    pub fn previous(&self) -> i64 {
        self.inner.read().expect("partition lock").previous
    }

    /// Appends records read from Kafka (in offset order) and trims memory to `history`.
    pub fn append(&self, entries: impl IntoIterator<Item = Entry>, history: usize) {
        let mut g = self.inner.write().expect("partition lock");
        for e in entries {
            if e.offset < g.next {
                continue; // already seen (a re-fetch after a reconnect)
            }
            g.next = e.offset + 1;
            g.previous = e.offset;
            g.latest.insert(e.symbol, e.clone());
            g.ring.push_back(e);
        }
        while g.ring.len() > history {
            if let Some(old) = g.ring.pop_front() {
                g.memory_from = old.offset + 1;
            }
        }
    }

    /// Offset after the last record seen.
    pub fn next(&self) -> i64 {
        self.inner.read().expect("partition lock").next
    }

    /// `(memory_from, next)`: memory holds every record in between.
    pub fn bounds(&self) -> (i64, i64) {
        let g = self.inner.read().expect("partition lock");
        (g.memory_from, g.next)
    }

    /// Pushes the frames at or after `cursor` that pass `filter` into `out`, within `budget`.
    /// With `max_lag`, a cursor further behind than that is reported as [`ReadOutcome::Lagged`].
    pub fn read(
        &self,
        cursor: i64,
        filter: Option<&SymbolSet>,
        max_lag: Option<usize>,
        budget: &mut Budget,
        out: &mut impl FnMut(&Entry),
    ) -> ReadOutcome {
        let g = self.inner.read().expect("partition lock");
        if cursor >= g.next {
            return ReadOutcome::Advanced(cursor);
        }
        if cursor < g.memory_from {
            return ReadOutcome::BeforeMemory;
        }
        if max_lag.is_some_and(|m| (g.next - cursor) as u64 > m as u64) {
            return ReadOutcome::Lagged;
        }
        let start = g.ring.partition_point(|e| e.offset < cursor);
        let mut at = cursor;
        for e in g.ring.range(start..) {
            if budget.exhausted() {
                return ReadOutcome::Advanced(at);
            }
            if passes(filter, e.symbol) {
                budget.take(e.frame.len());
                out(e);
            }
            at = e.offset + 1;
        }
        ReadOutcome::Advanced(g.next)
    }

    /// The latest record of each symbol passing `filter` whose offset is at or after `since`,
    /// and the offset after the last record seen.
    pub fn latest(&self, filter: Option<&SymbolSet>, since: i64) -> (Vec<Entry>, i64) {
        let g = self.inner.read().expect("partition lock");
        let mut v: Vec<Entry> = g
            .latest
            .values()
            .filter(|e| e.offset >= since && passes(filter, e.symbol))
            .cloned()
            .collect();
        v.sort_by_key(|e| e.offset);
        (v, g.next)
    }
}

/// A channel topic: its partitions and the sessions to wake when records arrive.
pub struct TopicLog {
    pub channel: String,
    pub kafka_topic: String,
    pub partitions: Vec<PartitionLog>,
    subscribers: Mutex<FxHashMap<u64, Arc<Notify>>>,
    pub delivered: metrics::Counter,
}

impl TopicLog {
    pub fn new(channel: &str, kafka_topic: &str, partitions: usize) -> TopicLog {
        TopicLog {
            channel: channel.to_string(),
            kafka_topic: kafka_topic.to_string(),
            partitions: (0..partitions).map(|_| PartitionLog::default()).collect(),
            subscribers: Mutex::default(),
            delivered: crate::telemetry::edge_delivered(channel),
        }
    }

    pub fn add_subscriber(&self, session: u64, waker: Arc<Notify>) {
        self.subscribers
            .lock()
            .expect("subscribers lock")
            .insert(session, waker);
    }

    pub fn remove_subscriber(&self, session: u64) {
        self.subscribers
            .lock()
            .expect("subscribers lock")
            .remove(&session);
    }

    pub fn subscriber_count(&self) -> usize {
        self.subscribers.lock().expect("subscribers lock").len()
    }

    /// Wakes every subscriber (each keeps one pending wake, so wakes coalesce).
    pub fn wake(&self) {
        for n in self.subscribers.lock().expect("subscribers lock").values() {
            n.notify_one();
        }
    }
}

/// Every channel topic this edge serves, by channel name.
pub type Topics = FxHashMap<String, Arc<TopicLog>>;

/// Every channel topic this edge serves. A channel added to channels.toml while the edge runs
/// joins once the reader has read its topic up to where it was when it was found
/// ([`Hub::add_topic`]); none leaves.
pub struct Hub {
    topics: ArcSwap<Topics>,
    pub symbols: Symbols,
    pub history: usize,
    /// How far before its end the reader starts each partition: enough for snapshots to know
    /// every symbol that ticked in `snapshot_lookback_records`, and at least `history`.
    pub read_back: usize,
    caught_up: AtomicBool,
    pub records_in: AtomicU64,
}

impl Hub {
    pub fn new(topics: Vec<TopicLog>, symbols: Symbols, history: usize, lookback: usize) -> Hub {
        Hub {
            topics: ArcSwap::from_pointee(
                topics
                    .into_iter()
                    .map(|t| (t.channel.clone(), Arc::new(t)))
                    .collect(),
            ),
            symbols,
            history,
            read_back: history.max(lookback),
            caught_up: AtomicBool::new(false),
            records_in: AtomicU64::new(0),
        }
    }

    pub fn topic(&self, channel: &str) -> Option<Arc<TopicLog>> {
        self.topics.load().get(channel).cloned()
    }

    /// The channel topics served now.
    pub fn topics(&self) -> Arc<Topics> {
        self.topics.load_full()
    }

    /// Serves one more channel topic (it keeps its place if the channel is already served).
    pub fn add_topic(&self, log: Arc<TopicLog>) {
        self.topics.rcu(|current| {
            let mut next = Topics::clone(current);
            next.entry(log.channel.clone())
                .or_insert_with(|| log.clone());
            next
        });
    }

    pub fn set_caught_up(&self) {
        self.caught_up.store(true, Ordering::Release);
    }

    /// True once every partition has been read to the end it had at start.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(offset: i64, symbol: SymbolId) -> Entry {
        let v =
            format!("{{\"symbol\":\"S{symbol}\",\"bid\":\"1.0\",\"ask\":\"1.1\",\"ts\":{offset}}}");
        encode_entry("vip", 0, offset, offset - 2, symbol, v.as_bytes(), 0).unwrap()
    }

    fn read_all(
        log: &PartitionLog,
        cursor: i64,
        filter: Option<&SymbolSet>,
    ) -> (Vec<i64>, ReadOutcome) {
        let mut got = Vec::new();
        let mut budget = Budget {
            frames: usize::MAX,
            bytes: usize::MAX,
        };
        let r = log.read(cursor, filter, None, &mut budget, &mut |e| {
            got.push(e.offset)
        });
        (got, r)
    }

    #[test]
    fn frames_carry_offset_as_seq_and_the_value_as_data() {
        let e = entry(42, 1);
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

    #[test]
    fn reads_resume_at_the_cursor_filter_and_trim() {
        let log = PartitionLog::default();
        log.start_at(10, 9);
        log.append((10..20).map(|o| entry(o, (o % 2) as u32)), 5);
        assert_eq!(log.bounds(), (15, 20));
        assert_eq!(read_all(&log, 12, None).1, ReadOutcome::BeforeMemory);
        let (got, r) = read_all(&log, 16, None);
        assert_eq!((got, r), (vec![16, 17, 18, 19], ReadOutcome::Advanced(20)));
        let mut odd = SymbolSet::default();
        odd.insert(1);
        assert_eq!(read_all(&log, 15, Some(&odd)).0, vec![15, 17, 19]);
        assert_eq!(
            read_all(&log, 20, None),
            (vec![], ReadOutcome::Advanced(20))
        );
        // Lag is measured against the end.
        let mut budget = Budget {
            frames: 100,
            bytes: 1 << 20,
        };
        assert_eq!(
            log.read(15, None, Some(3), &mut budget, &mut |_| {}),
            ReadOutcome::Lagged
        );
        // The budget stops a read part-way, at the next offset to deliver.
        let mut budget = Budget {
            frames: 2,
            bytes: 1 << 20,
        };
        assert_eq!(
            log.read(15, None, None, &mut budget, &mut |_| {}),
            ReadOutcome::Advanced(17)
        );
    }

    #[test]
    fn latest_per_symbol_since_an_offset() {
        let log = PartitionLog::default();
        log.append((0..10).map(|o| entry(o, (o % 3) as u32)), 100);
        let (v, next) = log.latest(None, 0);
        assert_eq!(
            v.iter().map(|e| e.offset).collect::<Vec<_>>(),
            vec![7, 8, 9]
        );
        assert_eq!(next, 10);
        assert_eq!(log.latest(None, 9).0.len(), 1);
    }
}
