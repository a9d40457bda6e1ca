//! Failover in the clients: `/client.js` (in Node, tests/browser/node-failover.mjs) and
//! `pricefeed watch`, each given two edge nodes, move to the other one when theirs is SIGKILLed
//! while prices flow, and resume there with no gap and no duplicate by their own checks.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;

fn config(prefix: &str) -> String {
    format!(
        "{kafka}{instruments}\n[channels.vip]\nmarkup = {{ unit = \"pips\", bid = \"0.1\", ask = \"0.1\" }}\n",
        kafka = kafka_table(prefix, 2),
        instruments = instruments(&["EURUSD", "GBPUSD"]),
    )
}

/// Raw prices on both partitions, 40 a second, until `stop`.
fn feed(broker: &Broker, raw: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let settings = settings(broker);
    std::thread::spawn(move || {
        use rdkafka::config::FromClientConfig;
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        let producer = BaseProducer::from_config(&settings.producer_config()).unwrap();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for (p, s) in [(0, "EURUSD"), (1, "GBPUSD")] {
                let v = format!(
                    r#"{{"symbol":"{s}","bid":"1.{:05}","ask":"1.{:05}"}}"#,
                    10_000 + i % 50_000,
                    10_003 + i % 50_000
                );
                let r = BaseRecord::<str, str>::to(&raw)
                    .partition(p)
                    .key(s)
                    .payload(&v);
                let _ = producer.send(r);
            }
            i += 1;
            producer.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = producer.flush(Duration::from_secs(10));
    })
}

#[test]
fn the_client_library_and_watch_move_to_another_edge_and_resume() {
    let broker = Broker::start();
    let prefix = unique_prefix("client-failover");
    let (dir, path) = write_config(&config(&prefix));
    let raw = format!("{prefix}.raw");
    create_topic(&broker, &raw, 2);
    let transform = spawn_pricefeed(&broker, &path, &["transform"], dir.path());
    wait_ready(&transform, Duration::from_secs(60));
    let mut a = spawn_pricefeed(&broker, &path, &["edge", "--demo"], dir.path());
    let b = spawn_pricefeed(&broker, &path, &["edge", "--demo"], dir.path());
    wait_ready(&a, Duration::from_secs(60));
    wait_ready(&b, Duration::from_secs(60));
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = feed(&broker, raw, stop.clone());

    // The client library: it reports the node it uses; that node is killed.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut node = Command::new("node")
        .arg(root.join("tests/browser/node-failover.mjs"))
        .env(
            "PRICEFEED_URLS",
            format!(
                "http://127.0.0.1:{},http://127.0.0.1:{}",
                a.http_port, b.http_port
            ),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (Node.js 20+)");
    let mut out = String::new();
    for line in BufReader::new(node.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(url) = line.strip_prefix("KILL ") {
            assert_eq!(url, format!("ws://127.0.0.1:{}/ws", a.http_port));
            a.kill9();
        }
        out.push_str(&line);
        out.push('\n');
    }
    let status = node.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut node.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        status.success() && out.contains("client failover: all passed"),
        "{out}\n{err}"
    );

    // `pricefeed watch` with a new node and b: the new node is killed after 40 prices.
    let mut c = spawn_pricefeed(&broker, &path, &["edge"], dir.path());
    wait_ready(&c, Duration::from_secs(60));
    let urls = format!(
        "ws://127.0.0.1:{}/ws,ws://127.0.0.1:{}/ws",
        c.http_port, b.http_port
    );
    let mut watch = Command::new(env!("CARGO_BIN_EXE_pricefeed"))
        .arg("--config")
        .arg(&path)
        .args(["watch", "--url", &urls, "--topics", "vip", "--count", "200"])
        .env("PRICEFEED_JWT_SECRET", ws::SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut prices = 0;
    let mut lines = Vec::new();
    for line in BufReader::new(watch.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.starts_with("price") {
            prices += 1;
            if prices == 40 {
                c.kill9();
            }
        }
        lines.push(line);
    }
    assert!(watch.wait().unwrap().success(), "{}", lines.join("\n"));
    let text = lines.join("\n");
    assert!(
        text.contains(&format!("connected ws://127.0.0.1:{}/ws", b.http_port)),
        "{text}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains("200 prices, 0 gaps, 0 duplicates, 1 failovers")),
        "{text}"
    );
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
}
