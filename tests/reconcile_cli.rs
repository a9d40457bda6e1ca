//! `pricefeed reconcile` against Apache Kafka: clean after a worker priced a feed (with records
//! to dead-letter), then exit code 1 and the exact raw offsets once records are doubled or
//! altered behind the worker's back; ranges by offset and time; exit code 2 when it cannot
//! compare.

mod common;

use std::process::Command;
use std::time::Duration;

use common::reconcile::*;
use common::*;
use rdkafka::config::FromClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const CHANNELS: &str = r#"
[channels.all]
markup = { unit = "pips", bid = "0.2", ask = "0.3", min_spread = "0.5" }

[channels.eur]
symbols = ["EURUSD"]
markup = { unit = "pips", bid = "1", ask = "1", min_spread = "2" }
"#;

fn inject(broker: &Broker, topic: &str, partition: i32, rec: &Rec) {
    let producer: BaseProducer =
        BaseProducer::from_config(&settings(broker).producer_config()).unwrap();
    let mut headers = OwnedHeaders::new();
    for (k, v) in &rec.headers {
        headers = headers.insert(Header {
            key: k,
            value: Some(v.as_str()),
        });
    }
    let record = BaseRecord::to(topic)
        .partition(partition)
        .key(rec.key.as_deref().unwrap_or(""))
        .payload(&rec.value)
        .headers(headers);
    producer.send(record).map_err(|(e, _)| e).unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
}

#[test]
fn reconcile_is_clean_on_faithful_output_and_names_every_altered_record() {
    let broker = Broker::start();
    let prefix = unique_prefix("reconcile");
    let text = format!(
        "{}{}{CHANNELS}",
        kafka_table(&prefix, 2),
        instruments(&["EURUSD", "GBPUSD"])
    );
    let (dir, path) = write_config(&text);
    let mut feed = spawn_pricefeed(
        &broker,
        &path,
        &[
            "simulate",
            "--rate",
            "2000",
            "--count",
            "3000",
            "--malformed-ratio",
            "0.01",
            "--seed",
            "5",
        ],
        dir.path(),
    );
    assert!(feed.child.wait().unwrap().success(), "{}", feed.log_text());
    let worker = spawn_pricefeed(&broker, &path, &["transform"], dir.path());
    let report = assert_reconciled(&broker, &path, Duration::from_secs(60));
    drop(worker);
    let records = output_records(&report);
    assert!(records > 3000, "{records} output records compared");
    let dlq = topic_records(&report, &format!("{prefix}.dlq"));
    assert!(dlq > 0, "no dead letters were compared");

    // Alter the outputs behind the worker's back: the last record again with another price,
    // then the first record again.
    let all = format!("{prefix}.all");
    let written = read_all(&broker, &all, 2);
    let p = written[0].partition;
    let first = written[0].clone();
    let mut changed = written
        .iter()
        .rev()
        .find(|r| r.partition == p)
        .unwrap()
        .clone();
    changed.value = changed.value.replacen("\"ask\":\"1.", "\"ask\":\"9.", 1);
    inject(&broker, &all, p, &changed);
    inject(&broker, &all, p, &first);
    let (code, report) = reconcile(&broker, &path, &[]);
    assert_eq!(code, 1, "{report}");
    let first_raw = first.header("pricefeed-raw-offset");
    let changed_raw = changed.header("pricefeed-raw-offset");
    let both = pricefeed::reconcile::report::ranges(&[
        first_raw.parse().unwrap(),
        changed_raw.parse().unwrap(),
    ]);
    assert_eq!(
        findings(&report),
        vec![
            format!("partition {p} {all} doubled 2 ({both})"),
            format!("partition {p} {all} out_of_order 1 ({first_raw})"),
            format!("partition {p} {all} wrong_price 1 ({changed_raw})"),
        ],
        "{report:#}"
    );

    // A range between the altered raw offsets is clean; one that holds one of them is not.
    let first_raw: i64 = first_raw.parse().unwrap();
    let changed_raw: i64 = changed_raw.parse().unwrap();
    let (from, to) = ((first_raw + 1).to_string(), changed_raw.to_string());
    let range = ["--from-offset", from.as_str(), "--to-offset", to.as_str()];
    let (code, report) = reconcile(&broker, &path, &range);
    assert_eq!(code, 0, "{:?}", findings(&report));
    assert!(output_records(&report) > 100);
    let p = p.to_string();
    let (code, report) = reconcile(&broker, &path, &["--partitions", &p, "--from-offset", &to]);
    assert_eq!(code, 1);
    assert_eq!(findings(&report).len(), 2, "{report:#}");
    // A time range after everything compares nothing, and is clean.
    let (code, report) = reconcile(&broker, &path, &["--from-time", "2100-01-01T00:00:00Z"]);
    assert_eq!((code, output_records(&report)), (0, 0));

    // The text report names the findings too.
    let text = Command::new(env!("CARGO_BIN_EXE_pricefeed"))
        .arg("--config")
        .arg(&path)
        .args(["--brokers", &broker.addr, "reconcile"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains(&format!("{all}: "))
            && stdout.contains("wrong price 1")
            && stdout.contains("findings in"),
        "{stdout}"
    );

    // It cannot compare: exit code 2 and why.
    let missing = write_config(&format!(
        "{}{}{CHANNELS}",
        kafka_table(&format!("{prefix}-none"), 2),
        instruments(&["EURUSD", "GBPUSD"])
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_pricefeed"))
        .arg("--config")
        .arg(&missing.1)
        .args(["--brokers", &broker.addr, "reconcile"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
