//! Bad input and limits at the edge: every violation gets its own error code, nothing panics,
//! the offending connection stays usable where it can, and other clients are unaffected. Also:
//! heartbeats drop dead peers, and SIGTERM closes sessions with a Close frame.

mod common;

use std::time::Duration;

use common::ws::{Ended, Received, Ws, token};
use common::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const PARTITIONS: i32 = 3;
const SYMBOLS: [&str; 3] = ["EURUSD", "GBPUSD", "USDJPY"];
const MAX_FRAME: usize = 1024;
const RATE: usize = 20;
const MAX_CONNECTIONS: i64 = 6;

fn config(prefix: &str) -> String {
    format!(
        "{}\n[edge]\nmax_frame_bytes = {MAX_FRAME}\nmax_subscriptions = 1\n\
         messages_per_second = {RATE}\nmax_connections = {MAX_CONNECTIONS}\nheartbeat_ms = 1000\n\
         shutdown_grace_ms = 3000\n\n{}\
         [channels.vip]\nmarkup = {{ unit = \"pips\", bid = \"0.1\", ask = \"0.1\" }}\n\n\
         [channels.retail]\nmarkup = {{ unit = \"pips\", bid = \"1\", ask = \"1\" }}\n",
        kafka_table(prefix, PARTITIONS),
        instruments(&SYMBOLS)
    )
}

fn stats(port: u16) -> Value {
    serde_json::from_str(&http_get(port, "/stats").unwrap()).unwrap()
}

async fn ping_pong(c: &mut Ws) {
    c.send(json!({"type": "ping"})).await;
    c.expect("pong").await;
}

