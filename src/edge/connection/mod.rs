//! One client connection: the socket loop of a WebSocket ([`driver`]) or of a Server-Sent Events
//! stream ([`sse`], positioned by [`event_id`]) writes what the [`session`] has ready;
//! [`requests`] change the session; each subscription ([`subscription`], kept by
//! [`subscriptions`]) moves a pure [`cursor`] per partition through the in-memory log; frames
//! pass through a [`throttle`] when the client asked for one and are put into the next write by
//! the [`outbox`]; [`rate`] limits client frames.

pub mod cursor;
pub mod driver;
pub mod event_id;
pub mod outbox;
pub mod rate;
pub mod requests;
pub mod session;
pub mod sse;
pub mod subscription;
pub mod subscriptions;
pub mod throttle;
