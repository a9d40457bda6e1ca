//! A size-tiered channel for the edge's tests: resume, snapshot and conflation run on a channel
//! whose every record carries a ladder, with their assertions as they are for a plain channel.

/// Three VWAP size bands in pips: what a test config puts in place of a channel's `markup = …`.
pub const TIERS: &str = r#"pricing = "vwap"
tiers = [
  { up_to = "1000000", markup = { unit = "pips", bid = "0.1", ask = "0.1" } },
  { up_to = "3000000", markup = { unit = "pips", bid = "0.2", ask = "0.2" } },
  { up_to = "6000000", markup = { unit = "pips", bid = "0.4", ask = "0.4" } },
]
"#;

/// `,"bids":[…],"asks":[…]` for a top of book of `1.<bid>` / `1.<ask>` (five decimals): three
/// levels a side of 1M, 2M and 2M, two ticks apart, so the last band is one million too large
/// to fill (not quoted).
pub fn depth(bid: usize, ask: usize) -> String {
    let level = |units: usize, size: u32| format!(r#"["1.{units:05}","{size}000000"]"#);
    format!(
        r#","bids":[{},{},{}],"asks":[{},{},{}]"#,
        level(bid, 1),
        level(bid - 2, 2),
        level(bid - 4, 2),
        level(ask, 1),
        level(ask + 2, 2),
        level(ask + 4, 2),
    )
}
