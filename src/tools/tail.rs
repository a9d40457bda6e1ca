//! `pricefeed tail TOPIC`: print the latest records of a topic (and optionally follow it), with
//! their partition, offset and pricefeed headers. A debugging aid for channel and dead-letter
//! topics.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::kafka::{self, KafkaFailure, KafkaSettings, ReadFrom, ctx};

#[derive(Clone, Debug)]
pub struct TailOptions {
    pub kafka: KafkaSettings,
    pub topic: String,
    /// Records to show per partition before following (all of them with `from_beginning`).
    pub last: i64,
    pub from_beginning: bool,
    pub follow: bool,
}

/// Prints records to stdout until the end (or, with `follow`, until `shutdown`). Blocking.
pub fn run(opts: &TailOptions, shutdown: &CancellationToken) -> kafka::Result<u64> {
    let reader = opts.kafka.reader()?;
    let partitions = kafka::partition_count(&reader, &opts.topic)?
        .ok_or_else(|| KafkaFailure::Other(format!("topic {} does not exist", opts.topic)))?;
    let mut starts = Vec::new();
    for p in 0..partitions {
        let (low, high) = reader
            .fetch_watermarks(&opts.topic, p, kafka::ADMIN_TIMEOUT)
            .map_err(ctx(format!("reading watermarks of {}/{p}", opts.topic)))?;
        let start = if opts.from_beginning {
            low
        } else {
            (high - opts.last).max(low)
        };
        starts.push((opts.topic.clone(), p, ReadFrom::Offset(start)));
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !opts.follow {
        // Read to the end, keep the last N per partition.
        let mut lines: BTreeMap<i32, VecDeque<String>> = BTreeMap::new();
        kafka::read_to_end(&reader, &starts, Duration::from_secs(60), |m| {
            let keep = lines.entry(m.partition()).or_default();
            keep.push_back(format_record(m));
            if !opts.from_beginning && keep.len() as i64 > opts.last {
                keep.pop_front();
            }
        })?;
        let mut printed = 0;
        for line in lines.values().flatten() {
            let _ = writeln!(out, "{line}");
            printed += 1;
        }
        return Ok(printed);
    }
    let mut printed = 0u64;
    let mut print = |m: &BorrowedMessage<'_>| {
        let _ = writeln!(out, "{}", format_record(m));
        printed += 1;
    };
    let mut tpl = TopicPartitionList::new();
    for (t, p, from) in &starts {
        let ReadFrom::Offset(o) = from else { continue };
        tpl.add_partition_offset(t, *p, Offset::Offset(*o))
            .map_err(ctx("building an assignment"))?;
    }
    reader.assign(&tpl).map_err(ctx("assigning partitions"))?;
    while !shutdown.is_cancelled() {
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => print(&m),
            Some(Err(e)) => eprintln!("tail: {e}"),
            None => {}
        }
    }
    Ok(printed)
}

/// `topic/partition@offset key=… [header=value …] value`
pub fn format_record(m: &BorrowedMessage<'_>) -> String {
    let mut line = format!("{}/{}@{}", m.topic(), m.partition(), m.offset());
    if let Some(k) = m.key() {
        line.push_str(&format!(" key={}", String::from_utf8_lossy(k)));
    }
    if let Some(headers) = m.headers() {
        for h in headers.iter() {
            let name = h.key.strip_prefix("pricefeed-").unwrap_or(h.key);
            let value = String::from_utf8_lossy(h.value.unwrap_or_default());
            line.push_str(&format!(" {name}={value}"));
        }
    }
    line.push(' ');
    line.push_str(&String::from_utf8_lossy(m.payload().unwrap_or_default()));
    line
}
