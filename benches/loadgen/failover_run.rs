//! The scale-out fault scenario, shared by `tests/edge_failover.rs` (CI size) and
//! `benches/failover.rs` (full size): three `pricefeed edge` processes and a transform worker on
//! Apache Kafka, prices flowing through the transform, and failover clients
//! ([`super::failover`]) spread over the three edges. Then one edge is SIGKILLed (and started
//! again), and all three are restarted one by one (SIGTERM, start on the same port). At the end
//! every client must hold the last record of every partition, with no gap and no duplicate seen
//! on the way.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pricefeed::kafka::KafkaSettings;

use super::client::MAX_PARTITIONS;
use super::failover::{Positions, Tally, run};
use super::pricefeed::{PARTITIONS, SECRET, generator, symbols};
use super::{free_port, http_get};

/// The size of a run.
pub struct Size {
    pub clients: usize,
    /// Raw prices per second (each goes to every client: one channel, every symbol).
    pub rate: u64,
}

/// What a run measured.
#[derive(Debug)]
pub struct Report {
    pub clients: usize,
    pub subscribed: u64,
    pub failovers: u64,
    pub resumed: u64,
    /// The longest time a client took from losing its edge to being resumed on another.
    pub max_failover_ms: u64,
    /// Per phase (the kill, then each restart): how long until every client was live again.
    pub phases_ms: Vec<(String, u64)>,
    pub frames: u64,
    pub gaps: u64,
    pub duplicates: u64,
    pub resume_gaps: u64,
    pub conflated: u64,
    /// Clients whose last seqNo differs from the partition's last record at the end.
    pub behind_at_end: usize,
    pub records: u64,
}

/// A config for the run: one channel (`bench`, every symbol) on topics named after `prefix`.
pub fn config(prefix: &str, symbols: &[String]) -> String {
    let mut s = format!(
        "[kafka]\nraw_topic = \"{prefix}.raw\"\nchannel_topic_prefix = \"{prefix}.\"\n\
         dead_letter_topic = \"{prefix}.dlq\"\npartitions = {PARTITIONS}\n\n\
         [edge]\nmax_connections = 60000\nshutdown_grace_ms = 2000\n\n"
    );
    for sym in symbols {
        s.push_str(&format!(
            "[instruments.{sym}]\ntick = \"0.00001\"\npip = \"0.0001\"\nprecision = 5\n\n"
        ));
    }
    s.push_str("[channels.bench]\nmarkup = { unit = \"pips\", bid = \"0.1\", ask = \"0.1\" }\n");
    s
}

/// A `pricefeed` process on a fixed port, killed on drop.
struct Proc {
    child: Child,
    port: u16,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[&str], brokers: &str, config: &Path, port: u16, log: PathBuf) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_pricefeed"))
        .arg("--config")
        .arg(config)
        .args(["--brokers", brokers])
        .args(args)
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .env("PRICEFEED_JWT_SECRET", SECRET)
        .env("RUST_LOG", "info,librdkafka=error,rdkafka=error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn pricefeed");
    let p = Proc { child, port };
    wait_until(Duration::from_secs(60), "pricefeed ready", || {
        http_get(port, "/readyz") == "ready\n"
    });
    p
}

fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) -> u64 {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed().as_millis() as u64
}

