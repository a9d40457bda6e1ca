//! What `pricefeed audit` (and `GET /audit`) answers: the quotes a channel published for a
//! symbol around a time, each with the raw record it came from and the rules version and markup
//! that made it, as JSON and as text for people.

use std::fmt::Write;

use serde::Serialize;
use utoipa::ToSchema;

use crate::reconcile::format_time;

/// The question.
#[derive(Clone, Debug)]
pub struct AuditQuery {
    pub channel: String,
    pub symbol: String,
    /// Milliseconds since the epoch.
    pub at: i64,
    /// Quotes published within this many ms either side of `at`.
    pub window_ms: i64,
    /// At most this many quotes, the nearest to `at`.
    pub limit: usize,
}

/// The answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Audit {
    pub channel: String,
    /// The channel topic that was searched.
    pub topic: String,
    pub symbol: String,
    /// The time asked about, ms since the epoch.
    pub at: i64,
    pub window_ms: i64,
    /// The quotes of the symbol published in `[at - window, at + window]`, oldest first (by the
    /// time the channel published them, the Kafka record time).
    pub quotes: Vec<AuditedQuote>,
    /// Index in `quotes` of the quote in force at `at`: the last one published at or before it
    /// (`null`: none within the window before `at`; widen the window).
    pub in_force: Option<usize>,
    /// Channel records read to answer: the window on every partition, found with Kafka's time
    /// index (no scan of the topic).
    pub records_read: u64,
    /// More quotes matched than `limit`; the nearest to `at` are kept.
    pub truncated: bool,
}

/// One quote of the channel.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditedQuote {
    pub partition: i32,
    /// The seqNo clients received it with.
    pub offset: i64,
    /// When the channel published it (the Kafka record time), ms since the epoch.
    pub published_at: i64,
    pub bid: String,
    pub ask: String,
    pub stale: bool,
    /// The source price's time, ms since the epoch.
    pub source_ts: Option<i64>,
    /// The record value as published.
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
    /// The raw record it was made from (`null` when it is no longer in Kafka).
    pub raw: Option<RawSource>,
    pub rules: RulesApplied,
}

/// The raw record a quote was made from.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RawSource {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The Kafka record time, ms since the epoch.
    pub timestamp: Option<i64>,
    /// The raw value byte for byte as the feed wrote it (text: numbers in it stay exact).
    pub value: String,
}

/// The rules version that made a quote, and the markup it applied.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RulesApplied {
    /// From the record's `pricefeed-rules-version` header.
    pub version: String,
    /// When a worker loaded this version, and which (from the rules topic).
    pub loaded_at: Option<i64>,
    pub loaded_by: Option<String>,
    /// The markup this version applies to the symbol on the channel, in price units (`× mid`
    /// for bps and percent markups). On a tiered symbol, its first band's, which prices the
    /// top-of-book bid and ask.
    pub markup: Option<MarkupApplied>,
    /// On a tiered symbol, every size band with its markup (absent otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bands: Vec<BandApplied>,
    /// The quote (and its ladder, on a tiered symbol) recomputed from the raw record with this
    /// version equals the one published.
    pub reproduced: Option<bool>,
    /// Why something above is missing.
    pub note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarkupApplied {
    /// Subtracted from the source bid.
    pub bid: String,
    /// Added to the source ask.
    pub ask: String,
    pub min_spread: String,
}

/// One size band of a tiered symbol.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BandApplied {
    pub up_to: String,
    pub markup: MarkupApplied,
}

impl Audit {
    /// The answer for people.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} (topic {}) {} at {} ± {} ms: {} quote{}{} ({} records of the window read)",
            self.channel,
            self.topic,
            self.symbol,
            format_time(self.at),
            self.window_ms,
            self.quotes.len(),
            if self.quotes.len() == 1 { "" } else { "s" },
            if self.truncated {
                ", the nearest kept"
            } else {
                ""
            },
            self.records_read
        );
        if self.in_force.is_none() {
            let _ = writeln!(s, "no quote in the window before the time: widen --window");
        }
        for (i, q) in self.quotes.iter().enumerate() {
            let mark = if Some(i) == self.in_force { "*" } else { " " };
            let _ = writeln!(
                s,
                "{mark} {}  {}@{}  bid {}  ask {}  stale {}  source {}",
                format_time(q.published_at),
                q.partition,
                q.offset,
                q.bid,
                q.ask,
                q.stale,
                q.source_ts.map_or("?".into(), format_time)
            );
            match &q.raw {
                Some(r) => {
                    let _ = writeln!(
                        s,
                        "    from {} {}@{} ({}): {}",
                        r.topic,
                        r.partition,
                        r.offset,
                        r.timestamp.map_or("?".into(), format_time),
                        r.value
                    );
                }
                None => {
                    let _ = writeln!(s, "    from a raw record no longer in Kafka");
                }
            }
            let r = &q.rules;
            let _ = write!(s, "    rules {}", r.version);
            if let (Some(at), Some(by)) = (r.loaded_at, &r.loaded_by) {
                let _ = write!(s, ", loaded {} by {by}", format_time(at));
            }
            if let Some(m) = &r.markup {
                let _ = write!(
                    s,
                    ": bid -{}, ask +{}, min spread {}",
                    m.bid, m.ask, m.min_spread
                );
            }
            for b in &r.bands {
                let m = &b.markup;
                let _ = write!(
                    s,
                    "; up to {}: bid -{}, ask +{}, min spread {}",
                    b.up_to, m.bid, m.ask, m.min_spread
                );
            }
            match r.reproduced {
                Some(true) => s.push_str("; reproduced"),
                Some(false) => s.push_str("; NOT reproduced by these rules"),
                None => {}
            }
            if let Some(note) = &r.note {
                let _ = write!(s, " ({note})");
            }
            s.push('\n');
        }
        s
    }
}
