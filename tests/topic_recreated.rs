//! Resume that cannot be fooled: a channel topic deleted and created again starts its offsets at
//! 0, so old seqNos name other records. Positions carry an epoch (the Kafka topic id): a client
//! connected while it happens gets `resume_gap` and a snapshot of the new topic, then its records
//! from the first; a client that comes back with positions of the old topic gets the same instead
//! of resuming into the new topic's records.

mod common;

use std::time::Duration;

use common::service::{Role, Service};
use common::ws::{Received, Ws, token};
use common::*;
use rdkafka::admin::AdminOptions;
use serde_json::{Value, json};

fn config(prefix: &str) -> String {
    format!(
        "{}\n{}[channels.vip]\nmarkup = {{ unit = \"pips\", bid = \"0.1\", ask = \"0.1\" }}\n",
        kafka_table(prefix, 1),
        instruments(&["EURUSD"])
    )
}

fn prices(broker: &Broker, raw: &str, from: usize, n: usize) {
    let values: Vec<String> = (from..from + n)
        .map(|i| {
            format!(
                r#"{{"symbol":"EURUSD","bid":"1.{:05}","ask":"1.{:05}"}}"#,
                10_000 + i,
                10_010 + i
            )
        })
        .collect();
    let records: Vec<(i32, Option<&str>, &str)> = values
        .iter()
        .map(|v| (0, Some("EURUSD"), v.as_str()))
        .collect();
    produce(broker, raw, &records);
}

#[test]
fn positions_of_a_deleted_and_recreated_topic_are_never_resumed_into_the_new_one() {
    let broker = Broker::start();
    let prefix = unique_prefix("recreated");
    let (_dir, path) = write_config(&config(&prefix));
    let raw = format!("{prefix}.raw");
    let vip = format!("{prefix}.vip");
    create_topic(&broker, &raw, 1);
    let transform = Service::start(&broker, &path, Role::Transform);
    let edge = Service::start(&broker, &path, Role::Edge);
    prices(&broker, &raw, 0, 10);
    wait_for(Duration::from_secs(30), "10 records on vip", || {
        (read_all(&broker, &vip, 1).len() == 10).then_some(())
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tok = token("ann", &["vip"], None, false, 600);
    let (mut a, first_epoch, b_from) = rt.block_on(async {
        let port = edge.http_port;
        // a stays connected; b leaves with its positions.
        let mut a = Ws::connect(port, "/ws").await;
        a.setup(&tok).await;
        a.send(json!({"type": "subscribe", "topic": "vip"})).await;
        let sub = a.expect("subscribed").await;
        let epoch = sub["epoch"]
            .as_str()
            .expect("subscribed carries the epoch")
            .to_string();
        assert_eq!(epoch.len(), 22, "a Kafka topic id: {sub}");
        let snap = a.expect("snapshot").await;
        assert_eq!(snap["epoch"], epoch.as_str());
        assert_eq!(snap["upTo"]["0"], 9);
        let mut b = Ws::connect(port, "/ws").await;
        b.setup(&tok).await;
        b.send(json!({"type": "subscribe", "topic": "vip"})).await;
        b.expect("subscribed").await;
        let b_from = b.expect("snapshot").await["upTo"].clone();
        b.close().await;
        (a, epoch, b_from)
    });

    // The channel topic is deleted and created again (the transform stopped meanwhile).
    transform.stop().unwrap();
    let settings = settings(&broker);
    rt.block_on(async {
        let admin = settings.admin().unwrap();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        admin.delete_topics(&[vip.as_str()], &opts).await.unwrap();
    });
    wait_for(Duration::from_secs(30), "vip deleted", || {
        let reader = settings.reader().unwrap();
        pricefeed::kafka::partition_count(&reader, &vip)
            .unwrap()
            .is_none()
            .then_some(())
    });
    create_topic(&broker, &vip, 1);
    let transform = Service::start(&broker, &path, Role::Transform);
    prices(&broker, &raw, 10, 20);
    let new_life = wait_for(Duration::from_secs(30), "20 records in the new vip", || {
        let r = read_all(&broker, &vip, 1);
        (r.len() == 20).then_some(r)
    });
    assert_eq!(new_life[0].offset, 0);

    rt.block_on(async {
        // a: resume_gap, a snapshot of the new topic with its epoch, then every new record.
        let gap = a.expect_error("resume_gap").await;
        assert!(gap["message"].as_str().unwrap().contains("deleted and created again"), "{gap}");
        let snap = a.expect("snapshot").await;
        let second_epoch = snap["epoch"].as_str().unwrap().to_string();
        assert_ne!(second_epoch, first_epoch);
        let mut rx = Received::default();
        rx.take(&snap);
        let upto = snap["upTo"]["0"].as_i64().unwrap();
        let want: Vec<i64> = new_life.iter().map(|r| r.offset).filter(|o| *o > upto).collect();
        while rx.seqs.get(&0).map_or(0, Vec::len) < want.len() {
            let Some(v) = a.next(Duration::from_secs(10)).await else {
                panic!("a stopped receiving: {:?} of {want:?}", rx.seqs);
            };
            rx.take(&v);
        }
        assert_eq!(rx.seqs[&0], want, "a gets the new topic's records, each once");
        for m in &rx.messages {
            let r = new_life.iter().find(|r| Some(r.offset) == m["seqNo"].as_i64()).unwrap();
            assert_eq!(m["data"], r.json());
        }

        // b comes back with positions and the epoch of the old topic: not resumed into the new.
        let mut b = Ws::connect(edge.http_port, "/ws").await;
        b.send(json!({"type": "setup", "token": tok, "resume": {"vip": b_from}, "epochs": {"vip": first_epoch}}))
            .await;
        b.expect("ready").await;
        let sub = b.expect("subscribed").await;
        assert_eq!(sub["epoch"], second_epoch.as_str());
        let gap = b.expect_error("resume_gap").await;
        assert!(gap["message"].as_str().unwrap().contains("earlier life"), "{gap}");
        let snap: Value = b.expect("snapshot").await;
        assert_eq!(snap["epoch"], second_epoch.as_str());
        let data = &snap["prices"][0]["data"];
        assert_eq!(*data, new_life.last().unwrap().json(), "the new topic's latest price");
        // With the current epoch, a resume is a resume.
        let mut c = Ws::connect(edge.http_port, "/ws").await;
        c.send(json!({"type": "setup", "token": tok, "resume": {"vip": {"0": 14}}, "epochs": {"vip": second_epoch}}))
            .await;
        c.expect("ready").await;
        let m = c.expect("message").await;
        assert_eq!(m["seqNo"], 15);
    });
    edge.stop().unwrap();
    transform.stop().unwrap();
}
