//! `pricefeed reconcile`'s comparison, on hand-made partitions: each kind of finding is found,
//! named with its raw offsets, and a faithful output is clean.

use std::sync::Arc;

use pricefeed::config::Rules;
use pricefeed::reconcile::check::{
    Output, OutputKind, OutputRecord, RawRecord, Versions, check_partition,
};
use pricefeed::reconcile::report::OutputReport;
use pricefeed::transform::process::{ChannelOutput, Processor, RecordMeta};

const KAFKA: &str = r#"
[kafka]
raw_topic = "r.raw"
channel_topic_prefix = "r."
dead_letter_topic = "r.dlq"
partitions = 2
replication_factor = 1

[instruments.EURUSD]
tick = "0.00001"
pip = "0.0001"
precision = 5

[instruments.GBPUSD]
tick = "0.00001"
pip = "0.0001"
precision = 5
"#;

const EUR: &str = r#"
[channels.eur]
symbols = ["EURUSD"]
markup = { unit = "pips", bid = "1", ask = "1", min_spread = "2" }
"#;

const ALL: &str = r#"
[channels.all]
stale_after_ms = 1000
stale_policy = "withhold"
markup = { unit = "pips", bid = "0.5", ask = "0.5", min_spread = "1" }
"#;

fn rules(channels: &str) -> Arc<Rules> {
    Arc::new(Rules::parse(&format!("{KAFKA}{channels}"), "t").unwrap())
}

/// Raw records: offsets 0..n, EURUSD on even offsets, GBPUSD on odd, offset 5 malformed.
fn raw(n: i64) -> Vec<RawRecord> {
    (0..n)
        .map(|o| {
            let symbol = if o % 2 == 0 { "EURUSD" } else { "GBPUSD" };
            let value = if o == 5 {
                "{not json".to_string()
            } else {
                format!(
                    r#"{{"symbol":"{symbol}","bid":"1.1{o:03}","ask":"1.1{:03}","ts":{}}}"#,
                    o + 5,
                    1000 + o
                )
            };
            RawRecord {
                offset: o,
                key: Some(symbol.as_bytes().to_vec()),
                value: value.into_bytes(),
                timestamp_ms: Some(1000 + o),
            }
        })
        .collect()
}

/// What a worker with `rules` writes for `raw`, priced right after each record arrived.
fn outputs(rules: &Rules, raw: &[RawRecord]) -> Vec<Output> {
    let mut out: Vec<Output> = rules
        .channels
        .iter()
        .map(|c| Output {
            topic: c.topic.clone(),
            kind: OutputKind::Channel,
            records: Vec::new(),
        })
        .collect();
    out.push(Output {
        topic: "r.dlq".into(),
        kind: OutputKind::DeadLetter,
        records: Vec::new(),
    });
    let mut p = Processor::new();
    for r in raw {
        let now = r.timestamp_ms.unwrap() + 5;
        let meta = RecordMeta {
            key: r.key.as_deref(),
            timestamp_ms: r.timestamp_ms,
        };
        let mut emitted = Vec::new();
        let result = p.process(rules, None, meta, &r.value, now, |ci, o| {
            if let ChannelOutput::Publish { value, key, .. } = o {
                emitted.push((ci, key.to_vec(), value.to_vec()));
            }
        });
        let record = |key, value| OutputRecord {
            raw_offset: Some(r.offset),
            version: Some(rules.version.clone()),
            raw_partition: Some(0),
            key: Some(key),
            value,
            timestamp_ms: Some(now),
        };
        match result {
            Ok(_) => {
                for (ci, key, value) in emitted {
                    out[ci].records.push(record(key, value));
                }
            }
            Err(_) => {
                let dlq = out.len() - 1;
                out[dlq]
                    .records
                    .push(record(r.key.clone().unwrap(), r.value.clone()));
            }
        }
    }
    out
}

fn check(
    rules: &Arc<Rules>,
    older: Vec<Arc<Rules>>,
    raw: &[RawRecord],
    outs: &[Output],
) -> Vec<OutputReport> {
    let versions = Versions::new(rules.clone(), older);
    check_partition(
        0,
        (0, raw.len() as i64),
        raw,
        outs,
        &versions,
        None,
        1_000_000,
    )
    .outputs
}

