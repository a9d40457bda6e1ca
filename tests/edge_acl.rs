//! The edge's ACL (I₁) with real WebSocket clients against the real broker: each user sees only
//! its own channels and symbols, correctly transformed, with seqNo = the Kafka offset; forbidden
//! and unauthorized requests get their codes; tokens expire on open connections.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::service::{Role, Service};
use common::ws::{Ended, Received, Ws, token};
use common::*;
use rust_decimal::Decimal;
use serde_json::{Value, json};

const PARTITIONS: i32 = 3;
const SYMBOLS: [&str; 3] = ["EURUSD", "GBPUSD", "USDJPY"];

fn config(prefix: &str) -> String {
    format!(
        "{}\n[auth]\nleeway_s = 0\n\n{}\
         [channels.vip]\nmarkup = {{ unit = \"pips\", bid = \"0.1\", ask = \"0.1\" }}\n\n\
         [channels.retail]\nmarkup = {{ unit = \"pips\", bid = \"1\", ask = \"1.5\" }}\n",
        kafka_table(prefix, PARTITIONS),
        instruments(&SYMBOLS)
    )
}

/// `n` raw records cycling through the symbols, each symbol on its own partition.
fn raw_records(n: usize, round: usize) -> Vec<(i32, String, String)> {
    (0..n)
        .map(|i| {
            let s = i % SYMBOLS.len();
            let step = (round * n + i) as i64;
            let (bid, ask) = match SYMBOLS[s] {
                "USDJPY" => (
                    format!("154.{:03}", 100 + step % 800),
                    format!("154.{:03}", 110 + step % 800),
                ),
                _ => (
                    format!("1.0{:04}", 8000 + step % 1000),
                    format!("1.0{:04}", 8002 + step % 1000),
                ),
            };
            let value = format!(
                r#"{{"symbol":"{}","bid":"{bid}","ask":"{ask}","ts":{}}}"#,
                SYMBOLS[s],
                ws::unix_now() * 1000
            );
            (s as i32, SYMBOLS[s].to_string(), value)
        })
        .collect()
}

fn produce_raw(broker: &Broker, raw: &str, records: &[(i32, String, String)]) {
    let refs: Vec<(i32, Option<&str>, &str)> = records
        .iter()
        .map(|(p, k, v)| (*p, Some(k.as_str()), v.as_str()))
        .collect();
    produce(broker, raw, &refs);
}

/// Reads price frames until `n` messages arrived (snapshot frames are taken in too).
async fn collect(ws: &mut Ws, n: usize) -> Received {
    let mut r = Received::default();
    while r.count() < n {
        let v = ws.next(Duration::from_secs(30)).await.unwrap_or_else(|| {
            panic!("only {} of {n} messages (ended: {:?})", r.count(), ws.ended)
        });
        assert_ne!(v["type"], "error", "unexpected error frame {v}");
        r.take(&v);
    }
    r
}

fn spread(v: &Value) -> Decimal {
    let d = |k: &str| v[k].as_str().unwrap().parse::<Decimal>().unwrap();
    d("ask") - d("bid")
}

