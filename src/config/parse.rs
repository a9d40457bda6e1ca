//! `channels.toml` text → [`Rules`], with every validation error collected.

use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};
use toml::{Table, Value};

use std::path::Path;

use super::channels::{Known, parse_channels};
use super::edge::{parse_auth, parse_edge};
use super::errors::{ConfigError, ConfigErrors};
use super::rules::{Delivery, KafkaTopics, Rules};
use super::walk::{Walker, join, valid_topic_name};
use crate::pricing::decimal::MAX_PRICE;
use crate::pricing::{Instrument, Tick};

const MAX_PRECISION: i64 = 12;

pub(super) fn parse(text: &str) -> Result<Rules, Vec<ConfigError>> {
    let root: Table = match text.parse::<Table>() {
        Ok(t) => t,
        Err(e) => {
            return Err(vec![ConfigError {
                path: String::new(),
                message: format!("not valid TOML: {}", e.to_string().trim_end()),
            }]);
        }
    };
    let mut w = Walker::default();
    w.only_keys(
        "",
        &root,
        &["kafka", "auth", "edge", "instruments", "channels"],
    );

    let kafka = parse_kafka(&mut w, root.get("kafka"));
    let auth = parse_auth(&mut w, root.get("auth"));
    let edge = parse_edge(&mut w, root.get("edge"));
    let instruments = match root.get("instruments") {
        Some(v) => parse_instruments(&mut w, v),
        None => {
            w.error("instruments", "missing: at least one instrument is needed");
            Vec::new()
        }
    };
    let symbol_index: FxHashMap<String, usize> = instruments
        .iter()
        .enumerate()
        .map(|(i, ins)| (ins.symbol.clone(), i))
        .collect();
    // Instruments that are declared but invalid were reported already; references to them are
    // not reported again as unknown.
    let declared: Vec<&str> = match root.get("instruments") {
        Some(Value::Table(t)) => t.keys().map(String::as_str).collect(),
        _ => Vec::new(),
    };
    let known = Known {
        instruments: &instruments,
        index: &symbol_index,
        declared: &declared,
    };
    let channels = match root.get("channels") {
        Some(v) => parse_channels(&mut w, v, &known, kafka.as_ref()),
        None => {
            w.error("channels", "missing: at least one channel is needed");
            Vec::new()
        }
    };

    match kafka {
        Some(kafka) if w.errors.is_empty() => Ok(Rules {
            version: content_version(text),
            text: text.into(),
            kafka,
            auth,
            edge,
            instruments,
            channels,
            symbol_index,
        }),
        _ => Err(w.errors),
    }
}

