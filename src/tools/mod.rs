//! Commands apart from the pipeline stages: a realistic demo feed ([`simulate`]), a topic viewer
//! ([`tail`]), a terminal client of the edge ([`watch`]), client tokens ([`token`]), and
//! config validation ([`check_config`]).

pub mod check_config;
pub mod simulate;
pub mod tail;
pub mod token;
pub mod watch;