#[test]
fn each_user_sees_exactly_its_channels_and_symbols_with_kafka_offsets_as_seq() {
    let broker = Broker::start();
    let prefix = unique_prefix("edge-acl");
    let (_dir, path) = write_config(&config(&prefix));
    let raw = format!("{prefix}.raw");
    create_topic(&broker, &raw, PARTITIONS);
    let node = Service::start(&broker, &path, Role::Run);
    let (vip_topic, retail_topic) = (format!("{prefix}.vip"), format!("{prefix}.retail"));
    // Outside demo mode the edge hands out no token.
    let demo = http_get(node.http_port, "/demo/session").unwrap();
    assert!(
        demo.contains(r#""code":"not_found""#) && !demo.contains("eyJ"),
        "{demo}"
    );

    // A first round, so snapshots have something to show.
    produce_raw(&broker, &raw, &raw_records(30, 0));
    wait_for(Duration::from_secs(30), "30 records on vip", || {
        (read_all(&broker, &vip_topic, PARTITIONS).len() == 30).then_some(())
    });

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let port = node.http_port;
        let mut alice = Ws::connect(port, "/ws").await;
        let ready = alice.setup(&token("alice", &["vip"], None, false, 600)).await;
        assert_eq!(ready["user"], "alice");
        alice.send(json!({"type": "subscribe", "topic": "vip"})).await;
        let sub = alice.expect("subscribed").await;
        assert_eq!(sub["partitions"], PARTITIONS);

        // The snapshot: the latest price of every symbol, with its seqNo, as in Kafka.
        let snap = alice.expect("snapshot").await;
        let vip_records = read_all(&broker, &vip_topic, PARTITIONS);
        let prices = snap["prices"].as_array().unwrap();
        assert_eq!(prices.len(), SYMBOLS.len(), "{snap}");
        for p in prices {
            let (part, seq) = (p["partition"].as_i64().unwrap(), p["seqNo"].as_i64().unwrap());
            let last = vip_records
                .iter()
                .rfind(|r| r.key.as_deref() == p["data"]["symbol"].as_str())
                .unwrap();
            assert_eq!((part, seq), (last.partition as i64, last.offset));
            assert_eq!(p["data"], last.json());
            assert_eq!(p["messageId"], format!("{part}-{seq}"));
        }
        let mut alice_rx = Received::default();
        alice_rx.take(&snap);

        // Bob has retail only; Carol has vip but only EURUSD; Dave uses the one-topic endpoint.
        let mut bob = Ws::connect(port, "/ws").await;
        bob.send(json!({"type": "setup", "token": token("bob", &["retail"], None, false, 600), "topics": ["retail"]}))
            .await;
        bob.expect("ready").await;
        bob.expect("subscribed").await;
        bob.expect("snapshot").await;
        let mut carol = Ws::connect(port, "/ws").await;
        carol
            .setup(&token("carol", &["vip"], Some(&["EURUSD"]), false, 600))
            .await;
        carol.send(json!({"type": "subscribe", "topic": "vip"})).await;
        let sub = carol.expect("subscribed").await;
        assert_eq!(sub["symbols"], json!(["EURUSD"]));
        let carol_snap = carol.expect("snapshot").await;
        assert!(carol_snap["prices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["data"]["symbol"] == "EURUSD"));
        let mut dave = Ws::connect(port, "/ws/sub/vip").await;
        dave.setup(&token("dave", &["vip", "retail"], None, false, 600)).await;
        assert_eq!(dave.expect("subscribed").await["topic"], "vip");
        dave.expect("snapshot").await;

        // What each may not do.
        alice.send(json!({"type": "subscribe", "topic": "retail"})).await;
        let e = alice.expect_error("forbidden").await;
        assert_eq!(e["topic"], "retail");
        carol
            .send(json!({"type": "subscribe", "topic": "vip", "symbols": ["GBPUSD"]}))
            .await;
        carol.expect_error("forbidden").await;
        alice.send(json!({"type": "subscribe", "topic": "gold"})).await;
        alice.expect_error("unknown_topic").await;
        dave.send(json!({"type": "subscribe", "topic": "retail"})).await;
        dave.expect_error("bad_request").await;

        // The live round.
        produce_raw(&broker, &raw, &raw_records(60, 1));
        let alice_live = collect(&mut alice, 60).await;
        let bob_live = collect(&mut bob, 60).await;
        let carol_live = collect(&mut carol, 20).await;
        let dave_live = collect(&mut dave, 60).await;

        let vip = read_all(&broker, &vip_topic, PARTITIONS);
        let retail = read_all(&broker, &retail_topic, PARTITIONS);
        let index = |recs: &[Rec]| -> HashMap<(i64, i64), Value> {
            recs.iter()
                .map(|r| ((r.partition as i64, r.offset), r.json()))
                .collect()
        };
        let (vip_at, retail_at) = (index(&vip), index(&retail));
        for (who, rx, topic, at) in [
            ("alice", &alice_live, "vip", &vip_at),
            ("bob", &bob_live, "retail", &retail_at),
            ("carol", &carol_live, "vip", &vip_at),
            ("dave", &dave_live, "vip", &vip_at),
        ] {
            for m in &rx.messages {
                assert_eq!(m["topic"], topic, "{who} got {m}");
                let key = (m["partition"].as_i64().unwrap(), m["seqNo"].as_i64().unwrap());
                assert_eq!(m["messageId"], format!("{}-{}", key.0, key.1));
                let kafka = at.get(&key).unwrap_or_else(|| panic!("{who}: no Kafka record at {key:?}"));
                assert_eq!(&m["data"], kafka, "{who}: seqNo {key:?} is not that Kafka record");
            }
            // In order per partition, nothing twice.
            for seqs in rx.seqs.values() {
                assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{who}: {seqs:?}");
            }
        }
        assert!(carol_live.messages.iter().all(|m| m["data"]["symbol"] == "EURUSD"));
        // Everything after the snapshot arrived: the live round is exactly the new records.
        alice_rx.seqs = alice_live.seqs.clone();
        for (p, seqs) in &alice_live.seqs {
            let expected: Vec<i64> = vip
                .iter()
                .filter(|r| r.partition as i64 == *p && r.offset > alice_rx.last[p])
                .map(|r| r.offset)
                .collect();
            assert_eq!(seqs, &expected, "alice, partition {p}");
        }
        // Retail quotes wider than vip on every price (same raw record: same raw offset header).
        let by_raw = |recs: &[Rec]| -> HashMap<(i32, String), Value> {
            recs.iter()
                .map(|r| ((r.partition, r.header("pricefeed-raw-offset").to_string()), r.json()))
                .collect()
        };
        let vip_raw = by_raw(&vip);
        for (k, r) in by_raw(&retail) {
            assert!(spread(&r) > spread(&vip_raw[&k]), "retail {r} vs vip {}", vip_raw[&k]);
        }

        // /stats counts the connections and subscriptions.
        let stats: Value = serde_json::from_str(&http_get(port, "/stats").unwrap()).unwrap();
        assert_eq!(stats["connections"], 4, "{stats}");
        assert_eq!(stats["subscriptions"], 4, "{stats}");
        let vip_stats = stats["topics"].as_array().unwrap().iter().find(|t| t["topic"] == "vip").unwrap().clone();
        assert_eq!(vip_stats["subscribers"], 3);
        // Sessions add to the shared counters at most once a second (docs/architecture.md 11.4).
        wait_for(Duration::from_secs(5), "140 vip prices counted as delivered", || {
            node.metric("pricefeed_edge_delivered_total{channel=\"vip\"}")
                .filter(|d| *d >= 140.0)
        });
        assert!(node.metric("pricefeed_edge_auth_failures_total{reason=\"forbidden_topic\"}").unwrap() >= 1.0);
    });
}

#[test]
fn bad_tokens_are_refused_and_expiry_is_enforced_on_open_connections() {
    let broker = Broker::start();
    let prefix = unique_prefix("edge-auth");
    let (_dir, path) = write_config(&config(&prefix));
    create_topic(&broker, &format!("{prefix}.raw"), PARTITIONS);
    let node = Service::start(&broker, &path, Role::Run);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let port = node.http_port;
        let good = token("eve", &["vip"], None, false, 600);
        let other_key = {
            let claims = pricefeed::edge::auth::Claims {
                sub: "eve".into(),
                channels: vec!["*".into()],
                symbols: None,
                publish: true,
                exp: (ws::unix_now() + 600) as u64,
                nbf: None,
                max_rate: None,
                iss: None,
                aud: None,
            };
            pricefeed::edge::auth::sign_hs256(&claims, b"not-the-edge-secret-not-the-edge-secret")
                .unwrap()
        };
        // {"alg":"none"} with a payload that grants everything, and no signature.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.\
                    eyJzdWIiOiJtYWxsb3J5IiwiY2hhbm5lbHMiOlsiKiJdLCJleHAiOjQxMDI0NDQ4MDB9.";
        let expired = token("eve", &["vip"], None, false, -30);
        let payload_swapped = {
            // A valid signature over different claims.
            let parts: Vec<&str> = good.split('.').collect();
            let other: Vec<&str> = other_key.split('.').collect();
            format!("{}.{}.{}", parts[0], other[1], parts[2])
        };
        for (what, bad, expect) in [
            ("wrong key", other_key.as_str(), "signature"),
            ("alg none", none, "none"),
            ("expired", expired.as_str(), "expired"),
            ("garbage", "definitely.not.a-jwt", "malformed"),
            ("tampered claims", payload_swapped.as_str(), "signature"),
        ] {
            let mut c = Ws::connect(port, "/ws").await;
            c.send(json!({"type": "setup", "token": bad})).await;
            let e = c.expect_error("unauthorized").await;
            assert!(
                e["message"].as_str().unwrap().contains(expect),
                "{what}: {e}"
            );
            assert!(
                !e["message"].as_str().unwrap().contains(bad),
                "the token is never echoed"
            );
            match c.until_closed(Duration::from_secs(10)).await {
                Ended::Close(Some(1008), _) => {}
                other => panic!("{what}: expected a policy close, got {other:?}"),
            }
        }

        // Before setup nothing works, but the connection stays usable.
        let mut c = Ws::connect(port, "/ws").await;
        c.send(json!({"type": "subscribe", "topic": "vip"})).await;
        c.expect_error("not_setup").await;
        c.setup(&good).await;
        c.send(json!({"type": "ping"})).await;
        c.expect("pong").await;

        // Expiry on open connections: A is closed when its token expires; B sends a fresh token
        // in time and stays.
        let mut a = Ws::connect(port, "/ws").await;
        a.setup(&token("frank", &["vip"], None, false, 3)).await;
        let mut b = Ws::connect(port, "/ws").await;
        b.setup(&token("grace", &["vip"], None, false, 3)).await;
        b.send(json!({"type": "subscribe", "topic": "vip"})).await;
        b.expect("subscribed").await;
        b.send(json!({"type": "setup", "token": token("grace", &["vip"], None, false, 600)}))
            .await;
        b.expect("ready").await;
        let e = a.expect_error("unauthorized").await;
        assert!(e["message"].as_str().unwrap().contains("expired"), "{e}");
        assert!(matches!(
            a.until_closed(Duration::from_secs(10)).await,
            Ended::Close(Some(1008), _)
        ));
        tokio::time::sleep(Duration::from_secs(2)).await;
        b.send(json!({"type": "ping"})).await;
        b.expect("pong").await;
        // A token for someone else cannot take over an open connection.
        b.send(json!({"type": "setup", "token": token("mallory", &["*"], None, true, 600)}))
            .await;
        b.expect_error("forbidden").await;
        b.send(json!({"type": "ping"})).await;
        b.expect("pong").await;
        assert!(
            node.metric("pricefeed_edge_auth_failures_total{reason=\"expired\"}")
                .unwrap()
                >= 1.0
        );
    });
}
