//! The edge's Kafka side: where reading starts ([`position`]), the live reader thread that fills
//! the in-memory log ([`reader`]), replays for resumes that reach back past memory ([`replay`]),
//! the probe thread that checks Kafka answers, finds added channels and stalled partitions
//! ([`probe`]), and the reader's side of stall recovery ([`recover`]).

pub mod position;
pub mod probe;
pub mod reader;
pub mod recover;
pub mod replay;
