//! Server-Sent Events (`GET /sse/{topic}`) with a curl-style client, a live feed and two edges:
//! the stream starts with `ready`, `subscribed` and a snapshot; a client whose connection is cut
//! comes back with `Last-Event-ID` (the header, then the query parameter on the other edge) and
//! gets exactly the prices it missed, then live ones; refusals are JSON problems with the right
//! status; idle streams carry heartbeat comments. The browser's own `EventSource` is in
//! tests/sse_browser.rs.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::sse::{Event, Sse};
use common::ws::{Received, token};
use common::*;
use serde_json::Value;

const PARTITIONS: i32 = 2;

fn config(prefix: &str) -> String {
    format!(
        "{}\n[edge]\nheartbeat_ms = 500\nhistory_per_partition = 100\nmax_lag_records = 100\n\n{}\
         [channels.vip]\nmarkup = {{ unit = \"pips\", bid = \"0.1\", ask = \"0.1\" }}\n\n\
         [channels.retail]\nmarkup = {{ unit = \"pips\", bid = \"0.5\", ask = \"0.5\" }}\n",
        kafka_table(prefix, PARTITIONS),
        instruments(&["EURUSD", "GBPUSD"])
    )
}

/// Raw prices on both partitions, about 200 a second, until `stop`; counts what it wrote.
pub fn feed(
    broker: &Broker,
    raw: String,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    feed_at(broker, raw, 1, stop, written)
}

/// [`feed`] at `pairs` × 200 prices a second.
pub fn feed_at(
    broker: &Broker,
    raw: String,
    pairs: usize,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    let settings = settings(broker);
    std::thread::spawn(move || {
        use rdkafka::config::FromClientConfig;
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        let producer = BaseProducer::from_config(&settings.producer_config()).unwrap();
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            for (p, s) in [(0, "EURUSD"), (1, "GBPUSD")].repeat(pairs) {
                let v = format!(
                    r#"{{"symbol":"{s}","bid":"1.{:05}","ask":"1.{:05}"}}"#,
                    10_000 + i % 50_000,
                    10_003 + i % 50_000
                );
                let r = BaseRecord::<str, str>::to(&raw)
                    .partition(p)
                    .key(s)
                    .payload(&v);
                producer.send(r).map_err(|(e, _)| e).unwrap();
                i += 1;
            }
            producer.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_millis(10));
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        written.store(i, Ordering::SeqCst);
    })
}

/// Reads `n` more prices (or until `until` says stop), checking each frame's kind.
fn read(sse: &mut Sse, rx: &mut Received, mut until: impl FnMut(&Received) -> bool) {
    while !until(rx) {
        let v = sse
            .next_json(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("the stream stopped at {} prices", rx.count()));
        match v["type"].as_str() {
            Some("message") => {
                assert!(v.get("conflated").is_none(), "{v}");
                rx.take(&v);
            }
            Some("resumed") => {}
            _ => panic!("unexpected frame {v}"),
        }
    }
}

