//! decode → transform for every channel → encode, per raw record, on one core.
//!
//! Run: `cargo bench --bench pipeline`. Results and the target are in docs/benchmarks.md.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pricefeed::config::Rules;
use pricefeed::tools::simulate::Walk;
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

criterion_group!(benches, pipeline);
criterion_main!(benches);
