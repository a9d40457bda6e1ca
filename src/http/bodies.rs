//! The JSON bodies of the edge's HTTP routes, typed so that `/openapi.json` describes exactly
//! what the handlers send and accept.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// `GET /stats`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// This edge's name in session ids.
    pub node: String,
    pub connections: i64,
    pub subscriptions: i64,
    pub topics: Vec<TopicStats>,
    /// Client frames received since start.
    pub messages_in: u64,
    /// Frames written from subscriptions since start (docs/protocol.md section 14).
    pub messages_out: u64,
    /// Channel records read from Kafka since start.
    pub records_in: u64,
    pub ready: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicStats {
    /// The channel.
    pub topic: String,
    pub kafka_topic: String,
    pub partitions: usize,
    pub subscribers: usize,
    /// Per partition, the last seqNo (Kafka offset) this edge has read; −1 when none.
    pub last_seq_no: BTreeMap<String, i64>,
    /// Per partition, how the edge keeps up with Kafka, as of the last check (about every
    /// second).
    pub reading: BTreeMap<String, PartitionReading>,
}

/// How the edge keeps up with one partition.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionReading {
    /// The next offset the edge's reader will read.
    pub position: i64,
    /// The partition's end in Kafka (its last stable offset).
    pub end: i64,
    /// Records Kafka has that the edge has not read: `end − position`.
    pub lag: i64,
    /// How long the position has not moved while Kafka had newer records, in ms.
    pub idle_ms: u64,
    /// Not advancing for `[edge] stall_after_ms` while Kafka has newer records: the reader
    /// re-seeks it.
    pub stalled: bool,
}

/// `POST /publish`: one raw price for the raw topic.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The publisher's id for this price (1 to 128 bytes); a repeat within the dedup window is
    /// acknowledged as `duplicate` and not written again.
    #[serde(rename = "messageId")]
    pub message_id: String,
    /// A raw price, as on the raw topic: `{"symbol","bid","ask"[,"ts","bid_size","ask_size","id","source"]}`.
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
    /// Optional; when given it must be the raw topic.
    #[serde(default)]
    pub topic: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PublishAck {
    #[serde(rename = "messageId")]
    pub message_id: String,
    /// `ok`: written and acknowledged by Kafka; `duplicate`: already published.
    #[schema(example = "ok")]
    pub status: &'static str,
}
