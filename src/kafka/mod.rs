//! The only module that builds rdkafka clients ([`clients`]): typed settings plus a passthrough
//! of any librdkafka option ([`settings`]), topic creation and metadata ([`topics`]), the latest-price topics' names and headers
//! ([`latest`]), the rules topic ([`rules_log`]), topic ids as epochs ([`topic_id`]), "read a
//! partition to its end" ([`read`]), and what a failure keeps ([`failure`]).

pub mod clients;
pub mod failure;
pub mod latest;
pub mod read;
pub mod rules_log;
pub mod settings;
pub mod topic_id;
pub mod topics;

pub(crate) use failure::ctx;
pub use failure::{KafkaFailure, Result, shown};
pub use latest::latest_topic;
pub use read::{ReadFrom, offset_for_time, read_range, read_to_end, watermarks};
pub use settings::{ADMIN_TIMEOUT, KafkaSettings};
pub use topic_id::topic_ids;
pub use topics::{ensure_topics, partition_count, partition_count_off_thread};
