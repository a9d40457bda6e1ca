//! The `[channels.<name>]` tables of a `channels.toml`: topic, instruments carried, markup
//! (absolute or in pips, per side, per instrument), stale policy and slow-client policy.

use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use toml::{Table, Value};

use super::edge::parse_slow_client;
use super::rules::{Channel, KafkaTopics, StalePolicy};
use super::walk::{Walker, join, valid_topic_name};
use crate::pricing::decimal::MAX_PRICE;
use crate::pricing::{Instrument, Markup, Unit};

/// The instruments channels may refer to.
pub(super) struct Known<'a> {
    pub instruments: &'a [Instrument],
    pub index: &'a FxHashMap<String, usize>,
    pub declared: &'a [&'a str],
}

impl Known<'_> {
    /// The instrument index, or an error message for a symbol never declared. `Ok(None)` for
    /// a declared instrument that was invalid (already reported).
    fn lookup(&self, symbol: &str) -> Result<Option<usize>, String> {
        match self.index.get(symbol) {
            Some(&i) => Ok(Some(i)),
            None if self.declared.contains(&symbol) => Ok(None),
            None => Err(format!(
                "unknown instrument {symbol:?} (not in [instruments])"
            )),
        }
    }
}

pub(super) fn parse_channels(
    w: &mut Walker,
    value: &Value,
    known: &Known<'_>,
    kafka: Option<&KafkaTopics>,
) -> Vec<Channel> {
    let Some(table) = w.table("channels", value) else {
        return Vec::new();
    };
    if table.is_empty() {
        w.error("channels", "at least one channel is needed");
    }
    let mut out = Vec::new();
    for (name, v) in table {
        let path = join("channels", name);
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            w.error(
                &path,
                "a channel name is 1 to 64 letters, digits, '_' or '-' (it names a topic)",
            );
            continue;
        }
        let Some(t) = w.table(&path, v) else { continue };
        if let Some(c) = parse_channel(w, &path, name, t, known, kafka) {
            out.push(c);
        }
    }
    out
}

fn parse_channel(
    w: &mut Walker,
    path: &str,
    name: &str,
    t: &Table,
    known: &Known<'_>,
    kafka: Option<&KafkaTopics>,
) -> Option<Channel> {
    let instruments = known.instruments;
    let before = w.errors.len();
    w.only_keys(
        path,
        t,
        &[
            "symbols",
            "markup",
            "overrides",
            "stale_after_ms",
            "stale_policy",
            "allow_negative",
            "slow_client",
        ],
    );
    let slow_client = parse_slow_client(w, &join(path, "slow_client"), t.get("slow_client"));
    let allow_negative = t
        .get("allow_negative")
        .and_then(|v| w.boolean(&join(path, "allow_negative"), v))
        .unwrap_or(false);

    // Which instruments the channel carries: all by default.
    let mut carried = vec![false; instruments.len()];
    match t.get("symbols") {
        None => carried.iter_mut().for_each(|c| *c = true),
        Some(v) => {
            let spath = join(path, "symbols");
            if let Some(list) = w.string_list(&spath, v) {
                if list.is_empty() {
                    w.error(&spath, "empty: a channel must carry at least one symbol");
                }
                for (i, s) in list.iter().enumerate() {
                    match known.lookup(s) {
                        Ok(Some(idx)) if carried[idx] => {
                            w.error(format!("{spath}[{i}]"), format!("{s} is listed twice"))
                        }
                        Ok(Some(idx)) => carried[idx] = true,
                        Ok(None) => {}
                        Err(message) => w.error(format!("{spath}[{i}]"), message),
                    }
                }
            }
        }
    }

    let markup = match t.get("markup") {
        Some(v) => parse_markup(w, &join(path, "markup"), v, allow_negative),
        None => {
            w.error(
                join(path, "markup"),
                "missing, e.g. markup = { unit = \"pips\", bid = \"0.5\", ask = \"0.5\" }",
            );
            None
        }
    };
    let mut rules: Vec<_> = instruments
        .iter()
        .zip(&carried)
        .map(|(ins, &c)| c.then(|| markup.as_ref().map(|m| m.resolve(ins))).flatten())
        .collect();

    if let Some(v) = t.get("overrides") {
        let opath = join(path, "overrides");
        if let Some(ot) = w.table(&opath, v) {
            for (symbol, ov) in ot {
                let sp = join(&opath, symbol);
                let idx = match known.lookup(symbol) {
                    Ok(Some(idx)) => idx,
                    Ok(None) => continue,
                    Err(message) => {
                        w.error(sp, message);
                        continue;
                    }
                };
                if !carried[idx] {
                    w.error(
                        sp,
                        format!("{symbol} is not carried by this channel (see its symbols)"),
                    );
                    continue;
                }
                if let Some(m) = parse_markup(w, &sp, ov, allow_negative) {
                    rules[idx] = Some(m.resolve(&instruments[idx]));
                }
            }
        }
    }

    let stale_after_ms = t.get("stale_after_ms").and_then(|v| {
        w.integer(&join(path, "stale_after_ms"), v, 1, 86_400_000)
            .map(|n| n as u64)
    });
    let stale_policy = match t.get("stale_policy") {
        None => StalePolicy::Flag,
        Some(v) => {
            let sp = join(path, "stale_policy");
            match w.string(&sp, v) {
                Some("flag") => StalePolicy::Flag,
                Some("withhold") => StalePolicy::Withhold,
                Some(other) => {
                    w.error(sp, format!("{other:?} is not one of: flag, withhold"));
                    StalePolicy::Flag
                }
                None => StalePolicy::Flag,
            }
        }
    };
    if t.contains_key("stale_policy")
        && stale_after_ms.is_none()
        && !t.contains_key("stale_after_ms")
    {
        w.error(
            join(path, "stale_policy"),
            "has no effect without stale_after_ms",
        );
    }

    let topic = kafka.map(|k| format!("{}{name}", k.channel_topic_prefix));
    if let (Some(k), Some(topic)) = (kafka, &topic) {
        if topic == &k.raw_topic || topic == &k.dead_letter_topic {
            w.error(
                path,
                format!("its topic {topic} collides with the raw or dead-letter topic"),
            );
        } else if !valid_topic_name(topic) {
            w.error(
                path,
                format!("its topic {topic:?} is not a valid Kafka topic name"),
            );
        } else {
            let latest = crate::kafka::latest_topic(topic);
            if latest == k.raw_topic || latest == k.dead_letter_topic {
                w.error(
                    path,
                    format!(
                        "its latest-price topic {latest} collides with the raw or dead-letter topic"
                    ),
                );
            } else if !valid_topic_name(&latest) {
                w.error(
                    path,
                    format!("its latest-price topic {latest:?} is not a valid Kafka topic name (too long?)"),
                );
            }
        }
    }

    (w.errors.len() == before && markup.is_some()).then(|| Channel {
        name: name.to_string(),
        topic: topic.unwrap_or_default(),
        stale_after_ms,
        stale_policy,
        slow_client,
        rules,
    })
}

