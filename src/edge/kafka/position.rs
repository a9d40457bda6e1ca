//! Where the edge starts reading: it waits for the channel topics, learns the latest price of
//! every symbol from each channel's latest-price topic (`crate::kafka::latest`: one compacted
//! record per symbol, so this takes as long as there are symbols, however long the channel's
//! history), positions each partition `history_per_partition` before its end and finds the
//! record before that start (the first frame's `prev`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use rustc_hash::FxHashMap;
use tokio_util::sync::CancellationToken;

use crate::edge::log::entry::{Entry, encode_entry};
use crate::edge::log::symbols::{SymbolId, Symbols};
use crate::edge::log::topic::{Hub, TopicLog};
use crate::kafka::{self, ADMIN_TIMEOUT, KafkaFailure, KafkaSettings, ReadFrom};

/// The channel topics as found at start: partition counts, and topic ids (the epoch of their
/// positions; none with a Kafka older than 2.8, which has no topic ids).
pub struct Found {
    pub counts: Vec<usize>,
    pub epochs: FxHashMap<String, String>,
}

/// Waits until every channel topic exists and returns its partition count and id.
pub async fn wait_for_topics(
    settings: &KafkaSettings,
    topics: &[String],
    shutdown: &CancellationToken,
) -> Result<Option<Found>, KafkaFailure> {
    let reader = Arc::new(settings.reader()?);
    let mut counts = Vec::with_capacity(topics.len());
    for t in topics {
        let mut logged = false;
        loop {
            let count = tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                c = kafka::partition_count_off_thread(&reader, t) => c,
            };
            match count {
                Ok(Some(n)) => {
                    counts.push(n as usize);
                    break;
                }
                Ok(None) if !logged => {
                    tracing::info!(topic = %t, "waiting for the channel topic (the transform workers create it)");
                    logged = true;
                }
                Err(e) if !logged => {
                    tracing::info!("waiting for Kafka at {}: {e}", settings.brokers);
                    logged = true;
                }
                _ => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
    let names = topics.to_vec();
    let ids = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        kafka::topic_ids(&*reader, &refs, ADMIN_TIMEOUT)
    })
    .await
    .map_err(|e| KafkaFailure::Other(format!("topic id task: {e}")))?;
    let epochs = match ids {
        Ok(ids) => ids.into_iter().collect(),
        Err(e) => {
            tracing::warn!(
                "no topic ids ({e}): a channel topic deleted and created again will not be told from the old one"
            );
            FxHashMap::default()
        }
    };
    Ok(Some(Found { counts, epochs }))
}

/// Gives each partition of `topic` the latest price of every symbol from the latest-price topic,
/// positions it `back` records before its end (or earlier, see [`start_offset`]), and returns
/// each partition's end.
pub fn position(
    client: &BaseConsumer,
    topic: &TopicLog,
    back: usize,
    symbols: &Symbols,
) -> Result<Vec<i64>, KafkaFailure> {
    let mut bounds = Vec::with_capacity(topic.partitions.len());
    for p in 0..topic.partitions.len() {
        bounds.push(kafka::watermarks(client, &topic.kafka_topic, p as i32)?);
    }
    let highs: Vec<i64> = bounds.iter().map(|b| b.1).collect();
    let latest = read_latest(client, topic, &highs, symbols)?;
    let mut ends = Vec::with_capacity(topic.partitions.len());
    for (p, ((log, (low, high)), seed)) in
        topic.partitions.iter().zip(bounds).zip(latest).enumerate()
    {
        let start = start_offset(low, high, back, seed.covered);
        let seed = seed.entries;
        let previous = last_record_before(client, &topic.kafka_topic, p as i32, low, start)?;
        log.start_at(start, previous);
        log.seed_latest(seed);
        ends.push(high);
    }
    Ok(ends)
}

/// Most records an edge reads before a partition's end at start when the latest-price topic is
/// behind (a transform that does not write it, one that has not reached a checkpoint yet).
const MAX_START_READ: i64 = 1_000_000;

