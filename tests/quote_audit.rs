//! Quote audit against Apache Kafka: prices go through a transform whose rules are reloaded
//! half-way; `pricefeed audit` (CLI) and `GET /audit` (API key) are asked about a time before,
//! during and after the reload, and every answer is what the test knows from the records: the
//! channel's quotes of the symbol in the window (and only those, read through the time index,
//! not the topic), the raw record each came from, the rules version in its header with that
//! version's markup, the quote repriced from the raw record, and the quote in force at the time.
//! On a size-tiered channel the answer lists the bands, and a quote whose ladder differs from
//! what its rules make of the raw record is not reproduced.

mod common;

use std::process::Command;
use std::time::Duration;

use common::tiers::{TIERS, depth};
use common::*;
use pricefeed::config::Rules;
use rdkafka::config::FromClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

const API_KEY: &str = "audit-backend:k3y-0123456789abcdef";

fn config(prefix: &str, pips: &str) -> String {
    format!(
        "{}\n{}[channels.vip]\nmarkup = {{ unit = \"pips\", bid = \"{pips}\", ask = \"{pips}\" }}\n",
        kafka_table(prefix, 2),
        instruments(&["EURUSD", "GBPUSD"])
    )
}

fn price(i: usize) -> String {
    format!(
        r#"{{"symbol":"EURUSD","bid":"1.{:05}","ask":"1.{:05}"}}"#,
        10_000 + i,
        10_012 + i
    )
}

