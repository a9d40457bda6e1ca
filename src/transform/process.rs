//! One raw record through the pure pipeline: decode → validate → price every channel → encode.
//! No I/O: the Kafka worker and the benchmark both drive this.

use crate::config::{Rules, StalePolicy};
use crate::ingest::{Decoder, Reject};
use crate::pricing::{BandQuote, QuoteError, midpoint, quote_at_mid, quote_ladder};

use super::encode::{LadderOut, encode_quote, encode_tail};

/// What one channel does with one raw record.
#[derive(Debug, PartialEq, Eq)]
pub enum ChannelOutput<'a> {
    /// Publish this value on the channel's sub stream under `key` (the symbol).
    Publish {
        key: &'a [u8],
        value: &'a [u8],
        stale: bool,
    },
    /// Older than `stale_after_ms` on a `withhold` channel.
    WithheldStale,
    /// The rule cannot quote this price (e.g. the bid would not be positive).
    Unquotable(QuoteError),
}

/// The Kafka-side facts about a raw record that the pipeline needs.
#[derive(Clone, Copy, Debug)]
pub struct RecordMeta<'a> {
    pub key: Option<&'a [u8]>,
    /// The Kafka record timestamp (ms), used when the value has no `ts`.
    pub timestamp_ms: Option<i64>,
}

/// Reusable per-worker state for [`Processor::process`].
#[derive(Default)]
pub struct Processor {
    decoder: Decoder,
    value: Vec<u8>,
    tail: Vec<u8>,
    bands: Vec<BandQuote>,
}

impl Processor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs one raw record through every channel that carries its symbol (or only channel
    /// `only`), calling `emit(channel_index, output)` for each. `now_ms` decides staleness.
    /// Returns the source time of the price (its `ts`, else the Kafka timestamp, else now).
    pub fn process(
        &mut self,
        rules: &Rules,
        only: Option<usize>,
        meta: RecordMeta<'_>,
        payload: &[u8],
        now_ms: i64,
        mut emit: impl FnMut(usize, ChannelOutput<'_>),
    ) -> Result<i64, Reject> {
        let raw = self.decoder.decode(payload)?;
        let instrument_index = rules
            .instrument_index(raw.symbol)
            .ok_or_else(|| Reject::UnknownSymbol(raw.symbol.to_string()))?;
        if let Some(key) = meta.key
            && key != raw.symbol.as_bytes()
        {
            return Err(Reject::KeyMismatch {
                key: String::from_utf8_lossy(key).into_owned(),
                symbol: raw.symbol.to_string(),
            });
        }
        let instrument = &rules.instruments[instrument_index];
        let ts = raw.ts.or(meta.timestamp_ms).unwrap_or(now_ms);
        let age_ms = now_ms.saturating_sub(ts);
        encode_tail(&mut self.tail, &raw);
        let mid = midpoint(raw.bid, raw.ask);

        for (index, channel) in rules.channels.iter().enumerate() {
            if only.is_some_and(|o| o != index) {
                continue;
            }
            let Some(rule) = channel.rules[instrument_index].as_ref() else {
                continue;
            };
            let stale = channel
                .stale_after_ms
                .is_some_and(|limit| age_ms > limit as i64);
            if stale && channel.stale_policy == StalePolicy::Withhold {
                emit(index, ChannelOutput::WithheldStale);
                continue;
            }
            let q = match mid.and_then(|mid| quote_at_mid(instrument, rule, raw.bid, raw.ask, mid))
            {
                Ok(q) => q,
                Err(e) => {
                    emit(index, ChannelOutput::Unquotable(e));
                    continue;
                }
            };
            let ladder = match (&channel.ladders[instrument_index], mid) {
                (Some(ladder), Ok(mid)) => {
                    let (bids, asks) = (raw.bid_book(), raw.ask_book());
                    if let Err(e) =
                        quote_ladder(instrument, ladder, mid, bids, asks, &mut self.bands)
                    {
                        emit(index, ChannelOutput::Unquotable(e));
                        continue;
                    }
                    Some(LadderOut {
                        pricing: ladder.pricing,
                        bands: &self.bands,
                    })
                }
                _ => None,
            };
            encode_quote(
                &mut self.value,
                instrument,
                &q,
                ts,
                stale,
                ladder,
                &self.tail,
            );
            emit(
                index,
                ChannelOutput::Publish {
                    key: instrument.symbol.as_bytes(),
                    value: &self.value,
                    stale,
                },
            );
        }
        Ok(ts)
    }
}
