//! Topics: partition counts and creating the topics pricefeed writes.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

use super::failure::{KafkaFailure, Result, ctx};
use super::settings::{ADMIN_TIMEOUT, KafkaSettings};

/// Number of partitions of `topic`, or `None` when it does not exist.
pub fn partition_count<C: Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
    client: &C,
    topic: &str,
) -> Result<Option<i32>> {
    let metadata = client
        .fetch_metadata(Some(topic), ADMIN_TIMEOUT)
        .map_err(ctx(format!("reading metadata of topic {topic}")))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error() {
        None if !t.partitions().is_empty() => Ok(Some(t.partitions().len() as i32)),
        None => Ok(None),
        Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => {
            Ok(None)
        }
        Some(e) => Err(KafkaFailure::Other(format!(
            "metadata of topic {topic}: {}",
            RDKafkaErrorCode::from(e)
        ))),
    }
}

/// Whether `topic` exists and every partition has a leader.
fn leaders_elected(client: &BaseConsumer, topic: &str) -> Result<bool> {
    let metadata = client
        .fetch_metadata(Some(topic), ADMIN_TIMEOUT)
        .map_err(ctx(format!("reading metadata of topic {topic}")))?;
    Ok(metadata.topics().iter().any(|t| {
        t.name() == topic
            && t.error().is_none()
            && !t.partitions().is_empty()
            && t.partitions()
                .iter()
                .all(|p| p.error().is_none() && p.leader() >= 0)
    }))
}

/// [`partition_count`] on a blocking thread: the metadata request blocks for up to its timeout
/// when the broker is unreachable, and must not hold an async worker (signals, health checks and
/// every other task run there).
pub async fn partition_count_off_thread(
    client: &std::sync::Arc<BaseConsumer>,
    topic: &str,
) -> Result<Option<i32>> {
    let (client, topic) = (client.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || partition_count(&*client, &topic))
        .await
        .map_err(|e| KafkaFailure::Other(format!("metadata task: {e}")))?
}

/// Creates each topic that does not exist yet with `partitions` partitions, and checks that the
/// existing ones have at least that many. A topic whose name ends in
/// [`LATEST_SUFFIX`](super::latest::LATEST_SUFFIX) is created compacted
/// ([`LATEST_TOPIC_CONFIG`](super::latest::LATEST_TOPIC_CONFIG)).
pub async fn ensure_topics(
    settings: &KafkaSettings,
    topics: &[String],
    partitions: i32,
    replication_factor: i32,
) -> Result<()> {
    ensure_topics_configured(settings, topics, partitions, replication_factor, |t| {
        if t.ends_with(super::latest::LATEST_SUFFIX) {
            super::latest::LATEST_TOPIC_CONFIG
        } else {
            &[]
        }
    })
    .await
}

/// [`ensure_topics`] with the topic settings of each new topic given by `config`.
pub async fn ensure_topics_configured(
    settings: &KafkaSettings,
    topics: &[String],
    partitions: i32,
    replication_factor: i32,
    config: impl Fn(&str) -> &'static [(&'static str, &'static str)],
) -> Result<()> {
    let admin = settings.admin()?;
    let reader = settings.reader()?;
    let mut missing = Vec::new();
    for t in topics {
        match partition_count(&reader, t)? {
            Some(n) if n >= partitions => {}
            Some(n) => {
                return Err(KafkaFailure::Other(format!(
                    "topic {t} has {n} partitions but needs at least {partitions} (one per raw \
                     partition); add partitions with your Kafka tools"
                )));
            }
            None => missing.push(t.as_str()),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|t| {
            let new = NewTopic::new(t, partitions, TopicReplication::Fixed(replication_factor));
            config(t).iter().fold(new, |n, (k, v)| n.set(k, v))
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    let results = admin
        .create_topics(new.iter(), &opts)
        .await
        .map_err(ctx("creating topics"))?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(topic = %name, partitions, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaFailure::Other(format!(
                    "creating topic {name}: {code}"
                )));
            }
        }
    }
    // Wait until the new topics show up in metadata with a leader for every partition, so that
    // producers and watermark reads do not race the creation (a fresh broker elects the leaders
    // of several new topics one after another).
    let deadline = Instant::now() + ADMIN_TIMEOUT;
    for t in missing {
        while !leaders_elected(&reader, t)? {
            if Instant::now() > deadline {
                return Err(KafkaFailure::Other(format!(
                    "topic {t} was created but does not appear in metadata"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
