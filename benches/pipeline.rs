//! decode → transform for every channel → encode, per raw record, on one core.
//!
//! Run: `cargo bench --bench pipeline`. Results and the target are in docs/benchmarks.md.
//! `pipeline/*` prices the example's three channels; `ladder/*` prices records with five depth
//! levels a side for three plain channels, then for three size-tiered channels of five bands
//! each (full amount, VWAP, VWAP in bps), so the difference is what the ladders cost.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pricefeed::config::Rules;
use pricefeed::tools::simulate::{Walk, lot};
use pricefeed::transform::process::{ChannelOutput, Processor, RecordMeta};

/// Simulator records: symbol, bid, ask, ts, both sizes, id and source (about 170 bytes).
fn full_records(rules: &Rules, n: usize) -> Vec<(String, String)> {
    let mut walk = Walk::new(&rules.instruments, 42, 0.0);
    (0..n)
        .map(|i| {
            let r = walk.next_record(1_732_230_000_000 + i as i64);
            (r.key, r.value)
        })
        .collect()
}

/// The same prices in the minimal shape of DESIGN.md: symbol, bid, ask, ts (about 75 bytes).
fn minimal_records(rules: &Rules, n: usize) -> Vec<(String, String)> {
    full_records(rules, n)
        .into_iter()
        .map(|(key, value)| {
            let cut = value.find(",\"bid_size\"").expect("simulator shape");
            (key, format!("{}}}", &value[..cut]))
        })
        .collect()
}

fn pipeline(c: &mut Criterion) {
    let text = include_str!("../channels.toml");
    let rules = Rules::parse(text, "channels.toml").expect("example config");
    assert_eq!(rules.channels.len(), 3, "the example has three channels");
    let now = 1_732_230_000_500;
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));
    for (name, input) in [
        ("minimal_record", minimal_records(&rules, 4096)),
        ("full_record", full_records(&rules, 4096)),
    ] {
        bench_shape(&mut group, name, &rules, &input, now);
    }
    group.finish();
}

fn bench_shape(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    rules: &Rules,
    input: &[(String, String)],
    now: i64,
) {
    let mut processor = Processor::new();
    group.bench_function(name, |b| {
        let mut i = 0;
        b.iter(|| {
            let (key, value) = &input[i % input.len()];
            i += 1;
            let meta = RecordMeta {
                key: Some(key.as_bytes()),
                timestamp_ms: None,
            };
            let mut bytes = 0usize;
            let result = processor.process(rules, None, meta, value.as_bytes(), now, |_, out| {
                if let ChannelOutput::Publish { value, .. } = out {
                    bytes += black_box(value).len();
                }
            });
            assert!(result.is_ok());
            black_box(bytes)
        })
    });
}

/// The example's instruments with three channels: plain markups, or five bands for every
/// instrument (its own sizes, in overrides).
fn ladder_rules(example: &Rules, tiered: bool) -> Rules {
    let mut text = String::new();
    for i in &example.instruments {
        text += &format!(
            "[instruments.\"{}\"]\ntick = \"{}\"\npip = \"{}\"\nprecision = {}\n",
            i.symbol,
            i.tick.size(),
            i.pip,
            i.precision
        );
    }
    for (name, pricing, unit) in [
        ("a", "full_amount", "pips"),
        ("b", "vwap", "pips"),
        ("c", "vwap", "bps"),
    ] {
        text += &format!("[channels.{name}]\n");
        text += &format!("markup = {{ unit = \"{unit}\", bid = \"0.5\", ask = \"0.5\" }}\n");
        if !tiered {
            continue;
        }
        text += &format!("pricing = \"{pricing}\"\n");
        for i in &example.instruments {
            // Bands of 1, 2, 4, 7 and 10 lots: the simulator's five levels hold 5 to 20 lots.
            let bands: Vec<String> = [(1, "0.5"), (2, "0.6"), (4, "0.8"), (7, "1.0"), (10, "1.5")]
                .iter()
                .map(|(lots, m)| {
                    format!(
                        "{{ up_to = \"{}\", markup = {{ unit = \"{unit}\", bid = \"{m}\", ask = \"{m}\", min_spread = \"{m}\" }} }}",
                        lots * lot(&i.symbol)
                    )
                })
                .collect();
            text += &format!(
                "[channels.{name}.overrides.\"{}\"]\ntiers = [{}]\n",
                i.symbol,
                bands.join(", ")
            );
        }
    }
    Rules::parse(&text, "ladder bench").expect("bench rules")
}

fn ladders(c: &mut Criterion) {
    let example = Rules::parse(include_str!("../channels.toml"), "channels.toml").unwrap();
    let mut walk = Walk::new(&example.instruments, 42, 0.0).with_depth(5);
    let input: Vec<(String, String)> = (0..4096)
        .map(|i| {
            let r = walk.next_record(1_732_230_000_000 + i as i64);
            (r.key, r.value)
        })
        .collect();
    let now = 1_732_230_000_500;
    let mut group = c.benchmark_group("ladder");
    group.throughput(Throughput::Elements(1));
    for (name, tiered) in [
        ("depth5_plain_3_channels", false),
        ("depth5_tiered_3x5_bands", true),
    ] {
        let rules = ladder_rules(&example, tiered);
        bench_shape(&mut group, name, &rules, &input, now);
    }
    group.finish();
}

criterion_group!(benches, pipeline, ladders);
criterion_main!(benches);