fn at<'a, T>(items: &'a mut [T], topic: &str, name: impl Fn(&T) -> &str) -> &'a mut T {
    items.iter_mut().find(|i| name(i) == topic).unwrap()
}

fn out<'a>(outs: &'a mut [Output], topic: &str) -> &'a mut Vec<OutputRecord> {
    &mut at(outs, topic, |o| &o.topic).records
}

fn rep<'a>(reports: &'a mut [OutputReport], topic: &str) -> &'a OutputReport {
    at(reports, topic, |o| &o.topic)
}

fn findings(reports: &[OutputReport]) -> usize {
    reports.iter().map(OutputReport::findings).sum()
}

#[test]
fn a_faithful_output_is_clean() {
    let rules = rules(&format!("{EUR}{ALL}"));
    let raw = raw(40);
    let mut reports = check(&rules, vec![], &raw, &outputs(&rules, &raw));
    assert_eq!(findings(&reports), 0, "{reports:?}");
    assert_eq!(rep(&mut reports, "r.eur").records, 20);
    assert_eq!(rep(&mut reports, "r.all").records, 39);
    assert_eq!(rep(&mut reports, "r.dlq").records, 1);
}

#[test]
fn missing_doubled_and_reordered_raw_offsets_are_named() {
    let rules = rules(&format!("{EUR}{ALL}"));
    let raw = raw(40);
    let mut outs = outputs(&rules, &raw);
    // "all": lose raw offsets 10..=12, write 20 twice, swap 30 and 31.
    let all = out(&mut outs, "r.all");
    all.retain(|r| !(10..=12).contains(&r.raw_offset.unwrap()));
    let twenty = all.iter().position(|r| r.raw_offset == Some(20)).unwrap();
    let copy = all[twenty].clone();
    all.insert(twenty + 1, copy);
    let thirty = all.iter().position(|r| r.raw_offset == Some(30)).unwrap();
    all.swap(thirty, thirty + 1);
    // The dead letter is lost.
    out(&mut outs, "r.dlq").clear();
    let mut reports = check(&rules, vec![], &raw, &outs);
    assert_eq!(rep(&mut reports, "r.eur").findings(), 0);
    let all = rep(&mut reports, "r.all");
    assert_eq!(all.missing, vec![10, 11, 12]);
    assert_eq!(all.doubled, vec![20]);
    assert_eq!(all.out_of_order, vec![30]);
    assert_eq!(rep(&mut reports, "r.dlq").missing, vec![5]);
}

#[test]
fn wrong_prices_partitions_and_records_that_do_not_belong_are_named() {
    let rules = rules(&format!("{EUR}{ALL}"));
    let raw = raw(20);
    let mut outs = outputs(&rules, &raw);
    // A price changed by one digit; a GBPUSD record where the raw record is EURUSD (another
    // partition's); a dead letter for a valid record; a record for a raw offset past the end.
    let eur = out(&mut outs, "r.eur");
    let text = String::from_utf8(eur[2].value.clone()).unwrap();
    eur[2].value = text
        .replacen("\"bid\":\"1.", "\"bid\":\"2.", 1)
        .into_bytes();
    let mut beyond = eur[0].clone();
    beyond.raw_offset = Some(19); // a GBPUSD offset: "eur" must not carry it
    eur.push(beyond);
    let all = out(&mut outs, "r.all");
    let mut foreign = all[1].clone(); // raw offset 1, GBPUSD
    foreign.raw_offset = Some(8); // EURUSD there
    all.insert(8, foreign);
    let dlq = out(&mut outs, "r.dlq");
    let mut dead = dlq[0].clone();
    dead.raw_offset = Some(7);
    dlq.push(dead);
    let mut reports = check(&rules, vec![], &raw, &outs);
    assert_eq!(rep(&mut reports, "r.eur").wrong_price, vec![4]);
    assert_eq!(rep(&mut reports, "r.eur").unexpected, vec![19]);
    assert_eq!(rep(&mut reports, "r.all").wrong_partition, vec![8]);
    assert_eq!(rep(&mut reports, "r.all").doubled, vec![8]);
    assert_eq!(rep(&mut reports, "r.dlq").unexpected, vec![7]);
}