fn audit_cli(broker: &Broker, config: &std::path::Path, at: i64, window_ms: i64) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_pricefeed"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--brokers",
            &broker.addr,
        ])
        .args(["audit", "--channel", "vip", "--symbol", "EURUSD", "--json"])
        .args([
            "--at",
            &at.to_string(),
            "--window",
            &format!("{window_ms}ms"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Checks one answer against the records: `vip` (the channel), `raw` (the feed), the markup (in
/// price units) each rules version applies.
fn check(
    answer: &Value,
    at: i64,
    window: i64,
    vip: &[Rec],
    raw: &[Rec],
    markups: &[(String, &str)],
) {
    let expected: Vec<&Rec> = {
        let mut e: Vec<&Rec> = vip
            .iter()
            .filter(|r| r.key.as_deref() == Some("EURUSD"))
            .filter(|r| (at - window..=at + window).contains(&r.timestamp))
            .collect();
        e.sort_by_key(|r| (r.timestamp, r.partition, r.offset));
        e
    };
    let quotes = answer["quotes"].as_array().unwrap();
    let got: Vec<i64> = quotes
        .iter()
        .map(|q| q["offset"].as_i64().unwrap())
        .collect();
    let want: Vec<i64> = expected.iter().map(|r| r.offset).collect();
    assert_eq!(got, want, "the quotes at {at} ± {window}: {answer:#}");
    assert!(!want.is_empty());
    for (q, r) in quotes.iter().zip(&expected) {
        let v = r.json();
        assert_eq!(q["bid"], v["bid"]);
        assert_eq!(q["ask"], v["ask"]);
        assert_eq!(q["publishedAt"], r.timestamp);
        let raw_offset: i64 = r.header("pricefeed-raw-offset").parse().unwrap();
        let source = raw
            .iter()
            .find(|x| x.partition == r.partition && x.offset == raw_offset)
            .unwrap();
        assert_eq!(q["raw"]["offset"], raw_offset);
        assert_eq!(
            q["raw"]["value"],
            source.value.as_str(),
            "the raw record byte for byte"
        );
        let version = r.header("pricefeed-rules-version");
        assert_eq!(q["rules"]["version"], version);
        let (_, markup) = markups.iter().find(|(v, _)| v == version).unwrap();
        assert_eq!(q["rules"]["markup"]["bid"], *markup, "{q}");
        assert_eq!(q["rules"]["markup"]["ask"], *markup);
        assert_eq!(q["rules"]["reproduced"], true, "{q}");
        assert!(
            q["rules"]["loadedBy"]
                .as_str()
                .unwrap()
                .starts_with("transform@")
        );
    }
    let in_force = expected.iter().rposition(|r| r.timestamp <= at);
    assert_eq!(answer["inForce"].as_u64().map(|i| i as usize), in_force);
}

#[test]
fn audit_answers_match_the_records_before_during_and_after_a_rules_reload() {
    let broker = Broker::start();
    let prefix = unique_prefix("audit");
    let (v1, v2) = (config(&prefix, "0.1"), config(&prefix, "0.5"));
    let versions = [
        (Rules::parse(&v1, "t").unwrap().version, "0.00001"),
        (Rules::parse(&v2, "t").unwrap().version, "0.00005"),
    ];
    let markups: Vec<(String, &str)> = versions.iter().map(|(v, m)| (v.clone(), *m)).collect();
    let (dir, path) = write_config(&v1);
    let (raw_topic, vip_topic) = (format!("{prefix}.raw"), format!("{prefix}.vip"));
    create_topic(&broker, &raw_topic, 2);
    let node = spawn_pricefeed_env(
        &broker,
        &path,
        &["run"],
        dir.path(),
        &[("PRICEFEED_API_KEYS", API_KEY)],
    );
    wait_ready(&node, Duration::from_secs(60));

    // Earlier traffic the audit must not read: 1,000 prices of another symbol.
    let filler: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                r#"{{"symbol":"GBPUSD","bid":"1.{:05}","ask":"1.{:05}"}}"#,
                20_000 + i,
                20_010 + i
            )
        })
        .collect();
    let batch: Vec<(i32, Option<&str>, &str)> = filler
        .iter()
        .map(|v| (1, Some("GBPUSD"), v.as_str()))
        .collect();
    produce(&broker, &raw_topic, &batch);
    std::thread::sleep(Duration::from_millis(1500));

    // Three prices under the first rules, then the reload, then three under the second.
    let mut n = 0;
    let mut phase = |broker: &Broker| {
        for _ in 0..3 {
            produce(broker, &raw_topic, &[(0, Some("EURUSD"), &price(n))]);
            n += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    phase(&broker);
    std::thread::sleep(Duration::from_millis(1000));
    replace_file(&path, &v2);
    wait_for(
        Duration::from_secs(30),
        "the second version in the rules topic",
        || {
            let rules = read_all(&broker, &format!("{prefix}.rules"), 1);
            rules
                .iter()
                .any(|r| r.key.as_deref() == Some(versions[1].0.as_str()))
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    phase(&broker);

    let vip = wait_for(Duration::from_secs(60), "every price on vip", || {
        let r = read_all(&broker, &vip_topic, 2);
        (r.len() == 1006).then_some(r)
    });
    let raw = read_all(&broker, &raw_topic, 2);
    let eur: Vec<&Rec> = vip
        .iter()
        .filter(|r| r.key.as_deref() == Some("EURUSD"))
        .collect();
    let version = |r: &Rec| r.header("pricefeed-rules-version").to_string();
    assert_eq!(
        eur.iter().map(|r| version(r)).collect::<Vec<_>>(),
        [0, 0, 0, 1, 1, 1].map(|i| versions[i].0.clone()),
        "three prices per version"
    );

    let before = (eur[1].timestamp, 250);
    let during = (
        (eur[2].timestamp + eur[3].timestamp) / 2,
        (eur[3].timestamp - eur[2].timestamp) / 2 + 1,
    );
    let after = (eur[4].timestamp, 250);
    for (label, (at, window)) in [("before", before), ("during", during), ("after", after)] {
        let answer = audit_cli(&broker, &path, at, window);
        check(&answer, at, window, &vip, &raw, &markups);
        assert!(
            answer["recordsRead"].as_u64().unwrap() < 100,
            "{label}: the window only, through the time index: {}",
            answer["recordsRead"]
        );
        // The same over HTTP, for backends with an API key.
        let (status, body) = http_get_with(
            node.http_port,
            &format!("/audit?channel=vip&symbol=EURUSD&at={at}&window={window}ms"),
            &[("X-Api-Key", "k3y-0123456789abcdef")],
        );
        assert_eq!(status, 200, "{body}");
        let over_http: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(over_http["quotes"], answer["quotes"], "{label}");
    }
    // During the reload the window holds both versions; the one in force is the first's.
    let answer = audit_cli(&broker, &path, during.0, during.1);
    let vs: Vec<&str> = answer["quotes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["rules"]["version"].as_str().unwrap())
        .collect();
    assert_eq!(vs, [versions[0].0.as_str(), versions[1].0.as_str()]);
    assert_eq!(answer["inForce"], 0);

    let (status, body) =
        http_get_with(node.http_port, "/audit?channel=vip&symbol=EURUSD&at=1", &[]);
    assert_eq!(status, 401, "{body}");
    let (status, body) = http_get_with(
        node.http_port,
        "/audit?channel=vip&symbol=EURUSD&at=noon",
        &[("X-Api-Key", "k3y-0123456789abcdef")],
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a time"), "{body}");
    let (status, _) = http_get_with(
        node.http_port,
        "/audit?channel=gold&symbol=EURUSD&at=1",
        &[("X-Api-Key", "k3y-0123456789abcdef")],
    );
    assert_eq!(status, 404);
}

#[test]
fn a_tiered_quote_is_audited_with_its_bands_and_a_changed_band_is_not_reproduced() {
    let broker = Broker::start();
    let prefix = unique_prefix("audit-tiers");
    let text = format!(
        "{}\n{}[channels.vip]\n{TIERS}",
        kafka_table(&prefix, 1),
        instruments(&["EURUSD"])
    );
    let (dir, path) = write_config(&text);
    let (raw_topic, vip_topic) = (format!("{prefix}.raw"), format!("{prefix}.vip"));
    create_topic(&broker, &raw_topic, 1);
    let worker = spawn_pricefeed(&broker, &path, &["transform"], dir.path());
    wait_ready(&worker, Duration::from_secs(60));
    let prices: Vec<String> = (0..3)
        .map(|i| {
            let (bid, ask) = (10_000 + i, 10_012 + i);
            format!(
                r#"{{"symbol":"EURUSD","bid":"1.{bid:05}","ask":"1.{ask:05}"{}}}"#,
                depth(bid, ask)
            )
        })
        .collect();
    let batch: Vec<(i32, Option<&str>, &str)> = prices
        .iter()
        .map(|v| (0, Some("EURUSD"), v.as_str()))
        .collect();
    produce(&broker, &raw_topic, &batch);
    let vip = wait_for(Duration::from_secs(60), "three quotes on vip", || {
        let r = read_all(&broker, &vip_topic, 1);
        (r.len() == 3).then_some(r)
    });

    // A record as the worker would write it for the last raw price, headers and all, but with
    // the 6M band's bid quoted where the bids cannot fill it.
    let last = &vip[2];
    assert!(
        last.value.contains(r#""up_to":"6000000","bid":null"#),
        "{}",
        last.value
    );
    let forged = last.value.replace(
        r#""up_to":"6000000","bid":null"#,
        r#""up_to":"6000000","bid":"1.00000""#,
    );
    let producer: BaseProducer =
        BaseProducer::from_config(&settings(&broker).producer_config()).unwrap();
    let headers = ["pricefeed-raw-offset", "pricefeed-rules-version"]
        .into_iter()
        .fold(OwnedHeaders::new(), |h, key| {
            h.insert(Header {
                key,
                value: Some(last.header(key)),
            })
        });
    let record = BaseRecord::to(&vip_topic)
        .partition(0)
        .key("EURUSD")
        .payload(&forged)
        .headers(headers);
    producer.send(record).map_err(|(e, _)| e).unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();

    let answer = audit_cli(&broker, &path, last.timestamp, 60_000);
    let quotes = answer["quotes"].as_array().unwrap();
    assert_eq!(quotes.len(), 4, "{answer}");
    for q in quotes {
        let bands = q["rules"]["bands"]
            .as_array()
            .expect("the bands of a tiered symbol");
        let sizes: Vec<&str> = bands.iter().map(|b| b["upTo"].as_str().unwrap()).collect();
        assert_eq!(sizes, ["1000000", "3000000", "6000000"]);
        // The top-level quote is the first band's markup: 0.1 pip.
        assert_eq!(q["rules"]["markup"]["bid"], "0.00001");
        assert_eq!(q["value"]["ladder"]["bands"].as_array().unwrap().len(), 3);
    }
    let reproduced: Vec<bool> = quotes
        .iter()
        .map(|q| q["rules"]["reproduced"].as_bool().unwrap())
        .collect();
    assert_eq!(reproduced, [true, true, true, false], "{answer}");
}
