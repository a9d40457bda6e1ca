//! The latest-price topics: next to each channel topic `T`, a compacted topic `T.latest` with the
//! newest record of every symbol the channel has priced, keyed by symbol, with the partition and
//! offset the record has in `T`. The transform writes it (src/transform/latest.rs); an edge reads
//! it at start instead of the channel's history (src/edge/kafka/position.rs), so its start time
//! grows with the number of symbols, not with the records in `T`.

/// The latest-price topic of the channel topic `channel_topic`.
pub fn latest_topic(channel_topic: &str) -> String {
    format!("{channel_topic}{LATEST_SUFFIX}")
}

/// What [`latest_topic`] appends to a channel topic (channel names cannot hold a dot, so it never
/// names another channel's topic).
pub const LATEST_SUFFIX: &str = ".latest";

/// Header of a latest-price record: the record's partition in the channel topic.
pub const CHANNEL_PARTITION_HEADER: &str = "pricefeed-channel-partition";
/// Header of a latest-price record: the record's offset in the channel topic (its seqNo).
pub const CHANNEL_OFFSET_HEADER: &str = "pricefeed-channel-offset";
/// Header of a latest-price record: the channel topic's id when it was written (absent when
/// not known): a record of an earlier life of the topic (deleted and created again) is not one
/// of the current life.
pub const CHANNEL_EPOCH_HEADER: &str = "pricefeed-channel-epoch";

/// Topic settings of a latest-price topic: compacted, with a segment rolled every minute so
/// that the log cleaner can compact it (the active segment is never compacted): what an edge
/// reads at start is about one record per symbol plus at most a few minutes of writes.
pub const LATEST_TOPIC_CONFIG: &[(&str, &str)] = &[
    ("cleanup.policy", "compact"),
    ("segment.ms", "60000"),
    ("min.cleanable.dirty.ratio", "0.1"),
    ("min.compaction.lag.ms", "0"),
];

/// What a latest-price record names in the channel topic.
pub struct Named<'a> {
    pub partition: i32,
    pub offset: i64,
    /// The channel topic's id when it was written (`None` from a transform that did not know it).
    pub epoch: Option<&'a str>,
}

/// The partition, channel offset and epoch a latest-price record names, from its headers.
pub fn channel_position<'a>(
    headers: Option<&'a rdkafka::message::BorrowedHeaders>,
) -> Option<Named<'a>> {
    use rdkafka::message::Headers;
    let headers = headers?;
    let (mut partition, mut offset, mut epoch) = (None, None, None);
    for h in headers.iter() {
        let value = h.value.and_then(|v| std::str::from_utf8(v).ok());
        match h.key {
            CHANNEL_PARTITION_HEADER => partition = value.and_then(|v| v.parse().ok()),
            CHANNEL_OFFSET_HEADER => offset = value.and_then(|v| v.parse().ok()),
            CHANNEL_EPOCH_HEADER => epoch = value,
            _ => {}
        }
    }
    Some(Named {
        partition: partition?,
        offset: offset?,
        epoch,
    })
}
