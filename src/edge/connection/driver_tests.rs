//! Sessions over an in-memory socket, with no Kafka: a client (tokio-tungstenite, masked frames)
//! on one end of a duplex, the connection loop on the other, and records appended to the
//! in-memory log by the test as the reader would.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::run;
use crate::config::Rules;
use crate::edge::auth::{ApiKeys, Claims, Verifier, sign_hs256};
use crate::edge::kafka::replay::ReplayPool;
use crate::edge::log::entry::encode_entry;
use crate::edge::log::symbols::Symbols;
use crate::edge::log::topic::{Hub, TopicLog};
use crate::edge::node::{Edge, Sessions, Stats};
use crate::edge::publish::Publisher;
use crate::kafka::KafkaSettings;

const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";

const CONFIG: &str = r#"
[instruments.EURUSD]
tick = "0.00001"
pip = "0.0001"
precision = 5
[instruments.GBPUSD]
tick = "0.00001"
pip = "0.0001"
precision = 5
[channels.vip]
markup = { unit = "pips", bid = "0.1", ask = "0.1" }
"#;

/// An edge node serving `vip` (one partition) from memory only. Nothing in it talks to Kafka
/// unless a client publishes or resumes from before memory.
fn node() -> Arc<Edge> {
    let rules = Rules::parse(CONFIG, "test").expect("test config");
    let kafka = KafkaSettings {
        brokers: "127.0.0.1:9".into(),
        options: Vec::new(),
    };
    let topic = TopicLog::new("vip", "prices.vip", 1);
    topic.partitions[0].start_at(0, -1);
    let hub = Arc::new(Hub::new(vec![topic], Symbols::default(), 1000));
    hub.set_caught_up();
    let live = Arc::new(arc_swap::ArcSwap::from_pointee(rules.clone()));
    let publisher = Publisher::new(&kafka, live.clone(), Duration::from_secs(60)).unwrap();
    Arc::new(Edge {
        hub,
        verifier: Verifier::hs256(SECRET, &rules.auth),
        api_keys: ApiKeys::default(),
        leeway_s: 0,
        rules: live,
        settings: rules.edge.clone(),
        replay: ReplayPool::new(kafka.clone(), TaskTracker::new(), 0),
        publisher: Arc::new(publisher),
        stats: Stats::default(),
        latency: crate::telemetry::edge_latency(),
        internal_latency: crate::telemetry::edge_internal_latency(),
        shutdown: CancellationToken::new(),
        sessions: Sessions::default(),
        tasks: TaskTracker::new(),
        threads: Default::default(),
        node_id: "test".into(),
        demo: None,
        next_session: AtomicU64::new(1),
        kafka_error: Default::default(),
        kafka,
    })
}

/// Appends records `from..to` of EURUSD to `vip`/0 and wakes its subscribers.
fn feed(node: &Edge, from: i64, to: i64) {
    let topic = node.hub.topic("vip").unwrap();
    let id = node.hub.symbols.intern("EURUSD");
    let entries = (from..to).map(|o| {
        let v = format!(r#"{{"symbol":"EURUSD","bid":"1.1","ask":"1.2","ts":{o}}}"#);
        encode_entry("vip", 0, o, o - 1, id, v.as_bytes(), 0).unwrap()
    });
    topic.partitions[0].append(entries, 1000);
    topic.wake();
}

fn token() -> String {
    let claims = Claims {
        sub: "alice".into(),
        channels: vec!["vip".into()],
        symbols: None,
        publish: false,
        exp: super::super::requests::unix_now() + 600,
        nbf: None,
        max_rate: None,
        iss: None,
        aud: None,
    };
    sign_hs256(&claims, SECRET).unwrap()
}

type Client = WebSocketStream<tokio::io::DuplexStream>;

/// A client connected to a fresh session of `node`, and the session's task.
async fn connect(node: &Arc<Edge>) -> (Client, tokio::task::JoinHandle<()>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let session = tokio::spawn(run(server, node.clone(), None));
    let c = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
    (c, session)
}

async fn send(c: &mut Client, v: Value) {
    c.send(Message::Text(Utf8Bytes::from(v.to_string())))
        .await
        .unwrap();
}

/// The next text frame, within 5 s.
async fn next(c: &mut Client) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), c.next())
            .await
            .expect("a frame within 5 s")
            .expect("the connection is open")
            .unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// A client of a fresh session that has set up (`ready` read).