/// Where the reader starts a partition: `back` records before its end, or earlier where the
/// latest-price topic does not cover the records yet (it names offsets up to `covered`; the
/// records after it may hold a symbol's newest price that it does not have yet), but never more
/// than [`MAX_START_READ`] before the end.
fn start_offset(low: i64, high: i64, back: usize, covered: Option<i64>) -> i64 {
    let tail = high.saturating_sub(back as i64);
    let uncovered = covered.map_or(i64::MIN, |c| c + 1);
    tail.min(uncovered)
        .max(high.saturating_sub(MAX_START_READ))
        .max(low)
        .max(0)
}

/// What a partition learns from the latest-price topic.
#[derive(Default)]
struct Seed {
    entries: Vec<Entry>,
    /// The newest channel offset it names: the latest-price topic holds every symbol's newest
    /// record up to there (it is written in offset order, after the records it names).
    covered: Option<i64>,
}

/// How long reading a channel's latest-price topic may take.
const LATEST_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The latest price of every symbol of `topic`, per partition, from its latest-price topic
/// (none when that topic does not exist: a channel no transform of this version has written).
/// A record naming an offset at or past its partition's end (`highs`) is not of this topic (one
/// deleted and created again) and is left out.
fn read_latest(
    client: &BaseConsumer,
    topic: &TopicLog,
    highs: &[i64],
    symbols: &Symbols,
) -> Result<Vec<Seed>, KafkaFailure> {
    let n = topic.partitions.len();
    let mut seeds: Vec<FxHashMap<SymbolId, Entry>> = (0..n).map(|_| FxHashMap::default()).collect();
    let mut covered: Vec<Option<i64>> = vec![None; n];
    let name = kafka::latest_topic(&topic.kafka_topic);
    let Some(count) = kafka::partition_count(client, &name)? else {
        tracing::warn!(channel = %topic.channel, topic = %name, "no latest-price topic: snapshots know only the symbols in the records kept in memory until the transform creates it");
        return Ok((0..n).map(|_| Seed::default()).collect());
    };
    let started = Instant::now();
    let starts: Vec<(String, i32, ReadFrom)> = (0..count)
        .map(|p| (name.clone(), p, ReadFrom::Offset(0)))
        .collect();
    let (mut records, mut foreign) = (0u64, 0u64);
    kafka::read_to_end(client, &starts, LATEST_READ_TIMEOUT, |m| {
        records += 1;
        let Some(named) = kafka::latest::channel_position(m.headers()) else {
            return;
        };
        let (p, offset) = (named.partition, named.offset);
        if named
            .epoch
            .is_some_and(|e| !topic.epoch.is_empty() && e != topic.epoch)
        {
            foreign += 1; // of an earlier life of the topic
            return;
        }
        let Some(symbol) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            return;
        };
        if p < 0 || p as usize >= n || offset >= highs[p as usize] {
            foreign += 1;
            return;
        }
        let id = symbols.intern(symbol);
        let c = &mut covered[p as usize];
        *c = Some(c.map_or(offset, |c| c.max(offset)));
        let seed = &mut seeds[p as usize];
        if seed.get(&id).is_some_and(|e| e.offset >= offset) {
            return;
        }
        let ts = m.timestamp().to_millis().unwrap_or(0);
        let value = m.payload().unwrap_or_default();
        if let Ok(e) = encode_entry(&topic.channel, p, offset, offset - 1, id, value, ts) {
            seed.insert(id, e);
        }
    })?;
    let symbols_found: usize = seeds.iter().map(|s| s.len()).sum();
    tracing::info!(channel = %topic.channel, records, symbols = symbols_found, ms = started.elapsed().as_millis() as u64, "read the latest prices");
    if foreign > 0 {
        tracing::warn!(channel = %topic.channel, records = foreign, "latest-price records of an earlier life of the channel topic (another topic id, or offsets past its end) were left out");
    }
    Ok(seeds
        .into_iter()
        .zip(covered)
        .map(|(s, covered)| Seed {
            entries: s.into_values().collect(),
            covered,
        })
        .collect())
}

