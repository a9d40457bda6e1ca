//! The transform poll loop: raw records in, channel and dead-letter records out.
//!
//! It runs on its own thread with a synchronous consumer and a threaded producer: librdkafka
//! already batches and pipelines internally, so no `await` is needed per record.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::{Counter, Histogram};
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::context::{AssignmentEvent, WorkerContext};
use super::dedup::PublishDedup;
use super::delivery::{Fatal, OutputProducer, create_producer};
use super::latest::LatestBook;
use super::options::{TransformError, TransformOptions, output_topics};
use super::output::{Floors, Send, dead_letter_headers, dead_letter_record, send};
use super::process::{ChannelOutput, Processor, RecordMeta};
use super::resume::{self, RAW_OFFSET_HEADER, RULES_VERSION_HEADER};
use crate::config::reload::LiveRules;
use crate::config::{Delivery, Rules};
use crate::ingest::Reject;
use crate::kafka::latest_topic;
use crate::telemetry::{self, LogLimiter};

/// How long reading the ends of a reload's new outputs may take.
const FLOOR_TIMEOUT: Duration = Duration::from_secs(30);

/// Per channel of the live rules: its topic and metric handles.
struct ChannelSink {
    topic: String,
    records: Counter,
    stale: Counter,
    withheld_stale: Counter,
    unquotable: Counter,
}

type RawConsumer = BaseConsumer<WorkerContext>;

struct Loop {
    producer: Arc<OutputProducer>,
    live: LiveRules,
    rules: Arc<Rules>,
    opts: TransformOptions,
    only: Option<usize>,
    sinks: Vec<ChannelSink>,
    dead_letter_topic: String,
    floors: HashMap<i32, Floors>,
    processor: Processor,
    raw_records: Counter,
    latency: Histogram,
    source_age: Histogram,
    log: LogLimiter,
    runtime: tokio::runtime::Handle,
    /// Quotes a published price once across edges.
    dedup: PublishDedup,
}

pub(super) fn run_loop(
    opts: TransformOptions,
    live: LiveRules,
    shutdown: CancellationToken,
    ready: Arc<crate::ready::ReadyFlag>,
    runtime: tokio::runtime::Handle,
) -> Result<(), TransformError> {
    let rules = live.load_full();
    let fatal = Arc::new(Fatal::default());
    let latest = Arc::new(LatestBook::default());
    let delivery = rules.kafka.delivery;
    let producer = Arc::new(create_producer(
        &opts.kafka,
        fatal.clone(),
        latest.clone(),
        delivery,
        &opts.group_id,
    )?);
    let dead_letter_topic = opts.dead_letter_topic(&rules);
    let context = WorkerContext::new(
        &opts,
        &rules,
        producer.clone(),
        fatal.clone(),
        latest,
        ready,
    );
    let consumer: RawConsumer = opts.kafka.group_consumer(&opts.group_id, context)?;
    consumer
        .subscribe(&[rules.kafka.raw_topic.as_str()])
        .map_err(crate::kafka::ctx("subscribing to the raw topic"))?;
    info!(
        group = %opts.group_id,
        delivery = ?delivery,
        raw_topic = %rules.kafka.raw_topic,
        channel = opts.only_channel.as_deref().unwrap_or("(all)"),
        version = %rules.version,
        "transform worker started"
    );

    let mut l = Loop {
        producer,
        live,
        rules: rules.clone(),
        only: None,
        sinks: Vec::new(),
        dead_letter_topic,
        floors: HashMap::new(),
        processor: Processor::new(),
        raw_records: telemetry::raw_records(),
        latency: telemetry::transform_seconds(),
        source_age: telemetry::source_age_seconds(),
        log: LogLimiter::new(Duration::from_secs(10)),
        runtime,
        dedup: PublishDedup::new(Duration::from_millis(rules.edge.dedup_window_ms)),
        opts,
    };
    l.use_rules(&consumer, rules)?;

    let commit_interval = l.opts.commit_interval(delivery);
    let mut last_poll = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut retry_rules_at = Instant::now();
    while !shutdown.is_cancelled() {
        if fatal.is_set() {
            break;
        }
        consumer.context().poll_gap_ms.store(
            last_poll.elapsed().as_millis() as u64,
            std::sync::atomic::Ordering::Release,
        );
        let polled = consumer.poll(Duration::from_millis(100));
        last_poll = Instant::now();
        *consumer
            .context()
            .last_poll
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = last_poll;
        l.apply_events(&consumer);
        match polled {
            Some(Ok(m)) => l.handle(&consumer, &m)?,
            Some(Err(e))
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::InvalidSessionTimeout) =>
            {
                // The broker refuses to let this worker join: retrying cannot help.
                return Err(TransformError::GroupRefused(e));
            }
            Some(Err(e)) if l.log.allow("consumer") => warn!("raw consumer: {e}"),
            Some(Err(_)) => {}
            None => {}
        }
        let current = l.live.load();
        if current.version != l.rules.version && Instant::now() >= retry_rules_at {
            let rules = arc_swap::Guard::into_inner(current);
            let version = rules.version.clone();
            if let Err(e) = l.use_rules(&consumer, rules) {
                // E.g. a new channel's topic cannot be created: keep pricing with the rules in
                // use (records keep saying which version made them) and try again later.
                error!(version = %version, "cannot switch to the reloaded rules yet: {e}");
                retry_rules_at = Instant::now() + Duration::from_secs(10);
            }
        }
        if last_checkpoint.elapsed() >= commit_interval {
            consumer.context().checkpoint(&consumer, CommitMode::Async);
            last_checkpoint = Instant::now();
        }
    }
    if let Some(message) = fatal.message() {
        // An open transaction would hold back read_committed readers until it times out.
        consumer.context().abort_transaction();
        return Err(TransformError::Fatal(message));
    }
    info!("transform worker stopping: flushing and committing");
    consumer.context().checkpoint(&consumer, CommitMode::Sync);
    if let Some(message) = fatal.message() {
        return Err(TransformError::Fatal(message));
    }
    Ok(())
}