async fn set_up(node: &Arc<Edge>) -> (Client, tokio::task::JoinHandle<()>) {
    let (mut c, session) = connect(node).await;
    send(&mut c, json!({"type": "setup", "token": token()})).await;
    assert_eq!(next(&mut c).await["type"], "ready");
    (c, session)
}

#[tokio::test]
async fn a_subscriber_gets_a_snapshot_then_every_record_with_its_offset() {
    let node = node();
    feed(&node, 0, 3);
    let (mut c, session) = set_up(&node).await;
    send(&mut c, json!({"type": "subscribe", "topic": "vip"})).await;
    assert_eq!(next(&mut c).await["type"], "subscribed");
    let snap = next(&mut c).await;
    assert_eq!(
        (snap["type"].clone(), snap["upTo"].clone()),
        (json!("snapshot"), json!({"0": 2}))
    );
    feed(&node, 3, 6);
    for seq in 3..6 {
        let m = next(&mut c).await;
        assert_eq!(
            (m["seqNo"].as_i64(), m["prev"].as_i64()),
            (Some(seq), Some(seq - 1))
        );
    }
    assert_eq!(node.stats.connections(), 1);
    drop(c);
    // The session ends: it is no longer counted, and its subscription left the topic.
    session.await.unwrap();
    assert_eq!(node.stats.connections(), 0);
    assert_eq!(node.hub.topic("vip").unwrap().subscriber_count(), 0);
}

#[tokio::test]
async fn a_resume_ahead_of_this_edge_waits_without_holding_the_connection() {
    let node = node();
    feed(&node, 0, 5);
    let (mut c, _session) = set_up(&node).await;
    // The client has seqNo 7: it came from an edge that read further than this one (end 4).
    send(
        &mut c,
        json!({"type": "resume", "topic": "vip", "from": {"0": 7}}),
    )
    .await;
    assert_eq!(next(&mut c).await["type"], "subscribed");
    // While the resume waits, the connection still answers.
    send(&mut c, json!({"type": "ping"})).await;
    assert_eq!(next(&mut c).await["type"], "pong");
    // This edge gets there: the client receives what follows its seqNo, then `resumed`.
    feed(&node, 5, 10);
    let mut got = Vec::new();
    loop {
        let m = next(&mut c).await;
        match m["type"].as_str() {
            Some("message") => got.push(m["seqNo"].as_i64().unwrap()),
            Some("resumed") => break,
            other => panic!("unexpected {other:?}: {m}"),
        }
    }
    assert_eq!(got, vec![8, 9]);
}

#[tokio::test]
async fn a_resume_this_edge_never_reaches_gives_resume_gap_and_a_snapshot() {
    let node = node();
    feed(&node, 0, 5);
    let (mut c, _session) = set_up(&node).await;
    send(
        &mut c,
        json!({"type": "resume", "topic": "vip", "from": {"0": 5000}}),
    )
    .await;
    assert_eq!(next(&mut c).await["type"], "subscribed");
    let e = next(&mut c).await;
    assert_eq!(e["code"], "resume_gap", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("seqNo 5000 is past the end of the log (4)"),
        "{e}"
    );
    let snap = next(&mut c).await;
    assert_eq!(
        (snap["type"].clone(), snap["upTo"].clone()),
        (json!("snapshot"), json!({"0": 4}))
    );
}

#[tokio::test]
async fn shutdown_closes_every_session_with_going_away() {
    let node = node();
    let (mut c, _session) = set_up(&node).await;
    node.sessions.close_all();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), c.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(u16::from(f.code), 1001);
                return;
            }
            Some(Ok(_)) => {}
            other => panic!("no Close frame: {other:?}"),
        }
    }
}

/// An idle connection is mostly its task (this future) and what the session holds: kept small
/// on purpose (docs/benchmarks.md, idle memory per connection). Sizes, not timings: the same on
/// every run of this compiler.
#[test]
fn a_connection_s_state_stays_small() {
    use crate::edge::connection::session::Session;
    use crate::edge::connection::subscription::Subscription;
    let (_c, server) = tokio::io::duplex(64);
    let future = run(server, node(), None);
    let sizes = (
        std::mem::size_of_val(&future),
        std::mem::size_of::<Session>(),
        std::mem::size_of::<Subscription>(),
    );
    assert!(
        sizes.0 <= 900 && sizes.1 <= 400 && sizes.2 <= 80,
        "connection future, session, subscription: {sizes:?} bytes"
    );
}
