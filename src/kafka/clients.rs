//! Every Kafka client pricefeed creates, built here from [`KafkaSettings`]: admin, readers, the
//! transform's group consumer and output producer, the edge's publisher, the simulator's
//! producer, reconcile's bulk reader.

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{FromClientConfig, FromClientConfigAndContext};
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::producer::{FutureProducer, ProducerContext, ThreadedProducer};

use super::failure::{Result, ctx};
use super::settings::{ClientKind, KafkaSettings};

impl KafkaSettings {
    pub fn admin(&self) -> Result<AdminClient<DefaultClientContext>> {
        AdminClient::from_config(&self.config(ClientKind::Admin, &[]))
            .map_err(ctx("creating a Kafka admin client"))
    }

    pub fn reader(&self) -> Result<BaseConsumer> {
        BaseConsumer::from_config(&self.reader_config()).map_err(ctx("creating a Kafka consumer"))
    }

    /// A reader tuned for low-latency reads of the channel topics (the edge's live reader and
    /// its replays): a fetch waits at most 10 ms for data unless the operator set
    /// `fetch.wait.max.ms`.
    pub fn live_reader(&self) -> Result<BaseConsumer> {
        let mut c = self.reader_config();
        if !self
            .options
            .iter()
            .any(|(k, _)| k.ends_with("fetch.wait.max.ms"))
        {
            c.set("fetch.wait.max.ms", "10");
        }
        BaseConsumer::from_config(&c).map_err(ctx("creating the edge's Kafka consumer"))
    }

    /// A reader for whole partitions (reconcile): large fetches, and only committed records
    /// unless `isolation.level` is given.
    pub fn bulk_reader(&self) -> Result<BaseConsumer> {
        let mut c = self.reader_config();
        c.set("fetch.max.bytes", "104857600");
        c.set("max.partition.fetch.bytes", "10485760");
        if !self
            .options
            .iter()
            .any(|(k, _)| k.ends_with("isolation.level"))
        {
            c.set("isolation.level", "read_committed");
        }
        BaseConsumer::from_config(&c).map_err(ctx("creating a Kafka consumer"))
    }

    /// A member of `group_id` with its callbacks in `context` (the transform's raw consumer).
    pub fn group_consumer<C: ConsumerContext>(
        &self,
        group_id: &str,
        context: C,
    ) -> Result<BaseConsumer<C>> {
        BaseConsumer::from_config_and_context(&self.group_consumer_config(group_id), context)
            .map_err(ctx("creating the transform's consumer"))
    }

    /// The transform's output producer: idempotent, or transactional with `transactional_id`.
    pub fn output_producer<C: ProducerContext>(
        &self,
        transactional_id: Option<&str>,
        context: C,
    ) -> Result<ThreadedProducer<C>> {
        let config = match transactional_id {
            Some(id) => self.transactional_producer_config(id),
            None => self.producer_config(),
        };
        ThreadedProducer::from_config_and_context(&config, context)
            .map_err(ctx("creating the output producer"))
    }

    /// The simulator's producer: the same key goes to the same partition as Java clients would
    /// choose (`murmur2_random`).
    pub fn keyed_producer<C: ProducerContext>(&self, context: C) -> Result<ThreadedProducer<C>> {
        let mut config = self.producer_config();
        config.set("partitioner", "murmur2_random");
        ThreadedProducer::from_config_and_context(&config, context)
            .map_err(ctx("creating the producer"))
    }

    /// The edge's publish producer (answers each write when Kafka acknowledged it).
    pub fn publish_producer(&self) -> Result<FutureProducer> {
        FutureProducer::from_config(&self.producer_config())
            .map_err(ctx("creating the publish producer"))
    }
}
