//! What `pricefeed reconcile` found, per raw partition and output topic.

use std::fmt::Write;

use serde::Serialize;

/// One output topic's partition compared with its raw partition.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OutputReport {
    pub topic: String,
    /// Records whose raw offset lies in the range.
    pub records: u64,
    /// Raw offsets expected here and absent.
    pub missing: Vec<i64>,
    /// Raw offsets present more than once.
    pub doubled: Vec<i64>,
    /// Raw offsets stored after a higher one.
    pub out_of_order: Vec<i64>,
    /// Records that belong to another raw partition (another symbol than the raw record at
    /// their offset, or a dead letter naming another partition).
    pub wrong_partition: Vec<i64>,
    /// Records whose value is not what their rules version makes of the raw record.
    pub wrong_price: Vec<i64>,
    /// Records for a raw offset that holds no record, or that this output must not carry.
    pub unexpected: Vec<i64>,
    /// Records without pricefeed headers (not written by a worker).
    pub foreign: u64,
    /// Records priced with a rules version that was not given (`--rules`): not checked.
    pub unverified: u64,
    /// Absent from a channel that withholds stale prices, and possibly stale when priced.
    pub possibly_withheld: u64,
}

impl OutputReport {
    pub fn new(topic: &str) -> OutputReport {
        OutputReport {
            topic: topic.to_string(),
            ..Default::default()
        }
    }

    pub fn findings(&self) -> usize {
        self.missing.len()
            + self.doubled.len()
            + self.out_of_order.len()
            + self.wrong_partition.len()
            + self.wrong_price.len()
            + self.unexpected.len()
            + self.foreign as usize
    }
}

/// One raw partition.
#[derive(Clone, Debug, Serialize)]
pub struct PartitionReport {
    pub partition: i32,
    /// The raw offsets compared: `[start, end)`.
    pub start: i64,
    pub end: i64,
    pub raw_records: u64,
    /// Raw records whose rules version was not given: what they should produce is unknown.
    pub unverified: u64,
    pub outputs: Vec<OutputReport>,
}

/// The whole comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub raw_topic: String,
    pub partitions: Vec<PartitionReport>,
}

impl Report {
    pub fn findings(&self) -> usize {
        self.partitions
            .iter()
            .flat_map(|p| &p.outputs)
            .map(OutputReport::findings)
            .sum()
    }

    /// Output records compared.
    pub fn output_records(&self) -> u64 {
        self.partitions
            .iter()
            .flat_map(|p| &p.outputs)
            .map(|o| o.records)
            .sum()
    }

    /// The human-readable report: one line per output partition, and a summary.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for p in &self.partitions {
            let _ = writeln!(
                s,
                "{}/{}: raw offsets {}..{} ({} records{})",
                self.raw_topic,
                p.partition,
                p.start,
                p.end,
                p.raw_records,
                if p.unverified > 0 {
                    format!(", {} with a rules version not given", p.unverified)
                } else {
                    String::new()
                }
            );
            for o in &p.outputs {
                let _ = writeln!(s, "  {}: {}", o.topic, describe(o));
            }
        }
        let raw: u64 = self.partitions.iter().map(|p| p.raw_records).sum();
        let _ = write!(
            s,
            "{} findings in {} output records against {raw} raw records",
            self.findings(),
            self.output_records()
        );
        s
    }
}

fn describe(o: &OutputReport) -> String {
    let mut parts = vec![format!("{} records", o.records)];
    for (name, list) in [
        ("missing", &o.missing),
        ("doubled", &o.doubled),
        ("out of order", &o.out_of_order),
        ("wrong partition", &o.wrong_partition),
        ("wrong price", &o.wrong_price),
        ("unexpected", &o.unexpected),
    ] {
        if !list.is_empty() {
            parts.push(format!("{name} {} ({})", list.len(), ranges(list)));
        }
    }
    if o.foreign > 0 {
        parts.push(format!("{} without pricefeed headers", o.foreign));
    }
    if o.unverified > 0 {
        parts.push(format!(
            "{} priced by a rules version not given (not checked)",
            o.unverified
        ));
    }
    if o.possibly_withheld > 0 {
        parts.push(format!(
            "{} absent but possibly stale when priced (withheld)",
            o.possibly_withheld
        ));
    }
    if o.findings() == 0 {
        parts.push("clean".into());
    }
    parts.join(", ")
}

/// Sorted offsets as runs: `[1, 2, 3, 7]` → `1..=3, 7`, at most 12 runs shown.
pub fn ranges(offsets: &[i64]) -> String {
    let mut sorted = offsets.to_vec();
    sorted.sort_unstable();
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for o in sorted {
        match runs.last_mut() {
            Some(run) if run.1 + 1 == o || run.1 == o => run.1 = o,
            _ => runs.push((o, o)),
        }
    }
    const SHOWN: usize = 12;
    let shown: Vec<String> = runs
        .iter()
        .take(SHOWN)
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}..={b}")
            }
        })
        .collect();
    match runs.len() {
        0 => "none".into(),
        n if n <= SHOWN => shown.join(", "),
        n => format!("{}, and {} more runs", shown.join(", "), n - SHOWN),
    }
}
