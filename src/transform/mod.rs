//! Transform workers: `prices.raw` → `prices.<channel>` (and the dead-letter topic).
//!
//! A worker is a member of a Kafka consumer group on the raw topic. For each raw record and each
//! channel that carries its symbol it writes one record to the channel topic, same key, same
//! partition number, with the raw offset and the rules version in headers. Exactly-once output
//! comes from an idempotent producer plus the resume rule in [`resume`].

mod checkpoint;
mod context;
mod dedup;
mod delivery;
pub mod encode;
mod latest;
pub mod options;
mod output;
pub mod process;
pub mod resume;
mod transaction;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::reload::LiveRules;
use crate::kafka;

pub use options::{TransformError, TransformOptions, check_options, output_topics};
pub use output::{ERROR_DETAIL_HEADER, ERROR_HEADER, RAW_PARTITION_HEADER, RAW_TOPIC_HEADER};

/// Runs a transform worker until `shutdown`. Waits for the raw topic to exist, creates missing
/// output topics (same partition count as the raw topic), then consumes.
pub async fn run(
    opts: TransformOptions,
    live: LiveRules,
    shutdown: CancellationToken,
    ready: Arc<crate::ready::ReadyFlag>,
) -> Result<(), TransformError> {
    let rules = live.load_full();
    check_options(&opts.kafka, rules.kafka.delivery)?;
    if let Some(c) = &opts.only_channel
        && rules.channel(c).is_none()
    {
        return Err(TransformError::UnknownChannel(c.clone()));
    }
    let dead_letter = opts.dead_letter_topic(&rules);
    if dead_letter.len() > 249 {
        return Err(TransformError::DeadLetterTopic(
            dead_letter,
            "longer than 249 characters",
        ));
    }
    if rules.channels.iter().any(|c| c.topic == dead_letter) || dead_letter == rules.kafka.raw_topic
    {
        return Err(TransformError::DeadLetterTopic(
            dead_letter,
            "it is also a channel or the raw topic",
        ));
    }
    let raw = rules.kafka.raw_topic.clone();
    let reader = std::sync::Arc::new(opts.kafka.reader()?);
    let mut waited = false;
    loop {
        let count = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            c = kafka::partition_count_off_thread(&reader, &raw) => c,
        };
        match count {
            Ok(Some(_)) => break,
            Ok(None) if !waited => {
                info!(topic = %raw, "waiting for the raw topic to be created");
                waited = true;
            }
            Ok(None) => {}
            Err(e) if !waited => {
                info!("waiting for Kafka at {}: {e}", opts.kafka.brokers);
                waited = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    drop(reader);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || worker::run_loop(opts, live, shutdown, ready, runtime))
        .await?
}