/// The offset of the last record before `start` that the edge can serve, so that the first
/// record it reads says which one came before it (`prev`). Offsets below `start` may hold no
/// record (transaction markers, aborted transactions): windows further and further back are
/// read. Without one in the last 262,144 offsets, `start - 1` stands in (a client may then be
/// told of a gap that is not one, never the other way round).
fn last_record_before(
    client: &BaseConsumer,
    topic: &str,
    partition: i32,
    low: i64,
    start: i64,
) -> Result<i64, KafkaFailure> {
    let mut end = start;
    for window in [64, 4096, 262_144] {
        if end <= low {
            // Nothing before: what is below `low` is gone from Kafka.
            return Ok(low.min(start) - 1);
        }
        let from = start.saturating_sub(window).max(low);
        let mut last = None;
        kafka::read_range(
            client,
            &[(topic.to_string(), partition, from, end)],
            ADMIN_TIMEOUT,
            |m| {
                let servable = m.key().is_some_and(|k| std::str::from_utf8(k).is_ok())
                    && m.payload().is_some_and(|v| {
                        let v = v.trim_ascii();
                        v.starts_with(b"{") && v.ends_with(b"}")
                    });
                if servable {
                    last = Some(m.offset());
                }
            },
        )?;
        if let Some(o) = last {
            return Ok(o);
        }
        end = from;
    }
    Ok(start - 1)
}

/// Positions every partition and returns the consumer; `hub` knows where each one starts.
pub fn assign(
    settings: &KafkaSettings,
    hub: &Hub,
) -> Result<(BaseConsumer, Targets), KafkaFailure> {
    let consumer = settings.live_reader()?;
    let mut targets = Targets::default();
    let topics = hub.topics();
    for topic in topics.values() {
        let ends = position(&consumer, topic, hub.history, &hub.symbols)?;
        for ((p, log), high) in topic.partitions.iter().enumerate().zip(ends) {
            if high > log.next() {
                // Caught up once the record at high - 1 is read.
                targets
                    .0
                    .insert((topic.kafka_topic.clone(), p as i32), high - 1);
            }
        }
    }
    consumer
        .assign(&partitions(topics.values())?)
        .map_err(kafka::ctx("assigning the channel topics"))?;
    Ok((consumer, targets))
}

/// The end offsets each partition had when the edge started.
#[derive(Default)]
pub struct Targets(pub FxHashMap<(String, i32), i64>);

/// Every partition of `topics`, each from the offset after the last one the hub holds.
pub fn partitions<'a>(
    topics: impl IntoIterator<Item = &'a Arc<TopicLog>>,
) -> Result<TopicPartitionList, KafkaFailure> {
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for (p, log) in t.partitions.iter().enumerate() {
            tpl.add_partition_offset(&t.kafka_topic, p as i32, Offset::Offset(log.next()))
                .map_err(kafka::ctx("building the edge's assignment"))?;
        }
    }
    Ok(tpl)
}

/// Adds the partitions of `topic` to the assignment, leaving the others as they are.
pub fn add_to_assignment(
    consumer: &BaseConsumer,
    topic: &Arc<TopicLog>,
) -> Result<(), KafkaFailure> {
    consumer
        .incremental_assign(&partitions([topic])?)
        .map_err(kafka::ctx("adding to the edge's assignment"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_covers_what_the_latest_prices_do_not_within_bounds() {
        // Covered up to the end: the last `back` records.
        assert_eq!(start_offset(0, 5_000_000, 100, Some(4_999_999)), 4_999_900);
        // The latest prices lag 300 records behind the end: those are read too.
        assert_eq!(start_offset(0, 5_000_000, 100, Some(4_999_699)), 4_999_700);
        // No latest prices (an older transform): at most MAX_START_READ records.
        assert_eq!(start_offset(0, 5_000_000, 100, None), 4_000_000);
        // Never before the partition's start.
        assert_eq!(start_offset(40, 50, 100, None), 40);
        assert_eq!(start_offset(0, 0, 100, None), 0);
    }
}
