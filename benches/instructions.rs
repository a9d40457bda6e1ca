//! A fixed-count run of the pipeline for instruction counting, which is repeatable on a noisy
//! shared machine where wall-clock timings are not:
//!
//! ```text
//! cargo bench --bench instructions --no-run
//! B=$(ls -t target/release/deps/instructions-* | grep -v '\.d$' | head -1)
//! for n in 1000 21000; do N=$n valgrind --tool=callgrind --callgrind-out-file=/dev/null $B minimal; done
//! ```
//!
//! (instructions at 21000 − instructions at 1000) / 20000 = instructions per raw record.

use std::hint::black_box;

use pricefeed::config::Rules;
use pricefeed::tools::simulate::Walk;
use pricefeed::transform::process::{ChannelOutput, Processor, RecordMeta};

fn main() {
    // `cargo bench` passes `--bench`; the record shape is the first other argument.
    let full = std::env::args().skip(1).any(|a| a == "full");
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let rules = Rules::parse(include_str!("../channels.toml"), "channels.toml").unwrap();
    let mut walk = Walk::new(&rules.instruments, 42, 0.0);
    let input: Vec<(String, String)> = (0..4096)
        .map(|i| {
            let r = walk.next_record(1_732_230_000_000 + i);
            let value = if full {
                r.value
            } else {
                let cut = r.value.find(",\"bid_size\"").expect("simulator shape");
                format!("{}}}", &r.value[..cut])
            };
            (r.key, value)
        })
        .collect();
    let mut processor = Processor::new();
    let mut bytes = 0usize;
    for i in 0..n {
        let (key, value) = &input[i % input.len()];
        let meta = RecordMeta {
            key: Some(key.as_bytes()),
            timestamp_ms: None,
        };
        processor
            .process(
                &rules,
                None,
                meta,
                value.as_bytes(),
                1_732_230_000_500,
                |_, out| {
                    if let ChannelOutput::Publish { value, .. } = out {
                        bytes += value.len();
                    }
                },
            )
            .expect("valid record");
    }
    println!("{n} records, {} output bytes", black_box(bytes));
}