#[test]
fn every_violation_gets_its_code_and_nobody_else_notices() {
    let broker = Broker::start();
    let prefix = unique_prefix("edge-limits");
    let (dir, path) = write_config(&config(&prefix));
    let raw = format!("{prefix}.raw");
    create_topic(&broker, &raw, PARTITIONS);
    let mut node = spawn_pricefeed(&broker, &path, &["run"], dir.path());
    wait_ready(&node, Duration::from_secs(60));
    let port = node.http_port;

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // The bystander: subscribed, reading everything.
        let mut w = Ws::connect(port, "/ws").await;
        w.setup(&token("walter", &["vip"], None, false, 600)).await;
        w.send(json!({"type": "subscribe", "topic": "vip"})).await;
        w.expect("subscribed").await;
        let mut w_rx = Received::default();
        w_rx.take(&w.expect("snapshot").await);
        // It reads until its connection ends, answering pings all along.
        let bystander = tokio::spawn(async move {
            while w
                .next(Duration::from_secs(60))
                .await
                .map(|v| w_rx.take(&v))
                .is_some()
            {}
            (w_rx, w.ended.take())
        });
        let feed: Vec<(i32, Option<&str>, String)> = (0..90)
            .map(|i| {
                let s = i % 3;
                let v = format!(
                    r#"{{"symbol":"{}","bid":"1.2{i:04}","ask":"1.2{:04}"}}"#,
                    SYMBOLS[s],
                    i + 3
                );
                (s as i32, Some(SYMBOLS[s]), v)
            })
            .collect();
        let feed: Vec<(i32, Option<&str>, &str)> =
            feed.iter().map(|(p, k, v)| (*p, *k, v.as_str())).collect();
        produce(&broker, &raw, &feed[..45]);

        let mut x = Ws::connect(port, "/ws").await;
        x.setup(&token("xavier", &["vip", "retail"], None, false, 600))
            .await;
        for (frame, code) in [
            ("{nope", "bad_request"),
            ("[1,2,3]", "bad_request"),
            (r#"{"type":"teleport"}"#, "unknown_type"),
            (r#"{"type":"subscribe"}"#, "bad_request"),
            (
                r#"{"type":"subscribe","topic":"vip","extra":1}"#,
                "bad_request",
            ),
            (
                r#"{"type":"unsubscribe","topic":"retail"}"#,
                "not_subscribed",
            ),
            (
                r#"{"type":"resume","topic":"vip","from":{"zero":1}}"#,
                "bad_request",
            ),
        ] {
            x.send_text(frame).await;
            let e = x.expect_error(code).await;
            assert!(!e["message"].as_str().unwrap().is_empty());
        }
        x.send_raw(Message::binary(vec![1u8, 2, 3])).await;
        x.expect_error("bad_request").await;
        ping_pong(&mut x).await;
        // Oversized, but within what the edge reads: an error, and the connection stays.
        let big = json!({"type": "ping", "pad": "x".repeat(2 * MAX_FRAME)}).to_string();
        x.send_text(&big).await;
        x.expect_error("frame_too_large").await;
        ping_pong(&mut x).await;
        // One subscription per connection here.
        x.send(json!({"type": "subscribe", "topic": "vip"})).await;
        x.expect("subscribed").await;
        x.send(json!({"type": "subscribe", "topic": "retail"}))
            .await;
        x.expect_error("too_many_subscriptions").await;
        x.send(json!({"type": "unsubscribe", "topic": "vip"})).await;
        x.expect("unsubscribed").await;
        // A flood: told once, frames beyond the rate dropped, the connection survives.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        for _ in 0..(5 * RATE) {
            x.send(json!({"type": "ping"})).await;
        }
        x.expect_error("rate_limited").await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let mut pongs = 0;
        while let Some(v) = x.next(Duration::from_millis(300)).await {
            if v["type"] == "pong" {
                pongs += 1;
            }
        }
        assert!(
            pongs <= RATE + 2,
            "{pongs} pongs: the rate limit did not apply"
        );
        ping_pong(&mut x).await;
        x.close().await;

        produce(&broker, &raw, &feed[45..]);

        // Far too large: not even read; told, then closed with 1009.
        let mut y = Ws::connect(port, "/ws").await;
        y.setup(&token("yolanda", &["vip"], None, false, 600)).await;
        y.send_text(&"y".repeat(10 * MAX_FRAME)).await;
        y.expect_error("frame_too_large").await;
        assert!(matches!(
            y.until_closed(Duration::from_secs(10)).await,
            Ended::Close(Some(1009), _)
        ));

        // The connection limit: the one too many is told and closed with 1013.
        let open = stats(port)["connections"].as_i64().unwrap();
        let mut extra = Vec::new();
        for _ in open..MAX_CONNECTIONS {
            let mut c = Ws::connect(port, "/ws").await;
            c.setup(&token("filler", &["vip"], None, false, 600)).await;
            extra.push(c);
        }
        let mut over = Ws::connect(port, "/ws").await;
        over.expect_error("unavailable").await;
        assert!(matches!(
            over.until_closed(Duration::from_secs(10)).await,
            Ended::Close(Some(1013), _)
        ));
        drop(extra);

        // A peer that never answers pings is dropped after two heartbeats; the bystander, which
        // answers them, stays.
        let before = wait_for_connections(port, |n| n == 1).await;
        let silent = Ws::connect(port, "/ws").await;
        wait_for_connections(port, |n| n == before + 1).await;
        wait_for_connections(port, |n| n == before).await;
        drop(silent);

        assert!(
            node.metric("pricefeed_edge_client_errors_total{code=\"bad_request\"}")
                .unwrap()
                >= 5.0
        );

        // SIGTERM: sessions get a Close frame (going away) and the process exits.
        node.signal("TERM");
        let (w_rx, ended) = bystander.await.unwrap();
        assert_eq!(
            ended,
            Some(Ended::Close(Some(1001), "server shutting down".into()))
        );
        // The bystander got every price, in order, through all of that.
        assert_eq!(w_rx.count(), 90);
        for seqs in w_rx.seqs.values() {
            assert!(seqs.windows(2).all(|p| p[1] == p[0] + 1), "{seqs:?}");
        }
    });
    let status = wait_for(Duration::from_secs(15), "pricefeed to exit", || {
        node.child.try_wait().unwrap()
    });
    assert!(status.success(), "exit status {status}");
}

async fn wait_for_connections(port: u16, ok: impl Fn(i64) -> bool) -> i64 {
    for _ in 0..200 {
        let n = stats(port)["connections"].as_i64().unwrap();
        if ok(n) {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("connection count never matched");
}