#[test]
fn an_event_stream_resumes_from_last_event_id_with_no_gap_and_no_duplicate() {
    let broker = Broker::start();
    let prefix = unique_prefix("edge-sse");
    let (dir, path) = write_config(&config(&prefix));
    let (raw, vip) = (format!("{prefix}.raw"), format!("{prefix}.vip"));
    create_topic(&broker, &raw, PARTITIONS);
    let a = spawn_pricefeed(&broker, &path, &["run"], dir.path());
    wait_ready(&a, Duration::from_secs(60));
    let b = spawn_pricefeed(&broker, &path, &["edge"], dir.path());
    wait_ready(&b, Duration::from_secs(60));
    let tok = token("sam", &["vip"], None, false, 600);
    let bearer = format!("Bearer {tok}");

    // Refusals: a JSON problem with a status and code that say what is wrong.
    let refused = |port, path: &str, headers: &[(&str, &str)], status, code| {
        let r = Sse::get(port, path, headers);
        assert_eq!(r.status, status, "{path}");
        let p = r.problem();
        assert_eq!(p["code"], code, "{path}: {p}");
        p
    };
    refused(a.http_port, "/sse/vip", &[], 401, "unauthorized");
    refused(a.http_port, "/sse/vip?token=nope", &[], 401, "unauthorized");
    refused(
        a.http_port,
        "/sse/retail",
        &[("Authorization", &bearer)],
        403,
        "forbidden",
    );
    refused(
        a.http_port,
        "/sse/gold",
        &[("Authorization", &bearer)],
        404,
        "unknown_topic",
    );
    let p = refused(
        a.http_port,
        "/sse/vip",
        &[("Authorization", &bearer), ("Last-Event-ID", "garbage")],
        400,
        "bad_request",
    );
    assert!(
        p["message"].as_str().unwrap().contains("Last-Event-ID"),
        "{p}"
    );
    refused(
        a.http_port,
        "/sse/vip?maxRate=-1",
        &[("Authorization", &bearer)],
        400,
        "bad_request",
    );

    // An idle stream: headers, the opening frames, then heartbeat comments.
    let mut idle = Sse::get(a.http_port, "/sse/vip", &[("Authorization", &bearer)]);
    assert_eq!(idle.status, 200);
    assert_eq!(idle.header("content-type"), Some("text/event-stream"));
    idle.expect("ready");
    assert_eq!(idle.expect("subscribed")["partitions"], PARTITIONS);
    idle.expect("snapshot");
    let first_id = idle.last_id.clone().expect("the snapshot has an id");
    assert!(first_id.starts_with("-1,-1@"), "{first_id}");
    assert!(matches!(idle.next(Duration::from_secs(3)), Some(Event::Comment(c)) if c == "ping"));
    drop(idle);

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let producer = feed(&broker, raw.clone(), stop.clone(), written.clone());

    // 1. Subscribe on A; read a while; the connection is cut.
    let mut c1 = Sse::get(a.http_port, "/sse/vip", &[("Authorization", &bearer)]);
    c1.expect("ready");
    c1.expect("subscribed");
    let snap = c1.expect("snapshot");
    let mut rx = Received::default();
    rx.take(&snap);
    let first_up_to = rx.last.clone();
    read(&mut c1, &mut rx, |r| r.count() >= 300);
    let id1 = c1.last_id.clone().unwrap();
    drop(c1);

    // 2. Back on A after a pause long enough that A's memory (100 per partition) has turned
    // over: the missed prices come from Kafka; no snapshot first.
    std::thread::sleep(Duration::from_millis(1500));
    let mut c2 = Sse::get(
        a.http_port,
        "/sse/vip",
        &[("Authorization", &bearer), ("Last-Event-ID", &id1)],
    );
    if c2.status != 200 {
        panic!("resume with {id1}: {}", c2.problem());
    }
    c2.expect("ready");
    c2.expect("subscribed");
    read(&mut c2, &mut rx, |r| r.count() >= 900);
    let id2 = c2.last_id.clone().unwrap();
    drop(c2);

    // 3. On the other edge, with the token and position in the query (a new EventSource).
    let mut c3 = Sse::get(
        b.http_port,
        &format!(
            "/sse/vip?token={tok}&lastEventId={}",
            id2.replace('+', "%2B").replace('/', "%2F")
        ),
        &[],
    );
    assert_eq!(c3.status, 200);
    c3.expect("ready");
    c3.expect("subscribed");
    read(&mut c3, &mut rx, |r| r.count() >= 1200);

    // 4. The feed stops; c3 reads to the end of every partition.
    stop.store(true, Ordering::SeqCst);
    producer.join().unwrap();
    let total = written.load(Ordering::SeqCst);
    let records = wait_for(Duration::from_secs(60), "every record on vip", || {
        let r = read_all(&broker, &vip, PARTITIONS);
        (r.len() == total).then_some(r)
    });
    let end: BTreeMap<i64, i64> = records
        .iter()
        .map(|r| (r.partition as i64, r.offset))
        .collect();
    read(&mut c3, &mut rx, |r| {
        end.iter().all(|(p, o)| r.last.get(p) == Some(o))
    });

    // Every record after the first snapshot, in order, once, equal to Kafka's.
    assert_eq!(rx.gaps, 0);
    for p in 0..PARTITIONS as i64 {
        let expected: Vec<i64> = records
            .iter()
            .filter(|r| r.partition as i64 == p && r.offset > first_up_to[&p])
            .map(|r| r.offset)
            .collect();
        assert_eq!(rx.seqs[&p], expected, "partition {p}");
    }
    let by_pos: BTreeMap<(i64, i64), Value> = records
        .iter()
        .map(|r| ((r.partition as i64, r.offset), r.json()))
        .collect();
    for m in &rx.messages {
        let key = (
            m["partition"].as_i64().unwrap(),
            m["seqNo"].as_i64().unwrap(),
        );
        assert_eq!(m["data"], by_pos[&key], "{m}");
    }
    // The last id names the end of every partition.
    let id = c3.last_id.clone().unwrap();
    let seqs: Vec<i64> = id
        .split('@')
        .next()
        .unwrap()
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(seqs, end.values().copied().collect::<Vec<_>>(), "{id}");

    // A throttled stream says so, and resuming it starts from a snapshot.
    let mut t = Sse::get(
        a.http_port,
        "/sse/vip?maxRate=2",
        &[("Authorization", &bearer), ("Last-Event-ID", &id)],
    );
    t.expect("ready");
    assert_eq!(t.expect("subscribed")["maxRate"], 2.0);
    t.expect("snapshot");
}

