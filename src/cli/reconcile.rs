//! `pricefeed reconcile`: the report, printed as text or JSON, and its exit code.

use std::process::ExitCode;

use super::args::{Cli, ReconcileArgs};
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
        kafka: KafkaSettings {
            brokers: cli.brokers.clone(),
            options: cli.kafka_options.iter().flat_map(|l| l.0.clone()).collect(),
        },
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
