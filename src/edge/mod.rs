//! The WebSocket edge. Data flows through it in this order:
//!
//! - [`kafka`]: the Kafka side: where reading starts, the live reader thread, replays for
//!   resumes that reach back past memory, the probe thread;
//! - [`log`]: the in-memory log each partition's records are appended to, encoded once;
//! - [`connection`]: one WebSocket connection: its session (requests, ACL), a cursor per
//!   subscribed partition, and the socket loop that writes what the cursors deliver;
//! - [`wire`]: the WebSocket framing and the Micro Socket protocol's frames.
//!
//! [`node`] is what every session shares, [`start`] builds it; [`auth`] verifies tokens,
//! [`publish`] writes clients' prices to the raw topic, [`demo`] signs demo tokens. The HTTP
//! routes that lead here are in [`crate::http`].

pub mod auth;
pub mod connection;
pub mod demo;
pub mod kafka;
pub mod log;
pub mod node;
pub mod publish;
pub mod start;
pub mod wire;

pub use start::{EdgeError, EdgeOptions, start};
