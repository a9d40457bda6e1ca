//! `pricefeed simulate`: a realistic raw feed for demos and load tests.

mod walk;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::ClientContext;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Rules;
use crate::kafka::{self, KafkaSettings};
use crate::telemetry;

pub use walk::{SimRecord, Walk, lot};

/// What the simulator sends.
#[derive(Clone, Debug)]
pub struct SimulateOptions {
    pub kafka: KafkaSettings,
    /// Records per second.
    pub rate: u32,
    /// Stop after this many records (`None`: until shut down).
    pub count: Option<u64>,
    /// Only these symbols (default: every instrument of channels.toml).
    pub symbols: Option<Vec<String>>,
    /// Probability that a record is deliberately malformed.
    pub malformed_ratio: f64,
    pub seed: u64,
    /// Depth levels per side (0: top of book only).
    pub depth: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("unknown symbol {0:?}: not an instrument of channels.toml")]
    UnknownSymbol(String),
    #[error("rate must be at least 1 record per second")]
    ZeroRate,
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaFailure),
    #[error("{0} records were not delivered to Kafka (see the log)")]
    Undelivered(u64),
}

/// Counts records Kafka did not take, so the simulator never reports them as sent.
#[derive(Default)]
struct SimContext {
    failed: AtomicU64,
}

impl ClientContext for SimContext {}

impl ProducerContext for SimContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result
            && self.failed.fetch_add(1, Ordering::Relaxed) == 0
        {
            tracing::error!("a simulated record was not delivered: {e}");
        }
    }
}

/// Sends records until `count` or `shutdown`; returns how many were sent. Creates the raw topic
/// (with `kafka.partitions` partitions) when it does not exist.
pub async fn run(
    opts: SimulateOptions,
    rules: &Rules,
    shutdown: CancellationToken,
) -> Result<u64, SimulateError> {
    if opts.rate == 0 {
        return Err(SimulateError::ZeroRate);
    }
    let instruments: Vec<_> = match &opts.symbols {
        None => rules.instruments.clone(),
        Some(list) => list
            .iter()
            .map(|s| {
                rules
                    .instrument_index(s)
                    .map(|i| rules.instruments[i].clone())
                    .ok_or_else(|| SimulateError::UnknownSymbol(s.clone()))
            })
            .collect::<Result<_, _>>()?,
    };
    let raw = &rules.kafka.raw_topic;
    kafka::ensure_topics(
        &opts.kafka,
        std::slice::from_ref(raw),
        rules.kafka.partitions,
        rules.kafka.replication_factor,
    )
    .await?;
    let producer: ThreadedProducer<SimContext> = opts.kafka.keyed_producer(SimContext::default())?;

    let mut walk = Walk::new(&instruments, opts.seed, opts.malformed_ratio).with_depth(opts.depth);
    let valid = telemetry::simulated("valid");
    let malformed = telemetry::simulated("malformed");
    info!(topic = %raw, rate = opts.rate, symbols = instruments.len(), "simulating raw prices");

    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    'outer: loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        // Catch up to the schedule: rate × elapsed.
        let due = (started.elapsed().as_secs_f64() * f64::from(opts.rate)) as u64 + 1;
        while sent < due {
            if opts.count.is_some_and(|c| sent >= c) {
                break 'outer;
            }
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let record = walk.next_record(now);
            let mut r = BaseRecord::<str, str>::to(raw)
                .key(record.key.as_str())
                .payload(record.value.as_str());
            loop {
                match producer.send(r) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        r = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(kafka::ctx("sending a raw record")(e).into()),
                }
            }
            if record.malformed {
                malformed.increment(1)
            } else {
                valid.increment(1)
            }
            sent += 1;
        }
    }
    let (flushed, failed) = tokio::task::spawn_blocking(move || {
        let flushed = producer.flush(Duration::from_secs(30));
        (flushed, producer.context().failed.load(Ordering::Relaxed))
    })
    .await
    .map_err(|e| kafka::KafkaFailure::Other(e.to_string()))?;
    flushed.map_err(kafka::ctx("flushing the simulator"))?;
    if failed > 0 {
        return Err(SimulateError::Undelivered(failed));
    }
    info!(sent, "simulator finished");
    Ok(sent)
}
