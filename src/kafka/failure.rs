//! Why a Kafka call failed: the client error with what was being done, kept as its source.

use rdkafka::error::KafkaError;

#[derive(Debug, thiserror::Error)]
pub enum KafkaFailure {
    #[error("{what}: {source}")]
    Client {
        what: String,
        #[source]
        source: KafkaError,
    },
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, KafkaFailure>;

pub(crate) fn ctx(what: impl Into<String>) -> impl FnOnce(KafkaError) -> KafkaFailure {
    let what = what.into();
    move |source| match source {
        // Not kept as the source: its Display (and so any error chain printed) holds the value.
        KafkaError::ClientConfig(..) => KafkaFailure::Other(format!("{what}: {}", shown(&source))),
        source => KafkaFailure::Client { what, source },
    }
}

/// A Kafka error as pricefeed shows it: a rejected option is named, never its value (librdkafka
/// quotes the value, and an option may hold a password, or run into one after a typo such as
/// `security.protocol=SASL_SSL,sasl.password:…`).
pub fn shown(e: &KafkaError) -> String {
    match e {
        KafkaError::ClientConfig(_, description, key, value) => {
            let description = if value.is_empty() {
                description.clone()
            } else {
                description.replace(value.as_str(), "…")
            };
            format!("Kafka option {key} refused: {description} (its value is not shown)")
        }
        other => other.to_string(),
    }
}
