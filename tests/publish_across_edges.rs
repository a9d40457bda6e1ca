//! Publish dedup that holds across edges: a backend that retries a price on another edge (after a
//! failover) gets `ok` from both, the raw topic holds both copies, and the channel quotes the price
//! once. It still holds after the transform worker is replaced (the new one reads the window back
//! from the raw topic), in both delivery modes.

mod common;

use std::time::Duration;

use common::service::{Role, Service};
use common::*;
use serde_json::json;

const API_KEY: &str = "desk-key-0123456789abcdef";

fn config(prefix: &str, delivery: &str) -> String {
    format!(
        "{}\n{}[channels.vip]\nmarkup = {{ unit = \"pips\", bid = \"0.1\", ask = \"0.1\" }}\n",
        kafka_table_with(prefix, 2, delivery),
        instruments(&["EURUSD", "GBPUSD"])
    )
}

fn publish(port: u16, id: &str, bid: &str) -> (u16, String) {
    let body = json!({
        "messageId": id,
        "payload": {"symbol": "EURUSD", "bid": bid, "ask": "1.09000"},
    });
    http_post(
        port,
        "/publish",
        &[("X-Api-Key", API_KEY)],
        &body.to_string(),
    )
}

#[test]
fn a_price_retried_on_another_edge_is_quoted_once() {
    let broker = Broker::start();
    for delivery in ["idempotent", "transactional"] {
        let prefix = unique_prefix(&format!("publish-across-{delivery}"));
        let (_dir, path) = write_config(&config(&prefix, delivery));
        let raw = format!("{prefix}.raw");
        let vip = format!("{prefix}.vip");
        create_topic(&broker, &raw, 2);
        let keys = |e: &mut pricefeed::edge::EdgeOptions| {
            e.api_keys = Some(format!("desk:{API_KEY}"));
        };
        let worker = Service::start(&broker, &path, Role::Transform);
        let a = Service::start_with(&broker, &path, Role::Edge, keys);
        let b = Service::start_with(&broker, &path, Role::Edge, keys);

        // m1 on edge a, retried on edge b: both ok (each wrote it once), quoted once.
        let (status, body) = publish(a.http_port, "m1", "1.08000");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#""status":"ok""#), "{body}");
        let (_, body) = publish(b.http_port, "m1", "1.08000");
        assert!(body.contains(r#""status":"ok""#), "{body}");
        // Edge a still knows m1 itself.
        let (_, body) = publish(a.http_port, "m1", "1.08000");
        assert!(body.contains(r#""status":"duplicate""#), "{body}");
        // m2 on a only: quoted; it marks the end of what the worker has to handle.
        publish(a.http_port, "m2", "1.08100");
        let quoted = wait_for(Duration::from_secs(30), "m2 quoted", || {
            let r = read_all(&broker, &vip, 2);
            r.iter().any(|r| r.json()["bid"] == "1.08099").then_some(r)
        });
        let raws = read_all(&broker, &raw, 2);
        let m1_raw = raws
            .iter()
            .filter(|r| r.headers.get("pricefeed-message-id").map(String::as_str) == Some("m1"))
            .count();
        assert_eq!(
            m1_raw, 2,
            "{delivery}: both edges wrote m1 to the raw topic"
        );
        let m1_quoted = quoted
            .iter()
            .filter(|r| r.json()["bid"] == "1.07999")
            .count();
        assert_eq!(m1_quoted, 1, "{delivery}: m1 quoted once: {quoted:?}");

        // A new worker takes over (the old one stopped): m2 retried on b is still not quoted
        // again; the new worker read the window back from the raw topic.
        worker.stop().unwrap();
        let worker = Service::start(&broker, &path, Role::Transform);
        let (_, body) = publish(b.http_port, "m2", "1.08100");
        assert!(body.contains(r#""status":"ok""#), "{body}");
        publish(b.http_port, "m3", "1.08200");
        let quoted = wait_for(Duration::from_secs(30), "m3 quoted", || {
            let r = read_all(&broker, &vip, 2);
            r.iter().any(|r| r.json()["bid"] == "1.08199").then_some(r)
        });
        let m2_quoted = quoted
            .iter()
            .filter(|r| r.json()["bid"] == "1.08099")
            .count();
        assert_eq!(
            m2_quoted, 1,
            "{delivery}: m2 quoted once across the worker change"
        );
        assert!(
            worker
                .metric("pricefeed_publish_repeats_dropped_total")
                .is_some_and(|n| n >= 1.0)
        );
        for s in [worker, a, b] {
            s.stop().unwrap();
        }
    }
}
