//! Per-client throttling with a real edge and a burst of prices through a transform: a client
//! that asks for `maxRate` gets at most that many prices per second per symbol, the latest one
//! held and marked conflated when it stood in for others, and it always ends on the latest
//! price; a token's `max_rate` is a ceiling the client cannot raise; a throttled resume starts
//! from a snapshot.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::ws::{SECRET, Ws, unix_now};
use common::*;
use pricefeed::edge::auth::{Claims, sign_hs256};
use serde_json::{Value, json};
use tokio::sync::watch;

const PARTITIONS: i32 = 2;
const SYMBOLS: [&str; 3] = ["EURUSD", "GBPUSD", "USDJPY"];

fn token(max_rate: Option<f64>) -> String {
    let claims = Claims {
        sub: "tina".into(),
        channels: vec!["vip".into()],
        symbols: None,
        publish: false,
        exp: (unix_now() + 600) as u64,
        nbf: None,
        max_rate,
        iss: None,
        aud: None,
    };
    sign_hs256(&claims, SECRET.as_bytes()).unwrap()
}

/// One throttled client: what it received, per symbol, with the time it arrived.
struct Client {
    ws: Ws,
    interval: Duration,
    got: BTreeMap<String, Vec<(Instant, Value)>>,
}

impl Client {
    async fn subscribe(port: u16, tok: &str, max_rate: Option<f64>) -> (Client, Value) {
        let mut ws = Ws::connect(port, "/ws").await;
        ws.setup(tok).await;
        let mut sub = json!({"type": "subscribe", "topic": "vip"});
        if let Some(r) = max_rate {
            sub["maxRate"] = json!(r);
        }
        ws.send(sub).await;
        let subscribed = ws.expect("subscribed").await;
        ws.expect("snapshot").await;
        let rate = subscribed["maxRate"]
            .as_f64()
            .expect("a throttled subscription");
        let interval = Duration::from_secs_f64(1.0 / rate);
        let client = Client {
            ws,
            interval,
            got: BTreeMap::new(),
        };
        (client, subscribed)
    }

    /// Reads as prices arrive (so that arrival times mean something) until every symbol's last
    /// price is the one `target` comes to name (by seqNo), then for two more intervals to see
    /// that nothing else comes.
    async fn read_to(mut self, target: watch::Receiver<Option<BTreeMap<String, i64>>>) -> Client {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut quiet_until: Option<Instant> = None;
        loop {
            let last = target.borrow().clone().unwrap_or_default();
            let done = !last.is_empty()
                && last.iter().all(|(s, seq)| {
                    self.got
                        .get(s)
                        .and_then(|v| v.last())
                        .is_some_and(|(_, m)| m["seqNo"].as_i64() == Some(*seq))
                });
            if done && quiet_until.is_none() {
                quiet_until = Some(Instant::now() + self.interval * 2);
            }
            let now = Instant::now();
            if quiet_until.is_some_and(|q| now >= q) {
                return self;
            }
            assert!(now < deadline, "never reached the latest prices: {last:?}");
            let wait = quiet_until.map_or(Duration::from_millis(200), |q| q - now);
            let Some(v) = self.ws.next(wait).await else {
                assert!(self.ws.ended.is_none(), "ended: {:?}", self.ws.ended);
                continue;
            };
            assert_eq!(v["type"], "message", "{v}");
            let symbol = v["data"]["symbol"].as_str().unwrap().to_string();
            self.got
                .entry(symbol)
                .or_default()
                .push((Instant::now(), v));
        }
    }

    /// Never more than the rate per symbol: over any run of its prices, one per interval plus
    /// the first (with a little slack for how the network spaces arrivals); per symbol the
    /// seqNos rise; some prices stood in for skipped ones. Returns the prices received.
    fn check(&self, label: &str) -> usize {
        // Arrival times jitter with the network and the test's own scheduling: half an
        // interval of slack, which still allows no extra price.
        let slack = self.interval / 2;
        let mut total = 0;
        let mut conflated = 0;
        for (symbol, got) in &self.got {
            let (first, last) = (got[0].0, got[got.len() - 1].0);
            let allowed = ((last - first + slack).as_secs_f64() / self.interval.as_secs_f64())
                .floor() as usize
                + 1;
            assert!(
                got.len() <= allowed,
                "{label}: {} prices of {symbol} in {:?} at one per {:?}",
                got.len(),
                last - first,
                self.interval
            );
            let seqs: Vec<i64> = got
                .iter()
                .map(|(_, v)| v["seqNo"].as_i64().unwrap())
                .collect();
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{label}: {seqs:?}");
            conflated += got.iter().filter(|(_, v)| v["conflated"] == true).count();
            total += got.len();
        }
        assert!(
            conflated > 0,
            "{label}: a burst skips prices, marked as conflated"
        );
        total
    }
}

