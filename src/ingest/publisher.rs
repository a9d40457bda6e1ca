//! The headers an edge puts on a raw record it writes for a publisher (WebSocket `publish`,
//! `POST /publish`); the transform reads them to quote a published price once across edges.

/// The publisher: the token's `sub`, or `key:<name>` for an HTTP API key.
pub const PUBLISHER_HEADER: &str = "pricefeed-publisher";
/// The publisher's `messageId`.
pub const MESSAGE_ID_HEADER: &str = "pricefeed-message-id";
