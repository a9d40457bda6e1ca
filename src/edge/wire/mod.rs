//! The WebSocket wire: framing ([`frames`] written, [`reader`] read) and the Micro Socket
//! protocol on top of it ([`protocol`]: client frames parsed; [`server`]: the server's frames,
//! typed).

pub mod frames;
pub mod protocol;
pub mod reader;
pub mod server;