impl Loop {
    /// Switches to new rules: resolves the channel filter, creates topics of new channels.
    fn use_rules(
        &mut self,
        consumer: &RawConsumer,
        rules: Arc<Rules>,
    ) -> Result<(), TransformError> {
        let outputs = output_topics(&rules, self.opts.only_channel.as_deref());
        let partitions = self.partition_count(consumer)?;
        let kafka = self.opts.kafka.clone();
        let mut topics: Vec<String> = outputs.clone();
        topics.push(self.dead_letter_topic.clone());
        let latest: Vec<String> = outputs.iter().map(|t| latest_topic(t)).collect();
        let rf = rules.kafka.replication_factor;
        let every: Vec<String> = topics.iter().chain(&latest).cloned().collect();
        self.runtime
            .block_on(crate::kafka::ensure_topics(&kafka, &every, partitions, rf))?;
        // Before any record says it was made with this version, the version is in Kafka.
        let record = crate::kafka::rules_log::record_rules(&kafka, &rules, "transform");
        self.runtime.block_on(record)?;
        consumer.context().latest.track_topics(consumer, &outputs);
        self.floor_new_outputs(&topics, consumer.context())?;
        *consumer
            .context()
            .outputs
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = topics;

        self.only = match &self.opts.only_channel {
            None => None,
            Some(name) => match rules.channels.iter().position(|c| &c.name == name) {
                Some(i) => Some(i),
                None => {
                    warn!(channel = %name, "channel no longer in channels.toml: publishing nothing");
                    Some(usize::MAX)
                }
            },
        };
        self.sinks = rules
            .channels
            .iter()
            .map(|c| ChannelSink {
                topic: c.topic.clone(),
                records: telemetry::channel_records(&c.name),
                stale: telemetry::stale_records(&c.name),
                withheld_stale: telemetry::withheld(&c.name, "stale"),
                unquotable: telemetry::withheld(&c.name, "unquotable"),
            })
            .collect();
        telemetry::rules_version(&rules.version);
        self.dedup
            .set_window(Duration::from_millis(rules.edge.dedup_window_ms));
        self.rules = rules;
        Ok(())
    }

    /// Gives outputs that new rules add (a channel added by a reload) their resume floors on
    /// the partitions this worker already holds: another worker, already on the new rules, may
    /// have written them past this worker's position (before a rebalance, or while this one
    /// replays after a restart), and those records must not be written again.
    fn floor_new_outputs(
        &mut self,
        topics: &[String],
        context: &WorkerContext,
    ) -> Result<(), TransformError> {
        let previous = context
            .outputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let added: Vec<String> = topics
            .iter()
            .filter(|t| !previous.contains(t))
            .cloned()
            .collect();
        // Transactions need no floors (output and offsets commit together), and reading a
        // topic this worker has an open transaction on would wait for that transaction.
        if added.is_empty() || self.floors.is_empty() || context.delivery == Delivery::Transactional
        {
            return Ok(());
        }
        let partitions: Vec<i32> = self.floors.keys().copied().collect();
        let reader = self.opts.kafka.reader()?;
        let last = resume::last_written(&reader, &added, &partitions, FLOOR_TIMEOUT)?;
        for ((topic, partition), raw) in last {
            if let Some(f) = self.floors.get_mut(&partition) {
                info!(topic = %topic, partition, floor = raw, "new output already written up to");
                f.max = f.max.max(raw);
                f.by_topic.insert(topic, raw);
            }
        }
        Ok(())
    }

    fn partition_count(&self, consumer: &RawConsumer) -> Result<i32, TransformError> {
        crate::kafka::partition_count(consumer, &self.rules.kafka.raw_topic)?
            .ok_or_else(|| TransformError::RawTopicGone(self.rules.kafka.raw_topic.clone()))
    }