/// The browser's own `EventSource` (tests/browser/sse.mjs in Chromium) through two network cuts:
/// it reconnects by itself with `Last-Event-ID` and misses nothing, twice nothing.
#[test]
fn event_source_in_chromium_reconnects_with_last_event_id_and_misses_nothing() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    let broker = Broker::start();
    let prefix = unique_prefix("sse-browser");
    let (dir, path) = write_config(&config(&prefix));
    let (raw, vip) = (format!("{prefix}.raw"), format!("{prefix}.vip"));
    create_topic(&broker, &raw, PARTITIONS);
    let edge = spawn_pricefeed(&broker, &path, &["run"], dir.path());
    wait_ready(&edge, Duration::from_secs(60));
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let producer = feed(&broker, raw, stop.clone(), written.clone());

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut node = Command::new("node")
        .arg(root.join("tests/browser/sse.mjs"))
        .env(
            "PRICEFEED_URL",
            format!("http://127.0.0.1:{}", edge.http_port),
        )
        .env("PRICEFEED_TOKEN", token("eve", &["vip"], None, false, 600))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node (Node.js) must be installed");
    let mut stdin = node.stdin.take().unwrap();
    let mut result = None;
    let mut records = Vec::new();
    for line in BufReader::new(node.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        println!("node: {}", &line[..line.len().min(200)]);
        if line == "stop-feed" {
            stop.store(true, Ordering::SeqCst);
            while !producer.is_finished() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let total = written.load(Ordering::SeqCst);
            records = wait_for(Duration::from_secs(60), "every record on vip", || {
                let r = read_all(&broker, &vip, PARTITIONS);
                (r.len() == total).then_some(r)
            });
            let end: BTreeMap<String, i64> = records
                .iter()
                .map(|r| (r.partition.to_string(), r.offset))
                .collect();
            writeln!(stdin, "{}", serde_json::to_string(&end).unwrap()).unwrap();
        } else if let Some(json) = line.strip_prefix("RESULT ") {
            result = Some(serde_json::from_str::<Value>(json).unwrap());
        }
    }
    assert!(node.wait().unwrap().success(), "the browser test failed");
    let result = result.expect("a RESULT line");
    assert_eq!(result["opens"], 3, "one stream and two reconnections");

    let mut rx = Received::default();
    let (mut snapshots, mut resumed) = (0, 0);
    let mut first_up_to = BTreeMap::new();
    for g in result["got"].as_array().unwrap() {
        let f = &g["frame"];
        match f["type"].as_str().unwrap() {
            "snapshot" => {
                snapshots += 1;
                rx.take(f);
                first_up_to = rx.last.clone();
            }
            "message" => {
                rx.take(f);
                // The id the browser keeps is the position after this price.
                let id = g["id"].as_str().unwrap();
                let seqs: Vec<i64> = id
                    .split('@')
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|s| s.parse().unwrap())
                    .collect();
                let p = f["partition"].as_u64().unwrap() as usize;
                assert_eq!(seqs[p], f["seqNo"].as_i64().unwrap(), "{id} for {f}");
            }
            "resumed" => resumed += 1,
            "ready" | "subscribed" => {}
            other => panic!("unexpected {other}: {f}"),
        }
    }
    assert_eq!(
        snapshots, 1,
        "the reconnections resumed rather than starting over"
    );
    assert_eq!(resumed, 2);
    assert_eq!(rx.gaps, 0);
    for p in 0..PARTITIONS as i64 {
        let expected: Vec<i64> = records
            .iter()
            .filter(|r| r.partition as i64 == p && r.offset > first_up_to[&p])
            .map(|r| r.offset)
            .collect();
        assert_eq!(
            rx.seqs[&p], expected,
            "partition {p}: every price once, in order"
        );
    }
}

