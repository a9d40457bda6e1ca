//! The edge's Kafka side: where reading starts ([`position`]), the live reader thread that fills
//! the in-memory log ([`reader`]), replays for resumes that reach back past memory ([`replay`]),
//! and the probe thread that checks Kafka answers and finds added channels ([`probe`]).

pub mod position;
pub mod probe;
pub mod reader;
pub mod replay;
