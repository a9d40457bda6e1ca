//! Publishing raw prices from clients (WebSocket `publish`) and backends (`POST /publish`):
//! the price is validated like the transform validates the feed, deduplicated by messageId per
//! publisher over a window, and acknowledged only once Kafka has acknowledged the write.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rustc_hash::FxHashMap;
use tokio::sync::Notify;

use crate::config::reload::LiveRules;
use crate::ingest::Decoder;
use crate::kafka::{KafkaFailure, KafkaSettings};
use crate::telemetry;

pub use crate::ingest::publisher::{MESSAGE_ID_HEADER, PUBLISHER_HEADER};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishStatus {
    /// Written now; Kafka acknowledged it.
    Ok,
    /// This publisher's messageId was written before, within the dedup window; not written again.
    Duplicate,
}

impl PublishStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PublishStatus::Ok => "ok",
            PublishStatus::Duplicate => "duplicate",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    #[error("{0}")]
    Invalid(String),
    #[error("Kafka did not acknowledge the write: {0}")]
    Kafka(String),
}

enum Slot {
    /// A write with this id is in flight; duplicates wait for it.
    Pending(Arc<Notify>),
    Done(Instant),
}

pub struct Publisher {
    producer: FutureProducer,
    rules: LiveRules,
    window: Duration,
    seen: Mutex<FxHashMap<(String, String), Slot>>,
    inserts: std::sync::atomic::AtomicU64,
}

impl Publisher {
    pub fn new(
        settings: &KafkaSettings,
        rules: LiveRules,
        window: Duration,
    ) -> Result<Publisher, KafkaFailure> {
        let producer = settings.publish_producer()?;
        Ok(Publisher {
            producer,
            rules,
            window,
            seen: Mutex::default(),
            inserts: 0.into(),
        })
    }

    /// The raw topic publishes go to.
    pub fn raw_topic(&self) -> String {
        self.rules.load().kafka.raw_topic.clone()
    }

    /// Validates and writes one raw price; `publisher` is the token's user or the API key name.
    pub async fn publish(
        &self,
        publisher: &str,
        message_id: &str,
        payload: &[u8],
    ) -> Result<PublishStatus, PublishError> {
        let symbol = self.validate(payload).inspect_err(|_| {
            telemetry::edge_published("rejected");
        })?;
        let key = (publisher.to_string(), message_id.to_string());
        loop {
            let wait = {
                let mut seen = self.seen.lock().expect("dedup lock");
                match seen.get(&key) {
                    Some(Slot::Done(at)) if at.elapsed() < self.window => {
                        telemetry::edge_published("duplicate");
                        return Ok(PublishStatus::Duplicate);
                    }
                    Some(Slot::Pending(n)) => Some(n.clone()),
                    _ => {
                        seen.insert(key.clone(), Slot::Pending(Arc::new(Notify::new())));
                        None
                    }
                }
            };
            match wait {
                // Wait for the write in flight, then look again: done → duplicate, failed → retry.
                Some(n) => {
                    let notified = n.notified();
                    let still_pending = matches!(
                        self.seen.lock().expect("dedup lock").get(&key),
                        Some(Slot::Pending(p)) if Arc::ptr_eq(p, &n)
                    );
                    if still_pending {
                        notified.await;
                    }
                }
                None => break,
            }
        }
        let raw_topic = self.raw_topic();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: PUBLISHER_HEADER,
                value: Some(publisher),
            })
            .insert(Header {
                key: MESSAGE_ID_HEADER,
                value: Some(message_id),
            });
        let record = FutureRecord::to(&raw_topic)
            .key(&symbol)
            .payload(payload)
            .headers(headers);
        let result = self.producer.send(record, Duration::from_secs(30)).await;
        let mut seen = self.seen.lock().expect("dedup lock");
        let slot = seen.remove(&key);
        let outcome = match result {
            Ok(_) => {
                seen.insert(key, Slot::Done(Instant::now()));
                telemetry::edge_published("ok");
                Ok(PublishStatus::Ok)
            }
            Err((e, _)) => {
                telemetry::edge_published("failed");
                Err(PublishError::Kafka(e.to_string()))
            }
        };
        if let Some(Slot::Pending(n)) = slot {
            n.notify_waiters();
        }
        self.sweep(&mut seen);
        outcome
    }

    /// Drops expired dedup entries now and then.
    fn sweep(&self, seen: &mut FxHashMap<(String, String), Slot>) {
        let n = self
            .inserts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n.is_multiple_of(1024) {
            seen.retain(|_, s| match s {
                Slot::Done(at) => at.elapsed() < self.window,
                Slot::Pending(_) => true,
            });
        }
    }

    /// The same checks the transform applies (known symbol, valid prices), so a bad publish is
    /// refused to the client instead of landing in the dead-letter topic. Returns the symbol.
    fn validate(&self, payload: &[u8]) -> Result<String, PublishError> {
        let mut decoder = Decoder::new();
        let raw = decoder
            .decode(payload)
            .map_err(|r| PublishError::Invalid(format!("payload: {}", r.detail())))?;
        let rules = self.rules.load();
        if rules.instrument_index(raw.symbol).is_none() {
            return Err(PublishError::Invalid(format!(
                "payload: unknown symbol {:?}",
                raw.symbol
            )));
        }
        Ok(raw.symbol.to_string())
    }
}