/// A client that stops reading its event stream meets the slow-client policy like a WebSocket
/// client (the write timeout), the kernel then drops its connection (`TCP_USER_TIMEOUT`: nothing
/// else could close it under the HTTP server), and a client reading alongside is not held up.
#[test]
fn an_event_stream_that_is_not_read_is_closed_and_others_go_on() {
    let broker = Broker::start();
    let prefix = unique_prefix("sse-stuck");
    let config = config(&prefix).replace(
        "heartbeat_ms = 500\n",
        "heartbeat_ms = 500\nwrite_timeout_ms = 1000\nsend_buffer_bytes = 16384\n",
    );
    let (dir, path) = write_config(&config);
    let raw = format!("{prefix}.raw");
    create_topic(&broker, &raw, PARTITIONS);
    let edge = spawn_pricefeed(&broker, &path, &["run"], dir.path());
    wait_ready(&edge, Duration::from_secs(60));
    let tok = token("sid", &["vip"], None, false, 600);
    let bearer = format!("Bearer {tok}");
    let port = edge.http_port;

    let mut stuck = Sse::get_small_window(port, "/sse/vip", &[("Authorization", &bearer)], 4096);
    stuck.expect("ready");
    let mut reader = Sse::get(port, "/sse/vip", &[("Authorization", &bearer)]);
    reader.expect("ready");
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let producer = feed_at(&broker, raw, 10, stop.clone(), written.clone());

    // The reader keeps reading while the stuck client's session times out.
    let closes = || {
        edge.metric("pricefeed_edge_slow_consumer_closes_total{reason=\"write_timeout\"}")
            .unwrap_or(0.0)
    };
    let mut prices = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while closes() < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stuck stream was never closed"
        );
        for _ in 0..200 {
            let v = reader
                .next_json(Duration::from_secs(10))
                .expect("the reader goes on");
            prices += usize::from(v["type"] == "message");
        }
    }
    stop.store(true, Ordering::SeqCst);
    producer.join().unwrap();
    assert!(prices > 1000, "the reader got {prices} prices meanwhile");
    // Its connection is gone: reset by the kernel, not left open under the HTTP server.
    std::thread::sleep(Duration::from_secs(3));
    stuck.until_closed(Duration::from_secs(5)).unwrap();
}
