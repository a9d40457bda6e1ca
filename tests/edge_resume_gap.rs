//! A resume that asks for an offset not in the log gets `resume_gap` and a fresh snapshot, after
//! waiting for this edge to get there (it may be behind the edge the client came from).

mod common;

use std::time::Duration;

use common::service::{Role, Service};
use common::ws::{Ws, token};
use common::*;
use serde_json::json;

const PARTITIONS: i32 = 3;
const SYMBOLS: [&str; 3] = ["EURUSD", "GBPUSD", "USDJPY"];

fn config(prefix: &str) -> String {
    format!(
        "{}\n{}[channels.vip]\nmarkup = {{ unit = \"pips\", bid = \"0.1\", ask = \"0.1\" }}\n",
        kafka_table(prefix, PARTITIONS),
        instruments(&SYMBOLS)
    )
}

#[test]
fn an_offset_not_in_the_log_gives_resume_gap_and_a_fresh_snapshot() {
    let broker = Broker::start();
    let prefix = unique_prefix("edge-gap");
    let (_dir, path) = write_config(&config(&prefix));
    let raw = format!("{prefix}.raw");
    create_topic(&broker, &raw, PARTITIONS);
    let node = Service::start(&broker, &path, Role::Run);
    let records: Vec<(i32, Option<&str>, String)> = (0..30)
        .map(|i| {
            let s = i % 3;
            (
                s as i32,
                Some(SYMBOLS[s]),
                format!(
                    r#"{{"symbol":"{}","bid":"1.1{i:04}","ask":"1.1{:04}"}}"#,
                    SYMBOLS[s],
                    i + 2
                ),
            )
        })
        .collect();
    let refs: Vec<(i32, Option<&str>, &str)> = records
        .iter()
        .map(|(p, k, v)| (*p, *k, v.as_str()))
        .collect();
    produce(&broker, &raw, &refs);
    let vip = format!("{prefix}.vip");
    wait_for(Duration::from_secs(30), "30 records on vip", || {
        (read_all(&broker, &vip, PARTITIONS).len() == 30).then_some(())
    });

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = Ws::connect(node.http_port, "/ws").await;
        c.setup(&token("judy", &["vip"], None, false, 600)).await;
        // Partition 1 asks for a seqNo far past the end (as after a broker lost its data).
        c.send(json!({"type": "resume", "topic": "vip", "from": {"0": 3, "1": 5_000_000, "2": 1}}))
            .await;
        c.expect("subscribed").await;
        let e = c.expect_error("resume_gap").await;
        assert!(
            e["message"].as_str().unwrap().contains("partition 1"),
            "{e}"
        );
        let snap = c.expect("snapshot").await;
        assert_eq!(snap["prices"].as_array().unwrap().len(), 3, "{snap}");
        assert_eq!(snap["upTo"], json!({"0": 9, "1": 9, "2": 9}));
        // And it goes on live from there.
        produce(
            &broker,
            &raw,
            &[(
                1,
                Some("GBPUSD"),
                r#"{"symbol":"GBPUSD","bid":"1.2","ask":"1.21"}"#,
            )],
        );
        let m = c.expect("message").await;
        assert_eq!(
            (m["partition"].as_i64(), m["seqNo"].as_i64()),
            (Some(1), Some(10))
        );
        // A partition the topic does not have is a bad request.
        c.send(json!({"type": "resume", "topic": "vip", "from": {"7": 1}}))
            .await;
        c.expect_error("bad_request").await;
    });
}