fn content_version(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_kafka(w: &mut Walker, value: Option<&Value>) -> Option<KafkaTopics> {
    let mut k = KafkaTopics {
        raw_topic: "prices.raw".into(),
        channel_topic_prefix: "prices.".into(),
        dead_letter_topic: "prices.dead-letter".into(),
        rules_topic: "pricefeed.rules".into(),
        partitions: 3,
        replication_factor: 1,
        delivery: Delivery::Idempotent,
    };
    let Some(value) = value else { return Some(k) };
    let table = w.table("kafka", value)?;
    w.only_keys(
        "kafka",
        table,
        &[
            "raw_topic",
            "channel_topic_prefix",
            "dead_letter_topic",
            "rules_topic",
            "partitions",
            "replication_factor",
            "delivery",
        ],
    );
    let before = w.errors.len();
    for (key, slot) in [
        ("raw_topic", &mut k.raw_topic),
        ("channel_topic_prefix", &mut k.channel_topic_prefix),
        ("dead_letter_topic", &mut k.dead_letter_topic),
        ("rules_topic", &mut k.rules_topic),
    ] {
        let path = join("kafka", key);
        if let Some(s) = table.get(key).and_then(|v| w.string(&path, v)) {
            let candidate = if key == "channel_topic_prefix" {
                format!("{s}x")
            } else {
                s.to_string()
            };
            if valid_topic_name(&candidate) {
                *slot = s.to_string();
            } else {
                w.error(
                    path,
                    format!(
                        "{s:?} is not a valid Kafka topic name (letters, digits, '.', '_', '-'; \
                         at most 249)"
                    ),
                );
            }
        }
    }
    if let Some(v) = table.get("partitions")
        && let Some(n) = w.integer("kafka.partitions", v, 1, 10_000)
    {
        k.partitions = n as i32;
    }
    if let Some(v) = table.get("replication_factor")
        && let Some(n) = w.integer("kafka.replication_factor", v, 1, 32_767)
    {
        k.replication_factor = n as i32;
    }
    if let Some(v) = table.get("delivery")
        && let Some(s) = w.string("kafka.delivery", v)
    {
        match s {
            "idempotent" => k.delivery = Delivery::Idempotent,
            "transactional" => k.delivery = Delivery::Transactional,
            other => w.error(
                "kafka.delivery",
                format!("{other:?} is not a delivery mode: \"idempotent\" or \"transactional\""),
            ),
        }
    }
    if k.raw_topic == k.dead_letter_topic {
        w.error(
            "kafka.dead_letter_topic",
            "must differ from kafka.raw_topic",
        );
    }
    (w.errors.len() == before).then_some(k)
}

fn valid_symbol(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b':'))
}

fn parse_instruments(w: &mut Walker, value: &Value) -> Vec<Instrument> {
    let Some(table) = w.table("instruments", value) else {
        return Vec::new();
    };
    if table.is_empty() {
        w.error("instruments", "at least one instrument is needed");
    }
    let mut out = Vec::new();
    for (symbol, v) in table {
        let path = join("instruments", symbol);
        if !valid_symbol(symbol) {
            w.error(
                &path,
                "a symbol is 1 to 32 letters, digits or . _ - / : (e.g. EURUSD, BTC-USD)",
            );
            continue;
        }
        let Some(t) = w.table(&path, v) else { continue };
        w.only_keys(&path, t, &["tick", "pip", "precision"]);
        let tick = positive_decimal(w, &path, t, "tick", true);
        let pip = positive_decimal(w, &path, t, "pip", true);
        let precision = match t.get("precision") {
            Some(v) => w.integer(&join(&path, "precision"), v, 0, MAX_PRECISION),
            None => {
                w.error(
                    join(&path, "precision"),
                    "missing: decimal places shown on the wire",
                );
                None
            }
        };
        let (Some(tick), Some(pip), Some(precision)) = (tick, pip, precision) else {
            continue;
        };
        let precision = precision as u32;
        if tick.scale() > precision {
            w.error(
                join(&path, "precision"),
                format!(
                    "{precision} decimal places cannot show the tick {tick} (needs at least {})",
                    tick.scale()
                ),
            );
            continue;
        }
        out.push(Instrument {
            symbol: symbol.clone(),
            tick: Tick::new(tick),
            pip,
            precision,
        });
    }
    out
}

fn positive_decimal(
    w: &mut Walker,
    parent: &str,
    t: &Table,
    key: &str,
    required: bool,
) -> Option<Decimal> {
    let path = join(parent, key);
    let Some(v) = t.get(key) else {
        if required {
            w.error(path, "missing");
        }
        return None;
    };
    w.positive_decimal(&path, v, MAX_PRICE)
}

impl Rules {
    /// Parses and validates the text of a `channels.toml`.
    pub fn parse(text: &str, source_name: &str) -> Result<Rules, ConfigErrors> {
        parse(text).map_err(|errors| ConfigErrors {
            source_name: source_name.to_string(),
            errors,
        })
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Rules, ConfigErrors> {
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Rules::parse(&text, &name),
            Err(e) => Err(ConfigErrors {
                source_name: name,
                errors: vec![ConfigError {
                    path: String::new(),
                    message: format!("cannot read the file: {e}"),
                }],
            }),
        }
    }
}