/// Produces prices of [`SYMBOLS`] at about 600 a second for `length`; returns how many.
fn burst(brokers: &str, raw: &str, length: Duration) -> usize {
    use rdkafka::config::FromClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let settings = pricefeed::kafka::KafkaSettings {
        brokers: brokers.into(),
        options: vec![],
    };
    let producer = BaseProducer::from_config(&settings.producer_config()).unwrap();
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < length {
        for _ in 0..30 {
            n += 1;
            let s = n % SYMBOLS.len();
            let v = format!(
                r#"{{"symbol":"{}","bid":"1.{:05}","ask":"1.{:05}"}}"#,
                SYMBOLS[s],
                10_000 + n,
                10_004 + n
            );
            let r = BaseRecord::to(raw)
                .partition((s % PARTITIONS as usize) as i32)
                .key(SYMBOLS[s])
                .payload(&v);
            producer.send(r).map_err(|(e, _)| e).unwrap();
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(50));
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    n
}

#[test]
fn throttled_clients_get_at_most_their_rate_per_symbol_and_end_on_the_latest_price() {
    let broker = Broker::start();
    let prefix = unique_prefix("edge-throttle");
    let config = format!(
        "{}\n{}[channels.vip]\nmarkup = {{ unit = \"pips\", bid = \"0.1\", ask = \"0.1\" }}\n",
        kafka_table(&prefix, PARTITIONS),
        instruments(&SYMBOLS)
    );
    let (dir, path) = write_config(&config);
    let (raw, vip) = (format!("{prefix}.raw"), format!("{prefix}.vip"));
    create_topic(&broker, &raw, PARTITIONS);
    let edge = spawn_pricefeed(&broker, &path, &["run"], dir.path());
    wait_ready(&edge, Duration::from_secs(60));
    let port = edge.http_port;

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Bad rates are refused with a specific error, and the connection goes on.
        let mut ws = Ws::connect(port, "/ws").await;
        ws.setup(&token(None)).await;
        ws.send(json!({"type": "subscribe", "topic": "vip", "maxRate": 0}))
            .await;
        let e = ws.expect_error("bad_request").await;
        assert!(e["message"].as_str().unwrap().contains("maxRate"), "{e}");
        ws.send(json!({"type": "subscribe", "topic": "vip", "maxRate": "fast"}))
            .await;
        ws.expect_error("bad_request").await;
        let mut bad_token = Ws::connect(port, "/ws").await;
        bad_token
            .send(json!({"type": "setup", "token": token(Some(0.0))}))
            .await;
        let e = bad_token.expect_error("unauthorized").await;
        assert!(e["message"].as_str().unwrap().contains("max_rate"), "{e}");

        // A: asks for 4 per second. B: asks for 50 under a token capped at 2. C: a token
        // capped at 2 and no rate asked. D: not throttled (for contrast).
        let (a, sa) = Client::subscribe(port, &token(None), Some(4.0)).await;
        let (b, sb) = Client::subscribe(port, &token(Some(2.0)), Some(50.0)).await;
        let (c, _) = Client::subscribe(port, &token(Some(2.0)), None).await;
        assert_eq!(sa["maxRate"], 4.0);
        assert_eq!(sb["maxRate"], 2.0, "the token's ceiling wins: {sb}");
        let (target_tx, target) = watch::channel(None);
        let readers: Vec<_> = [a, b, c]
            .into_iter()
            .map(|cl| tokio::spawn(cl.read_to(target.clone())))
            .collect();
        let mut d = Ws::connect(port, "/ws").await;
        d.setup(&token(None)).await;
        d.send(json!({"type": "subscribe", "topic": "vip"})).await;
        assert!(d.expect("subscribed").await.get("maxRate").is_none());

        // A burst: 3 s of prices at about 600 a second over three symbols.
        let n = tokio::task::spawn_blocking({
            let (addr, raw) = (broker.addr.clone(), raw.clone());
            move || burst(&addr, &raw, Duration::from_secs(3))
        })
        .await
        .unwrap();
        let records = wait_for(Duration::from_secs(60), "every price on vip", || {
            let r = read_all(&broker, &vip, PARTITIONS);
            (r.len() == n).then_some(r)
        });
        // The latest price of each symbol, by seqNo and value.
        let mut last: BTreeMap<String, (i64, Value)> = BTreeMap::new();
        for r in &records {
            let v = r.json();
            last.insert(v["symbol"].as_str().unwrap().into(), (r.offset, v));
        }
        let last_seq: BTreeMap<String, i64> =
            last.iter().map(|(s, (o, _))| (s.clone(), *o)).collect();
        target_tx.send(Some(last_seq)).unwrap();
        let mut clients = Vec::new();
        for r in readers {
            clients.push(r.await.expect("reader"));
        }
        let [a, b, c] = <[Client; 3]>::try_from(clients).ok().unwrap();
        assert_eq!(a.interval, Duration::from_millis(250));
        for (label, client) in [("A", &a), ("B", &b), ("C", &c)] {
            let total = client.check(label);
            assert!(total < n / 10, "{label}: {total} of {n} prices");
            for (symbol, (_, value)) in &last {
                let (_, m) = client.got[symbol].last().unwrap();
                assert_eq!(&m["data"], value, "{label} ends on the latest {symbol}");
            }
        }
        assert!(b.interval >= Duration::from_millis(500) && c.interval == b.interval);

        // The unthrottled client gets every price.
        let mut plain = 0;
        while plain < n {
            let v = d.next(Duration::from_secs(30)).await.expect("every price");
            if v["type"] == "message" {
                plain += 1;
                assert!(v.get("conflated").is_none(), "{v}");
            }
        }

        // A throttled resume starts over from a snapshot of the latest prices.
        let mut r = Ws::connect(port, "/ws").await;
        r.setup(&token(Some(2.0))).await;
        r.send(json!({"type": "resume", "topic": "vip", "from": {"0": 0, "1": 0}}))
            .await;
        r.expect("subscribed").await;
        let snap = r.expect("snapshot").await;
        let prices = snap["prices"].as_array().unwrap();
        for (symbol, (seq, _)) in &last {
            assert!(
                prices
                    .iter()
                    .any(|p| p["data"]["symbol"] == *symbol && p["seqNo"] == *seq),
                "{symbol}@{seq} in {snap}"
            );
        }
        assert!(
            r.next(Duration::from_millis(500)).await.is_none(),
            "nothing is replayed"
        );
    });
}
