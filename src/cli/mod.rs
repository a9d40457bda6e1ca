//! The `pricefeed` command line ([`args`], with [`kafka_options`]) and what each command does
//! ([`dispatch`]; `reconcile`'s report in [`reconcile`]).

pub mod args;
pub mod dispatch;
pub mod kafka_options;
pub mod reconcile;
