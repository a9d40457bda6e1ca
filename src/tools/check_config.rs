//! `pricefeed check-config`: validates a channels.toml and lists every error.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Rules;

pub fn check_config(path: &Path) -> ExitCode {
    match Rules::load(path) {
        Ok(rules) => {
            println!(
                "{}: ok (version {}, {} instruments, {} channels: {})",
                path.display(),
                rules.version,
                rules.instruments.len(),
                rules.channels.len(),
                rules
                    .channels
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{errors}");
            ExitCode::FAILURE
        }
    }
}