/// `{ unit = "pips", bid = "0.5", ask = "0.7", min_spread = "1.0" }`
fn parse_markup(w: &mut Walker, path: &str, value: &Value, allow_negative: bool) -> Option<Markup> {
    let t = w.table(path, value)?;
    let before = w.errors.len();
    w.only_keys(path, t, &["unit", "bid", "ask", "min_spread"]);
    let unit = match t.get("unit") {
        None => {
            w.error(
                join(path, "unit"),
                format!("missing: one of {}", Unit::NAMES.join(", ")),
            );
            None
        }
        Some(v) => w.string(&join(path, "unit"), v).and_then(|s| {
            let u = Unit::parse(s);
            if u.is_none() {
                w.error(
                    join(path, "unit"),
                    format!("{s:?} is not one of: {}", Unit::NAMES.join(", ")),
                );
            }
            u
        }),
    };
    // Upper bounds catch typos that would quote a zero bid for every price.
    let limit = match unit {
        Some(Unit::Bps) => Decimal::from(10_000),
        Some(Unit::Percent) => Decimal::ONE_HUNDRED,
        _ => MAX_PRICE,
    };
    let mut amount = |key: &str, negative_ok: bool| -> Decimal {
        let p = join(path, key);
        let Some(d) = t.get(key).and_then(|v| w.decimal(&p, v)) else {
            if !t.contains_key(key) && key != "min_spread" {
                w.error(&p, "missing");
            }
            return Decimal::ZERO;
        };
        if d.is_sign_negative() && !d.is_zero() && !negative_ok {
            let hint = if key == "min_spread" {
                String::new()
            } else {
                " (set allow_negative = true on the channel to allow quoting inside the source)"
                    .to_string()
            };
            w.error(&p, format!("negative amount {d}{hint}"));
        } else if d.abs() >= limit {
            w.error(&p, format!("{d} is out of range (must be below {limit})"));
        }
        d
    };
    let bid = amount("bid", allow_negative);
    let ask = amount("ask", allow_negative);
    let min_spread = amount("min_spread", false);
    (w.errors.len() == before).then(|| Markup {
        unit: unit.expect("checked above"),
        bid,
        ask,
        min_spread,
    })
}
