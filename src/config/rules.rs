//! The validated model of a `channels.toml`: what the hot path reads, immutable and swapped
//! whole on reload.

use rustc_hash::FxHashMap;

use super::edge::{AuthSettings, EdgeSettings, SlowClientPolicy};
use crate::pricing::{Instrument, Ladder, PricingRule};

/// Kafka topic names and the settings used when pricefeed creates topics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaTopics {
    /// The main feed of raw prices.
    pub raw_topic: String,
    /// A channel's sub stream is `<prefix><channel>`.
    pub channel_topic_prefix: String,
    /// Raw records that fail to decode or validate are copied here with the reason.
    pub dead_letter_topic: String,
    /// Every rules version that went live, keyed by version, with the file's text (compacted;
    /// `pricefeed audit` reads it).
    pub rules_topic: String,
    /// Partition count used when pricefeed has to create the raw topic itself.
    pub partitions: i32,
    /// Replication factor for topics pricefeed creates.
    pub replication_factor: i32,
    /// How transform workers make their output exactly-once.
    pub delivery: Delivery,
}

/// How transform workers make their output exactly-once (docs/architecture.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Delivery {
    /// An idempotent producer plus the resume rule: the lowest latency; a worker expelled from
    /// the group can still land what it had already sent.
    #[default]
    Idempotent,
    /// Kafka transactions with the group's offsets in them (KIP-447): an expelled worker can no
    /// longer write; readers see output once its transaction commits.
    Transactional,
}

/// What to do with a price older than the channel's `stale_after_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StalePolicy {
    /// Publish it with `"stale": true`.
    Flag,
    /// Do not publish it on this channel.
    Withhold,
}

/// One channel: its sub stream and, per instrument it carries, a resolved pricing rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Channel {
    pub name: String,
    pub topic: String,
    pub stale_after_ms: Option<u64>,
    pub stale_policy: StalePolicy,
    /// What the edge does with a client that falls too far behind on this channel.
    pub slow_client: SlowClientPolicy,
    /// Indexed like [`Rules::instruments`]; `None` when the channel does not carry the symbol.
    /// On a tiered instrument, the first band's rule: it prices the top-of-book quote.
    pub rules: Vec<Option<PricingRule>>,
    /// Indexed like `rules`: the size bands of an instrument the channel quotes as a ladder.
    pub ladders: Vec<Option<Ladder>>,
}

impl Channel {
    pub fn carries(&self, instrument: usize) -> bool {
        self.rules.get(instrument).is_some_and(Option::is_some)
    }
}

/// A validated `channels.toml`.
#[derive(Clone, Debug)]
pub struct Rules {
    /// Content hash of the file (12 hex digits): the same file gives the same version on every
    /// worker, so output records say exactly which rules made them.
    pub version: String,
    /// The file's text, as loaded: what the version is the hash of (kept for the rules topic).
    pub text: std::sync::Arc<str>,
    pub kafka: KafkaTopics,
    pub auth: AuthSettings,
    pub edge: EdgeSettings,
    pub instruments: Vec<Instrument>,
    pub channels: Vec<Channel>,
    pub(super) symbol_index: FxHashMap<String, usize>,
}

impl Rules {
    /// Index into [`Rules::instruments`] for a symbol.
    #[inline]
    pub fn instrument_index(&self, symbol: &str) -> Option<usize> {
        self.symbol_index.get(symbol).copied()
    }

    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name == name)
    }
}
