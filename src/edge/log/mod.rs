//! The in-memory log of the channel topics an edge serves. Per partition, the recent records
//! already encoded as `message` frames (shared by every subscriber, [`entry`]) and the latest
//! record per symbol ([`partition`]); per topic, the sessions to wake ([`topic`]); per partition, whether the reader keeps up
//! ([`progress`]). One writer
//! (the Kafka reader), many readers: sessions pull at their own cursor (a Kafka offset) and the
//! log only wakes them, which makes resume, slow clients and fan-out one mechanism.

pub mod entry;
pub mod partition;
pub mod progress;
pub mod symbols;
pub mod topic;
