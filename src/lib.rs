//! pricefeed: raw prices from Kafka, per-channel margins, one sub stream per channel, and a
//! WebSocket edge that serves each client its view of them.
//!
//! Data flow (and module layout): [`ingest`] decodes `prices.raw`, [`pricing`] applies the margin
//! rules of [`config`], [`transform`] workers write `prices.<channel>`, and the [`edge`] reads
//! those and serves WebSocket clients. [`service`] runs the roles of a process; [`kafka`] builds
//! every Kafka client; [`http`] and [`telemetry`] expose the process; [`reconcile`] checks the
//! topics against each other; [`audit`] answers what a channel quoted when; [`tools`] are the commands apart from the pipeline (a demo feed,
//! a topic viewer, a terminal client, token minting, config checking).

pub mod audit;
pub mod cli;
pub mod config;
pub mod edge;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod ingest;
pub mod kafka;
pub mod pricing;
pub mod ready;
pub mod reconcile;
pub mod service;
pub mod telemetry;
pub mod tools;
pub mod transform;

pub use service::{ConfigSource, Roles, ServiceError, run};
