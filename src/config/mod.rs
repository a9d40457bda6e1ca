//! `channels.toml`: the instruments, the channels and their margin rules, Kafka topic names, and
//! the edge's auth and limits.
//!
//! The file is parsed once into [`Rules`], an immutable, fully validated and pre-resolved model
//! that the hot path reads without locks (it is swapped whole on reload, see [`reload`]).
//! Validation reports every problem at once, each with its TOML path.

mod channels;
mod edge;
mod errors;
mod markup;
mod parse;
pub mod reload;
mod rules;
mod tiers;
mod walk;

pub use edge::{AuthSettings, EdgeSettings, JwtAlgorithm, SlowClientPolicy};
pub use errors::{ConfigError, ConfigErrors};
pub use rules::{Channel, Delivery, KafkaTopics, Rules, StalePolicy};
pub use tiers::MAX_BANDS;
