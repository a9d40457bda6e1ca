//! The `[channels.<name>]` tables of a `channels.toml`: topic, instruments carried, markup
//! (absolute or in pips, per side, per instrument), stale policy and slow-client policy.

use rustc_hash::FxHashMap;
use toml::{Table, Value};

use super::edge::parse_slow_client;
use super::markup::parse_markup;
use super::rules::{Channel, KafkaTopics, StalePolicy};
use super::tiers::{TierSpec, parse_tiers};
use super::walk::{Walker, join, valid_topic_name};
use crate::pricing::{Instrument, LadderPricing, Markup};

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
            "tiers",
            "pricing",
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

    let (markup, tiers) = parse_default(w, path, t, allow_negative);
    let pricing = parse_pricing(w, path, t);
    let mut rules: Vec<_> = instruments
        .iter()
        .zip(&carried)
        .map(|(ins, &c)| {
            let m = markup.as_ref().or(tiers.as_ref().map(|(_, first)| first));
            c.then(|| m.map(|m| m.resolve(ins))).flatten()
        })
        .collect();
    let mut ladders: Vec<_> = instruments
        .iter()
        .zip(&carried)
        .map(|(ins, &c)| {
            let spec = tiers.as_ref().map(|(spec, _)| spec);
            c.then(|| spec.map(|s| s.resolve(ins, pricing))).flatten()
        })
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
                let ins = &instruments[idx];
                match ov.as_table().and_then(|o| o.get("tiers")) {
                    Some(tv) => {
                        w.only_keys(&sp, ov.as_table().expect("a table"), &["tiers"]);
                        if let Some(spec) = parse_tiers(w, &join(&sp, "tiers"), tv, allow_negative)
                        {
                            rules[idx] = Some(spec.first().resolve(ins));
                            ladders[idx] = Some(spec.resolve(ins, pricing));
                        }
                    }
                    None => {
                        if let Some(m) = parse_markup(w, &sp, ov, allow_negative) {
                            rules[idx] = Some(m.resolve(ins));
                            ladders[idx] = None;
                        }
                    }
                }
            }
        }
    }
    if t.contains_key("pricing") && ladders.iter().all(Option::is_none) {
        w.error(
            join(path, "pricing"),
            "has no effect without tiers (on the channel or in an override)",
        );
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

    let priced = markup.is_some() || tiers.is_some();
    (w.errors.len() == before && priced).then(|| Channel {
        name: name.to_string(),
        topic: topic.unwrap_or_default(),
        stale_after_ms,
        stale_policy,
        slow_client,
        rules,
        ladders,
    })
}

/// The channel's default pricing: a markup table, or size bands (with their first band's
/// markup, which prices the top-of-book quote). Exactly one of the two.
fn parse_default(
    w: &mut Walker,
    path: &str,
    t: &Table,
    allow_negative: bool,
) -> (Option<Markup>, Option<(TierSpec, Markup)>) {
    match (t.get("markup"), t.get("tiers")) {
        (Some(_), Some(_)) => {
            w.error(
                join(path, "tiers"),
                "a channel has markup or tiers, not both (a tiered channel's top-of-book quote \
                 uses its first band's markup)",
            );
            (None, None)
        }
        (Some(v), None) => (
            parse_markup(w, &join(path, "markup"), v, allow_negative),
            None,
        ),
        (None, Some(v)) => {
            let spec = parse_tiers(w, &join(path, "tiers"), v, allow_negative);
            (
                None,
                spec.map(|s| {
                    let first = s.first().clone();
                    (s, first)
                }),
            )
        }
        (None, None) => {
            w.error(
                join(path, "markup"),
                "missing, e.g. markup = { unit = \"pips\", bid = \"0.5\", ask = \"0.5\" } \
                 (or tiers = [...] for size bands)",
            );
            (None, None)
        }
    }
}

/// `pricing = "full_amount" | "vwap"`: how every ladder of the channel reads the book.
fn parse_pricing(w: &mut Walker, path: &str, t: &Table) -> LadderPricing {
    let Some(v) = t.get("pricing") else {
        return LadderPricing::default();
    };
    let pp = join(path, "pricing");
    match w.string(&pp, v).map(|s| (s, LadderPricing::parse(s))) {
        Some((_, Some(p))) => p,
        Some((s, None)) => {
            w.error(
                pp,
                format!("{s:?} is not one of: {}", LadderPricing::NAMES.join(", ")),
            );
            LadderPricing::default()
        }
        None => LadderPricing::default(),
    }
}