#[test]
fn a_channel_added_by_a_reload_is_expected_only_from_where_its_version_applies() {
    let old = rules(EUR);
    let new = rules(&format!("{EUR}{ALL}"));
    let raw = raw(40);
    // Offsets 0..20 priced with the old rules, the rest with the new.
    let mut outs = outputs(&new, &raw);
    let mut before = outputs(&old, &raw[..20]);
    let eur_before = out(&mut before, "r.eur").clone();
    let eur = out(&mut outs, "r.eur");
    eur.retain(|r| r.raw_offset.unwrap() >= 20);
    eur.splice(0..0, eur_before);
    out(&mut outs, "r.all").retain(|r| r.raw_offset.unwrap() >= 20);
    *out(&mut outs, "r.dlq") = out(&mut before, "r.dlq").clone();
    let reports = check(&new, vec![old.clone()], &raw, &outs);
    assert_eq!(findings(&reports), 0, "{reports:?}");
    // Without the old version, what it priced cannot be checked, and nothing is invented.
    let mut reports = check(&new, vec![], &raw, &outs);
    assert_eq!(findings(&reports), 0, "{reports:?}");
    assert!(rep(&mut reports, "r.eur").unverified >= 10, "{reports:?}");
}

#[test]
fn a_price_absent_from_a_withholding_channel_counts_only_if_it_was_fresh_when_priced() {
    let rules = rules(ALL);
    let raw = raw(10);
    let mut outs = outputs(&rules, &raw);
    // Offset 3 absent; the next record was priced at 1008: 3's price (ts 1003) was fresh.
    out(&mut outs, "r.all").retain(|r| r.raw_offset != Some(3));
    let reports = check(&rules, vec![], &raw, &outs);
    assert_eq!(reports[0].missing, vec![3]);
    // Priced late (the next record 5 s later): withholding it was right.
    for r in out(&mut outs, "r.all") {
        if r.raw_offset == Some(4) {
            r.timestamp_ms = Some(6000);
        }
    }
    let reports = check(&rules, vec![], &raw, &outs);
    assert!(reports[0].missing.is_empty(), "{reports:?}");
    assert_eq!(reports[0].possibly_withheld, 1);
}

#[test]
fn a_ladder_band_that_differs_from_its_rules_is_a_wrong_price() {
    let tiered = r#"
[channels.eur]
symbols = ["EURUSD"]
pricing = "vwap"
tiers = [
  { up_to = "1000000", markup = { unit = "pips", bid = "0.5", ask = "0.5" } },
  { up_to = "2000000", markup = { unit = "pips", bid = "1", ask = "1" } },
]
"#;
    let rules = rules(tiered);
    let raw: Vec<RawRecord> = raw(12)
        .into_iter()
        .map(|mut r| {
            // EURUSD records get a book: the top, and a second level one pip worse.
            let text = String::from_utf8(r.value.clone()).unwrap();
            if r.offset % 2 == 0 {
                let field = |name: &str| {
                    let start = text.find(&format!("\"{name}\":\"")).unwrap() + name.len() + 4;
                    text[start..].split('"').next().unwrap().to_string()
                };
                let (bid, ask) = (field("bid"), field("ask"));
                let book = format!(
                    ",\"bids\":[[\"{bid}\",\"1000000\"]],\"asks\":[[\"{ask}\",\"1500000\"]]}}"
                );
                r.value = text.replacen('}', &book, 1).into_bytes();
            }
            r
        })
        .collect();
    let mut outs = outputs(&rules, &raw);
    let mut reports = check(&rules, vec![], &raw, &outs);
    assert_eq!(findings(&reports), 0, "{reports:?}");
    assert_eq!(rep(&mut reports, "r.eur").records, 6);
    // The second band's bid is null (the bids hold 1M); a record that quotes it anyway, with
    // the top-level bid and ask untouched, is named.
    let eur = out(&mut outs, "r.eur");
    let text = String::from_utf8(eur[3].value.clone()).unwrap();
    assert!(
        text.contains("\"up_to\":\"2000000\",\"bid\":null"),
        "{text}"
    );
    eur[3].value = text
        .replacen("\"bid\":null", "\"bid\":\"1.00000\"", 1)
        .into_bytes();
    reports = check(&rules, vec![], &raw, &outs);
    assert_eq!(rep(&mut reports, "r.eur").wrong_price, vec![6]);
    assert_eq!(findings(&reports), 1);
}