/// Runs the scenario against the broker at `brokers`; logs go to `logs`.
pub fn scenario(brokers: &str, prefix: &str, size: Size, logs: &Path) -> Report {
    let symbols = symbols(10);
    let config_path = logs.join("channels.toml");
    std::fs::write(&config_path, config(prefix, &symbols)).unwrap();
    let settings = KafkaSettings {
        brokers: brokers.to_string(),
        options: Vec::new(),
    };
    let rt = super::pricefeed::runtime();
    let raw = format!("{prefix}.raw");
    super::pricefeed::create_topics(&rt, &settings, std::slice::from_ref(&raw));
    let group = format!("{prefix}.pricefeed-transform");
    let _transform = spawn(
        &["transform", "--no-watch", "--group-id", &group],
        brokers,
        &config_path,
        free_port(),
        logs.join("transform.log"),
    );
    let ports: Arc<Vec<u16>> = Arc::new((0..3).map(|_| free_port()).collect());
    let start_edge = |i: usize, run: usize| {
        let name = format!("e{i}");
        spawn(
            &["edge", "--no-watch", "--node-id", &name],
            brokers,
            &config_path,
            ports[i],
            logs.join(format!("edge-{i}-{run}.log")),
        )
    };
    let mut edges: Vec<Option<Proc>> = (0..3).map(|i| Some(start_edge(i, 0))).collect();

    let stop_feed = Arc::new(AtomicBool::new(false));
    let feed = generator(
        settings.clone(),
        raw.clone(),
        symbols.clone(),
        size.rate,
        true,
        stop_feed.clone(),
    );
    let tally = Arc::new(Tally::default());
    let token = super::pricefeed::token();
    let handles: Vec<_> = (0..size.clients)
        .map(|i| {
            let t = rt.spawn(run(
                ports.clone(),
                i % 3,
                token.clone(),
                "bench".to_string(),
                tally.clone(),
            ));
            if i % 500 == 499 {
                std::thread::sleep(Duration::from_millis(50));
            }
            t
        })
        .collect();
    let n = size.clients as u64;
    wait_until(Duration::from_secs(120), "every client subscribed", || {
        tally.subscribed.load(Ordering::Relaxed) == n
    });
    std::thread::sleep(Duration::from_secs(2));

    // A node's clients have all moved once none holds a subscription there and every client
    // holds one somewhere.
    let moved_off = |tally: &Tally, i: usize| {
        tally.live_on[i].load(Ordering::Relaxed) == 0 && tally.live.load(Ordering::Relaxed) == n
    };
    let mut phases = Vec::new();
    // SIGKILL one edge while prices flow; its clients move to the others.
    edges[0] = None; // killed on drop
    let ms = wait_until(
        Duration::from_secs(60),
        "clients of the killed edge resumed",
        || moved_off(&tally, 0),
    );
    phases.push(("SIGKILL e0".to_string(), ms));
    edges[0] = Some(start_edge(0, 1));
    std::thread::sleep(Duration::from_secs(1));
    // A rolling restart: each edge stopped as an orchestrator would (SIGTERM), then started again.
    for (i, slot) in edges.iter_mut().enumerate() {
        let mut e = slot.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &e.child.id().to_string()])
            .status();
        let _ = e.child.wait();
        let ms = wait_until(
            Duration::from_secs(60),
            "clients of the stopped edge resumed",
            || moved_off(&tally, i),
        );
        phases.push((format!("restart e{i}"), ms));
        *slot = Some(start_edge(i, 2));
        std::thread::sleep(Duration::from_secs(1));
    }

    stop_feed.store(true, Ordering::Relaxed);
    let records = feed.join().unwrap();
    // Every record reaches every client: wait until the frame count stops growing.
    let mut last = u64::MAX;
    wait_until(Duration::from_secs(60), "deliveries to settle", || {
        std::thread::sleep(Duration::from_millis(500));
        let now = tally.frames.load(Ordering::Relaxed);
        let settled = now == last;
        last = now;
        settled
    });
    tally.stop.store(true, Ordering::Relaxed);
    let positions: Vec<Positions> = handles
        .into_iter()
        .map(|h| rt.block_on(h).unwrap_or([-2; MAX_PARTITIONS]))
        .collect();
    let ends = channel_ends(&settings, &format!("{prefix}.bench"));
    let behind_at_end = positions
        .iter()
        .filter(|p| (0..PARTITIONS as usize).any(|i| p[i] != ends[i]))
        .count();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    Report {
        clients: size.clients,
        subscribed: load(&tally.subscribed),
        failovers: load(&tally.failovers),
        resumed: load(&tally.resumed),
        max_failover_ms: load(&tally.max_failover_ms),
        phases_ms: phases,
        frames: load(&tally.frames),
        gaps: load(&tally.gaps),
        duplicates: load(&tally.duplicates),
        resume_gaps: load(&tally.resume_gaps),
        conflated: load(&tally.conflated),
        behind_at_end,
        records,
    }
}

/// The offset of the last record of each partition of `topic` (−1 when empty).
fn channel_ends(settings: &KafkaSettings, topic: &str) -> Vec<i64> {
    let reader = settings.reader().unwrap();
    let mut last = vec![-1i64; PARTITIONS as usize];
    let starts: Vec<_> = (0..PARTITIONS)
        .map(|p| (topic.to_string(), p, pricefeed::kafka::ReadFrom::Last))
        .collect();
    pricefeed::kafka::read_to_end(&reader, &starts, Duration::from_secs(30), |m| {
        use rdkafka::Message;
        let p = m.partition() as usize;
        last[p] = last[p].max(m.offset());
    })
    .unwrap();
    last
}
