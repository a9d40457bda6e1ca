//! The rules topic (`[kafka] rules_topic`, default `pricefeed.rules`): every rules version that
//! went live, keyed by version, with the file's text, when it was loaded and by whom. A transform
//! worker writes it before it prices anything with a version (src/transform/worker.rs), so every
//! channel record's `pricefeed-rules-version` names a record here; `pricefeed audit` reads it to
//! say which markup made a quote. Compacted: one record per version is kept for good.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::Message;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::{FutureRecord, Producer};
use serde::{Deserialize, Serialize};

use super::failure::{KafkaFailure, Result, ctx};
use super::read::{ReadFrom, read_to_end};
use super::settings::{ADMIN_TIMEOUT, KafkaSettings};
use crate::config::Rules;

/// Topic settings of the rules topic: compacted (a version is written again by every worker
/// that starts with it; one copy is enough), never deleted by time.
pub const RULES_TOPIC_CONFIG: &[(&str, &str)] = &[("cleanup.policy", "compact")];

/// One record of the rules topic (its value, as JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RulesRecord {
    pub version: String,
    /// When it was loaded, ms since the epoch.
    pub loaded_at: i64,
    /// The process that loaded it: role, host and pid.
    pub loaded_by: String,
    /// The `channels.toml` text, byte for byte: its hash is the version.
    pub text: String,
}

/// Creates the rules topic if needed and writes `rules`, loaded by this process in `role`, to
/// it, waiting for Kafka's ack.
pub async fn record_rules(settings: &KafkaSettings, rules: &Rules, role: &str) -> Result<()> {
    let topic = &rules.kafka.rules_topic;
    super::topics::ensure_topics_configured(
        settings,
        std::slice::from_ref(topic),
        1,
        rules.kafka.replication_factor,
        |_| RULES_TOPIC_CONFIG,
    )
    .await?;
    let record = RulesRecord {
        version: rules.version.clone(),
        loaded_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
        loaded_by: loaded_by(role),
        text: rules.text.to_string(),
    };
    let value = serde_json::to_vec(&record).expect("a rules record serializes");
    let producer = settings.publish_producer()?;
    let context = || format!("writing rules {} to {topic}", rules.version);
    let delivery = producer
        .send_result(FutureRecord::to(topic).key(&rules.version).payload(&value))
        .map_err(|(e, _)| ctx(context())(e))?;
    // Out now, whatever linger.ms the deployment's options set for producers.
    producer
        .flush(ADMIN_TIMEOUT)
        .map_err(ctx(format!("{} (flush)", context())))?;
    match delivery.await {
        Ok(Ok(_)) => {}
        Ok(Err((e, _))) => return Err(ctx(context())(e)),
        Err(_) => {
            return Err(KafkaFailure::Other(format!(
                "{}: no delivery report",
                context()
            )));
        }
    }
    Ok(())
}

/// Every version in the rules topic, with the first load seen of each (a version loaded again
/// keeps its first load time until compaction leaves only the last). Empty when the topic does
/// not exist.
pub fn read_rules(reader: &BaseConsumer, topic: &str) -> Result<BTreeMap<String, RulesRecord>> {
    let mut out = BTreeMap::new();
    let Some(partitions) = super::partition_count(reader, topic)? else {
        return Ok(out);
    };
    let starts: Vec<(String, i32, ReadFrom)> = (0..partitions)
        .map(|p| (topic.to_string(), p, ReadFrom::Offset(0)))
        .collect();
    let mut bad = None;
    read_to_end(reader, &starts, Duration::from_secs(60), |m| {
        match m.payload().map(serde_json::from_slice::<RulesRecord>) {
            Some(Ok(r)) => {
                out.entry(r.version.clone()).or_insert(r);
            }
            _ => bad = Some(m.offset()),
        }
    })?;
    if let Some(offset) = bad {
        tracing::warn!(%topic, offset, "a record of the rules topic is not a rules record; skipped");
    }
    Ok(out)
}

/// Role, host and pid, for `loaded_by`.
pub fn loaded_by(role: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("{role}@{host}/{}", std::process::id())
}