    fn apply_events(&mut self, consumer: &RawConsumer) {
        let events = consumer.context().take_events();
        if events.is_empty() {
            return;
        }
        // A lost assignment replaces the producer: never write through the old one again.
        self.producer = consumer.context().producer.load_full();
        for event in events {
            match event {
                AssignmentEvent::Revoked => {
                    self.floors.clear();
                    self.dedup.forget_all();
                }
                AssignmentEvent::ProducerReplaced => {}
                AssignmentEvent::Assigned(plan) => {
                    let raw = &self.rules.kafka.raw_topic;
                    for r in &plan {
                        self.dedup
                            .seed_logged(&self.opts.kafka, raw, r.partition, r.start);
                    }
                    for r in plan {
                        let max = r.floors.iter().map(|(_, o)| *o).max().unwrap_or(-1);
                        self.floors.insert(
                            r.partition,
                            Floors {
                                max,
                                by_topic: r.floors.into_iter().collect(),
                            },
                        );
                    }
                }
            }
        }
    }

    fn handle(
        &mut self,
        consumer: &RawConsumer,
        m: &BorrowedMessage<'_>,
    ) -> Result<(), TransformError> {
        let started = Instant::now();
        if consumer.context().delivery == Delivery::Transactional
            && !consumer.context().begin(consumer)
        {
            return Ok(());
        }
        let partition = m.partition();
        let offset = m.offset();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        if self.dedup.is_repeat(m, now_ms, &mut self.log) {
            self.raw_records.increment(1);
            consumer.context().handled(partition, offset);
            return Ok(());
        }
        let meta = RecordMeta {
            key: m.key(),
            timestamp_ms: m.timestamp().to_millis(),
        };
        let payload = m.payload().unwrap_or_default();
        let floors = self.floors.get(&partition);
        let version = self.rules.version.as_str();
        let mut offset_buf = itoa::Buffer::new();
        let offset_text = offset_buf.format(offset);
        let producer = &self.producer;
        let generation = consumer.context().latest.generation();
        let sinks = &self.sinks;
        let log = &mut self.log;
        let mut send_error = None;

        let result =
            self.processor
                .process(&self.rules, self.only, meta, payload, now_ms, |ci, out| {
                    let sink = &sinks[ci];
                    match out {
                        ChannelOutput::Publish { key, value, stale } => {
                            if floors.is_some_and(|f| f.written(&sink.topic, offset)) {
                                return;
                            }
                            if stale {
                                sink.stale.increment(1);
                            }
                            let headers = OwnedHeaders::new_with_capacity(2)
                                .insert(Header {
                                    key: RAW_OFFSET_HEADER,
                                    value: Some(offset_text),
                                })
                                .insert(Header {
                                    key: RULES_VERSION_HEADER,
                                    value: Some(version),
                                });
                            let record = BaseRecord::with_opaque_to(&sink.topic, generation)
                                .partition(partition)
                                .key(key)
                                .payload(value)
                                .headers(headers);
                            if send_error.is_none()
                                && let Err(e) = send(producer, consumer, record)
                            {
                                send_error = Some(e);
                            }
                            sink.records.increment(1);
                        }
                        ChannelOutput::WithheldStale => sink.withheld_stale.increment(1),
                        ChannelOutput::Unquotable(e) => {
                            sink.unquotable.increment(1);
                            if log.allow("unquotable") {
                                warn!(topic = %sink.topic, partition, offset, "cannot quote: {e}");
                            }
                        }
                    }
                });
        let dead_lettered = match result {
            Ok(source_ts) => {
                self.source_age
                    .record(now_ms.saturating_sub(source_ts).max(0) as f64 / 1000.0);
                Ok(())
            }
            Err(reject) => self.dead_letter(consumer, m, &reject),
        };
        match send_error {
            Some(Send::Failed(e)) => return Err(e),
            // The record is not done; the next poll serves the revocation (or the stop).
            Some(Send::GaveUp) => return Ok(()),
            None => {}
        }
        if let Err(send) = dead_lettered {
            return match send {
                Send::Failed(e) => Err(e),
                Send::GaveUp => Ok(()),
            };
        }
        self.raw_records.increment(1);
        consumer.context().handled(partition, offset);
        self.latency.record(started.elapsed().as_secs_f64());
        Ok(())
    }

    fn dead_letter(
        &mut self,
        consumer: &RawConsumer,
        m: &BorrowedMessage<'_>,
        reject: &Reject,
    ) -> Result<(), Send> {
        let code = reject.code();
        let detail = reject.detail();
        telemetry::dead_lettered(code);
        if self.log.allow(code) {
            warn!(
                partition = m.partition(),
                offset = m.offset(),
                reason = code,
                "raw record dead-lettered: {detail}"
            );
        }
        let floors = self.floors.get(&m.partition());
        if floors.is_some_and(|f| f.written(&self.dead_letter_topic, m.offset())) {
            return Ok(());
        }
        let headers = dead_letter_headers(m, &self.rules.version, code, &detail);
        let generation = consumer.context().latest.generation();
        let record = dead_letter_record(m, &self.dead_letter_topic, headers, generation);
        send(&self.producer, consumer, record)
    }
}
