//! Latency percentiles from the clients' samples, through an HDR histogram (3 significant
//! digits, 1 µs to 10 min).

use hdrhistogram::Histogram;

/// Percentiles in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    pub samples: u64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// `None` without samples.
pub fn latency(samples: impl IntoIterator<Item = u32>) -> Option<Latency> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds");
    for s in samples {
        h.saturating_record(u64::from(s.max(1)));
    }
    (!h.is_empty()).then(|| Latency {
        samples: h.len(),
        p50: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99: h.value_at_quantile(0.99) as f64 / 1000.0,
        p999: h.value_at_quantile(0.999) as f64 / 1000.0,
        max: h.max() as f64 / 1000.0,
    })
}

/// `p50 / p99 / max` for a table cell, or "–".
pub fn cell(l: Option<Latency>) -> String {
    l.map_or("–".into(), |l| {
        format!("{:.1} / {:.1} / {:.1}", l.p50, l.p99, l.max)
    })
}
