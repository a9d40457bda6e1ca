//! `pricefeed reconcile` and `pricefeed audit`: the answer, printed as text or JSON, and the
//! exit code.

use std::process::ExitCode;

use super::args::{AuditArgs, Cli, ReconcileArgs};
use crate::config::Rules;
use crate::kafka::KafkaSettings;

pub fn reconcile(cli: &Cli, rules: Rules, r: &ReconcileArgs) -> ExitCode {
    use crate::reconcile::{Bound, ReconcileOptions};
    let mut older = Vec::new();
    for path in &r.older_rules {
        match Rules::load(path) {
            Ok(rules) => older.push(std::sync::Arc::new(rules)),
            Err(errors) => {
                eprint!("{errors}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(c) = &r.channel
        && rules.channel(c).is_none()
    {
        eprintln!(
            "pricefeed: unknown channel {c:?}: it is not in {}",
            cli.config.display()
        );
        return ExitCode::from(2);
    }
    let bound = |offset: Option<i64>, time: Option<i64>| match (offset, time) {
        (Some(o), _) => Bound::Offset(o),
        (None, Some(t)) => Bound::Time(t),
        (None, None) => Bound::Edge,
    };
    let opts = ReconcileOptions {
        kafka: kafka_settings(cli),
        rules: std::sync::Arc::new(rules),
        older_rules: older,
        channel: r.channel.clone(),
        from: bound(r.from_offset, r.from_time),
        to: bound(r.to_offset, r.to_time),
        partitions: r.partitions.clone(),
    };
    match crate::reconcile::run(&opts) {
        Ok(report) => {
            if r.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                println!("{}", report.text());
            }
            if report.findings() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("pricefeed reconcile: {e}");
            ExitCode::from(2)
        }
    }
}

fn kafka_settings(cli: &Cli) -> KafkaSettings {
    KafkaSettings {
        brokers: cli.brokers.clone(),
        options: cli.kafka_options.iter().flat_map(|l| l.0.clone()).collect(),
    }
}

/// Exits 0 with an answer (even one with no quote in the window), 2 when there is none.
pub fn audit(cli: &Cli, rules: Rules, a: &AuditArgs) -> ExitCode {
    let q = crate::audit::AuditQuery {
        channel: a.channel.clone(),
        symbol: a.symbol.clone(),
        at: a.at,
        window_ms: a.window,
        limit: a.limit.max(1),
    };
    match crate::audit::audit(&kafka_settings(cli), &rules, &q) {
        Ok(answer) if a.json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            print!("{}", answer.text());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pricefeed audit: {e}");
            ExitCode::from(2)
        }
    }
}
