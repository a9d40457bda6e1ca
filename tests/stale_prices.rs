//! Stale prices: older than a channel's stale_after_ms, a price is flagged or withheld per the
//! channel's policy; the age comes from the source ts, else from the Kafka record timestamp.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::service::{Role, Service};
use common::*;
use rdkafka::config::FromClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn config(prefix: &str) -> String {
    format!(
        r#"{kafka}{instruments}
[channels.flagged]
markup = {{ unit = "pips", bid = "0.5", ask = "0.5" }}
stale_after_ms = 5000
stale_policy = "flag"

[channels.held]
markup = {{ unit = "pips", bid = "0.5", ask = "0.5" }}
stale_after_ms = 5000
stale_policy = "withhold"

[channels.never]
markup = {{ unit = "pips", bid = "0.5", ask = "0.5" }}
"#,
        kafka = kafka_table(prefix, 1),
        instruments = instruments(&["EURUSD"]),
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn old_prices_are_flagged_or_withheld_per_channel_policy() {
    let broker = Broker::start();
    let prefix = unique_prefix("stale");
    let (_dir, path) = write_config(&config(&prefix));
    let raw = format!("{prefix}.raw");
    create_topic(&broker, &raw, 1);
    let worker = Service::start(&broker, &path, Role::Transform);

    let now = now_ms();
    let old = now - 60_000;
    let values = [
        // 0: old source ts
        (
            format!(r#"{{"symbol":"EURUSD","bid":"1.1","ask":"1.1001","ts":{old}}}"#),
            now,
        ),
        // 1: fresh source ts
        (
            format!(r#"{{"symbol":"EURUSD","bid":"1.1","ask":"1.1001","ts":{now}}}"#),
            now,
        ),
        // 2: no ts, fresh Kafka timestamp
        (
            r#"{"symbol":"EURUSD","bid":"1.1","ask":"1.1001"}"#.to_string(),
            now,
        ),
        // 3: no ts, old Kafka timestamp
        (
            r#"{"symbol":"EURUSD","bid":"1.1","ask":"1.1001"}"#.to_string(),
            old,
        ),
    ];
    let producer: BaseProducer =
        BaseProducer::from_config(&settings(&broker).producer_config()).unwrap();
    for (value, timestamp) in &values {
        producer
            .send(
                BaseRecord::<str, str>::to(&raw)
                    .partition(0)
                    .key("EURUSD")
                    .payload(value)
                    .timestamp(*timestamp),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let read = |channel: &str, n: usize| {
        wait_for(Duration::from_secs(60), channel, || {
            let r = read_all(&broker, &format!("{prefix}.{channel}"), 1);
            (r.len() >= n).then_some(r)
        })
    };
    let flagged = read("flagged", 4);
    let never = read("never", 4);
    let held = read("held", 2);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(read_all(&broker, &format!("{prefix}.held"), 1).len(), 2);

    let stale = |r: &[Rec]| -> Vec<(String, bool)> {
        r.iter()
            .map(|r| {
                (
                    r.header("pricefeed-raw-offset").to_string(),
                    r.json()["stale"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    let s = |o: &str, b| (o.to_string(), b);
    assert_eq!(
        stale(&flagged),
        vec![s("0", true), s("1", false), s("2", false), s("3", true)]
    );
    assert_eq!(stale(&held), vec![s("1", false), s("2", false)]);
    assert_eq!(
        stale(&never),
        vec![s("0", false), s("1", false), s("2", false), s("3", false)]
    );
    // The record keeps the source time it was judged by.
    assert_eq!(flagged[0].json()["ts"], old);
    assert_eq!(flagged[3].json()["ts"], old);

    assert_eq!(
        worker.metric(r#"pricefeed_withheld_total{channel="held",reason="stale"}"#),
        Some(2.0)
    );
    assert_eq!(
        worker.metric(r#"pricefeed_stale_records_total{channel="flagged"}"#),
        Some(2.0)
    );
}
