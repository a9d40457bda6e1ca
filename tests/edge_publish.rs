//! Publishing (I₂): tokens with the publish right publish raw prices over the WebSocket, backends
//! with an API key over HTTP; a repeated messageId is acked `duplicate` and written once; `ack ok`
//! comes after Kafka's acknowledgement, and the price flows through the channels.

mod common;

use common::service::{Role, Service};
use common::ws::{Ws, token};
use common::*;
use serde_json::{Value, json};

const PARTITIONS: i32 = 3;
const API_KEY: &str = "desk-key-0123456789abcdef";

fn config(prefix: &str) -> String {
    format!(
        "{}\n{}[channels.vip]\nmarkup = {{ unit = \"pips\", bid = \"0.1\", ask = \"0.1\" }}\n",
        kafka_table(prefix, PARTITIONS),
        instruments(&["EURUSD", "GBPUSD"])
    )
}

fn price(symbol: &str, bid: &str, ask: &str) -> Value {
    json!({"symbol": symbol, "bid": bid, "ask": ask})
}

#[test]
fn duplicates_are_acked_as_such_and_written_once() {
    let broker = Broker::start();
    let prefix = unique_prefix("edge-publish");
    let (_dir, path) = write_config(&config(&prefix));
    let raw = format!("{prefix}.raw");
    create_topic(&broker, &raw, PARTITIONS);
    let node = Service::start_with(&broker, &path, Role::Run, |e| {
        e.api_keys = Some(format!("desk:{API_KEY}"));
    });
    let port = node.http_port;

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut watcher = Ws::connect(port, "/ws").await;
        watcher.setup(&token("watcher", &["vip"], None, false, 600)).await;
        watcher.send(json!({"type": "subscribe", "topic": "vip"})).await;
        watcher.expect("subscribed").await;
        watcher.expect("snapshot").await;

        let mut p = Ws::connect(port, "/ws").await;
        p.setup(&token("feeder", &[], None, true, 600)).await;
        let publish = |id: &str, payload: Value| json!({"type": "publish", "topic": raw, "messageId": id, "payload": payload});
        p.send(publish("m1", price("EURUSD", "1.08412", "1.08431"))).await;
        let ack = p.expect("ack").await;
        assert_eq!(ack, json!({"type": "ack", "messageId": "m1", "status": "ok"}));
        // Acked means written: the price is in Kafka and on its way to the channel.
        let m = watcher.expect("message").await;
        assert_eq!(m["data"]["symbol"], "EURUSD");
        assert_eq!(m["data"]["bid"], "1.08411");
        p.send(publish("m1", price("EURUSD", "1.08412", "1.08431"))).await;
        assert_eq!(p.expect("ack").await["status"], "duplicate");
        // Two at once with the same id: one write.
        p.send(publish("m2", price("GBPUSD", "1.25", "1.2502"))).await;
        p.send(publish("m2", price("GBPUSD", "1.25", "1.2502"))).await;
        let (a, b) = (p.expect("ack").await, p.expect("ack").await);
        let mut statuses = [a["status"].as_str().unwrap().to_string(), b["status"].as_str().unwrap().to_string()];
        statuses.sort();
        assert_eq!(statuses, ["duplicate", "ok"]);
        // Refused before anything is written.
        p.send(publish("m3", price("EURUSD", "1.1", "1.0"))).await;
        let e = p.expect_error("bad_request").await;
        assert!(e["message"].as_str().unwrap().contains("m3"), "{e}");
        p.send(publish("m4", price("DOGEUSD", "1", "2"))).await;
        p.expect_error("bad_request").await;
        p.send(json!({"type": "publish", "topic": "prices.elsewhere", "messageId": "m5", "payload": price("EURUSD", "1", "2")}))
            .await;
        p.expect_error("unknown_topic").await;
        let mut reader = Ws::connect(port, "/ws").await;
        reader.setup(&token("reader", &["vip"], None, false, 600)).await;
        reader.send(publish("r1", price("EURUSD", "1.1", "1.2"))).await;
        reader.expect_error("forbidden").await;
    });

    // Backends publish over HTTP with an API key.
    let body = json!({"messageId": "h1", "payload": price("EURUSD", "1.09", "1.0902")}).to_string();
    let (status, text) = http_post(port, "/publish", &[("X-Api-Key", API_KEY)], &body);
    assert_eq!(
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap()["status"].clone()
        ),
        (200, json!("ok")),
        "{text}"
    );
    let (status, text) = http_post(
        port,
        "/publish",
        &[("Authorization", &format!("Bearer {API_KEY}"))],
        &body,
    );
    assert_eq!(
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap()["status"].clone()
        ),
        (200, json!("duplicate")),
        "{text}"
    );
    let (status, _) = http_post(
        port,
        "/publish",
        &[("X-Api-Key", "not-a-key-0000000000")],
        &body,
    );
    assert_eq!(status, 401);
    let (status, text) = http_post(
        port,
        "/publish",
        &[("X-Api-Key", API_KEY)],
        "{\"messageId\":\"h2\"}",
    );
    assert_eq!(status, 400, "{text}");

    // Exactly one raw record per messageId and publisher.
    let records = read_all(&broker, &raw, PARTITIONS);
    let ids: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r.header("pricefeed-publisher").to_string(),
                r.header("pricefeed-message-id").to_string(),
            )
        })
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            ("feeder".to_string(), "m1".to_string()),
            ("feeder".to_string(), "m2".to_string()),
            ("key:desk".to_string(), "h1".to_string()),
        ]
    );
    assert_eq!(
        node.metric("pricefeed_edge_published_total{status=\"duplicate\"}"),
        Some(3.0)
    );
}
