//! The WebSocket edge: reads the channel topics ([`reader`] → [`hub`]) and serves each client
//! the view its token allows ([`auth`], [`session`], [`subscription`]), with the Kafka offset as
//! seqNo, snapshots, resume ([`replay`] when memory does not reach back far enough), and
//! publishing ([`publish`]). The wire format is in [`protocol`] and docs/protocol.md.

pub mod auth;
pub mod bodies;
pub mod demo;
pub mod http;
pub mod hub;
mod outbox;
mod probe;
pub mod protocol;
pub mod publish;
pub mod reader;
pub mod replay;
mod requests;
pub mod session;
pub mod subscription;
mod upgrade;
pub mod wire;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustc_hash::FxHashMap;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::EdgeSettings;
use crate::config::reload::LiveRules;
use crate::kafka::KafkaSettings;
use crate::telemetry;
use auth::{ApiKeys, Verifier};
use hub::{Hub, Symbols, TopicLog};
use publish::Publisher;
use replay::ReplayPool;

/// How to start an edge.
#[derive(Clone, Debug)]
pub struct EdgeOptions {
    pub kafka: KafkaSettings,
    /// Relative key files in `[auth]` are resolved against this directory.
    pub config_dir: PathBuf,
    /// Serve only these channels (default: every channel of the config).
    pub channels: Option<Vec<String>>,
    /// Names this process in session ids (default: a random id).
    pub node_id: Option<String>,
    /// Demo mode: `GET /demo/session` gives out client tokens ([`demo`]).
    pub demo: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error(transparent)]
    Auth(#[from] auth::AuthSetupError),
    #[error("unknown channel {0:?} in --channels")]
    UnknownChannel(String),
    #[error(transparent)]
    Kafka(#[from] crate::kafka::KafkaFailure),
}

/// Counters behind `/stats`.
#[derive(Default)]
pub struct Stats {
    connections: AtomicI64,
    subscriptions: AtomicI64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
}

impl Stats {
    /// Counts a new connection unless the edge is at `max`.
    pub fn connection_opened(&self, max: usize) -> bool {
        let n = self.connections.fetch_add(1, Ordering::AcqRel);
        if n >= max as i64 {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        telemetry::edge_connections(1.0);
        true
    }

    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
        telemetry::edge_connections(-1.0);
    }

    pub fn subscriptions(&self, delta: i64) {
        self.subscriptions.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn add_in(&self, n: u64) {
        self.messages_in.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_out(&self, n: u64) {
        self.messages_out.fetch_add(n, Ordering::Relaxed);
    }

    pub fn connections(&self) -> i64 {
        self.connections.load(Ordering::Acquire)
    }
}

/// The wake-up of every open session, so that shutdown reaches them all without each one
/// polling a shared cancellation token on every turn of its loop.
#[derive(Default)]
pub struct Sessions {
    closing: AtomicBool,
    wakers: Mutex<FxHashMap<u64, Arc<Notify>>>,
}

impl Sessions {
    pub fn register(&self, id: u64, waker: Arc<Notify>) {
        self.wakers.lock().expect("sessions lock").insert(id, waker);
    }

    pub fn unregister(&self, id: u64) {
        self.wakers.lock().expect("sessions lock").remove(&id);
    }

    /// True once the edge is shutting down.
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    fn close_all(&self) {
        self.closing.store(true, Ordering::Release);
        for w in self.wakers.lock().expect("sessions lock").values() {
            w.notify_one();
        }
    }
}

/// Everything sessions share.
pub struct Edge {
    pub hub: Arc<Hub>,
    pub verifier: Verifier,
    pub api_keys: ApiKeys,
    pub rules: LiveRules,
    pub settings: EdgeSettings,
    pub leeway_s: u64,
    pub replay: Arc<ReplayPool>,
    pub publisher: Arc<Publisher>,
    pub stats: Stats,
    /// Source timestamp → socket write, and receipt by this edge → socket write.
    pub latency: metrics::Histogram,
    pub internal_latency: metrics::Histogram,
    /// Cancelled on shutdown: sessions (told through [`Sessions`]) send a Close frame and end.
    pub shutdown: CancellationToken,
    pub sessions: Sessions,
    /// Sessions and publish tasks, awaited on shutdown.
    pub tasks: TaskTracker,
    pub node_id: String,
    /// Set in demo mode.
    pub demo: Option<demo::DemoSigner>,
    next_session: AtomicU64,
    /// Set by the reader when Kafka calls fail; cleared when they succeed again.
    pub kafka_error: std::sync::atomic::AtomicBool,
}

impl Edge {
    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Ready: every partition was read to the end it had at start, and Kafka answers.
    pub fn ready(&self) -> bool {
        self.hub.caught_up() && !self.kafka_error.load(Ordering::Acquire)
    }

    /// Stops accepting work, closes sessions and waits up to the grace period for them.
    pub async fn drain(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        let grace = Duration::from_millis(self.settings.shutdown_grace_ms);
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.stats.connections(),
                "sessions still open after the shutdown grace period"
            );
        }
    }
}

/// Connects to Kafka, fills the hub and starts the reader. Returns `None` when `shutdown` fires
/// while waiting for the channel topics.
pub async fn start(
    opts: EdgeOptions,
    rules: LiveRules,
    shutdown: CancellationToken,
) -> Result<Option<Arc<Edge>>, EdgeError> {
    let current = rules.load_full();
    let verifier = Verifier::from_settings(&current.auth, &opts.config_dir)?;
    let demo = if opts.demo {
        tracing::warn!("demo mode: GET /demo/session gives a token for every channel to anyone");
        Some(demo::DemoSigner::from_settings(&current.auth)?)
    } else {
        None
    };
    let api_keys = ApiKeys::from_env(&current.auth.api_keys_env)?;
    let channels: Vec<&crate::config::Channel> = match &opts.channels {
        None => current.channels.iter().collect(),
        Some(names) => names
            .iter()
            .map(|n| {
                current
                    .channel(n)
                    .ok_or_else(|| EdgeError::UnknownChannel(n.clone()))
            })
            .collect::<Result<_, _>>()?,
    };
    let topics: Vec<String> = channels.iter().map(|c| c.topic.clone()).collect();
    let Some(counts) = reader::wait_for_topics(&opts.kafka, &topics, &shutdown).await? else {
        return Ok(None);
    };
    let symbols = Symbols::default();
    for ins in &current.instruments {
        symbols.intern(&ins.symbol);
    }
    let logs = channels
        .iter()
        .zip(&counts)
        .map(|(c, n)| TopicLog::new(&c.name, &c.topic, *n))
        .collect();
    let settings = current.edge.clone();
    let hub = Arc::new(Hub::new(
        logs,
        symbols,
        settings.history_per_partition,
        settings.snapshot_lookback_records,
    ));
    let kafka = opts.kafka.clone();
    let hub2 = hub.clone();
    let (consumer, targets) = tokio::task::spawn_blocking(move || reader::assign(&kafka, &hub2))
        .await
        .map_err(|e| crate::kafka::KafkaFailure::Other(format!("assign task: {e}")))??;
    let publisher = Publisher::new(
        &opts.kafka,
        rules.clone(),
        Duration::from_millis(settings.dedup_window_ms),
    )?;
    let node_id = opts
        .node_id
        .unwrap_or_else(|| format!("{:08x}", rand::random::<u32>()));
    telemetry::edge_info(&node_id);
    let edge = Arc::new(Edge {
        hub: hub.clone(),
        verifier,
        api_keys,
        leeway_s: current.auth.leeway_s,
        rules,
        settings,
        replay: ReplayPool::new(opts.kafka.clone()),
        publisher: Arc::new(publisher),
        stats: Stats::default(),
        latency: telemetry::edge_latency(),
        internal_latency: telemetry::edge_internal_latency(),
        shutdown: shutdown.child_token(),
        sessions: Sessions::default(),
        tasks: TaskTracker::new(),
        node_id,
        demo,
        next_session: AtomicU64::new(1),
        kafka_error: false.into(),
    });
    let closer = edge.clone();
    tokio::spawn(async move {
        closer.shutdown.cancelled().await;
        closer.sessions.close_all();
    });
    let (probe_kafka, probe_edge, probe_shutdown) =
        (opts.kafka.clone(), edge.clone(), shutdown.clone());
    // Channels added to channels.toml: found by the probe, read by the reader.
    let (added_tx, added_rx) = std::sync::mpsc::channel();
    let serves_every_channel = opts.channels.is_none();
    std::thread::Builder::new()
        .name("edge-probe".into())
        .spawn(move || {
            probe::probe_loop(
                &probe_kafka,
                probe_edge,
                added_tx,
                serves_every_channel,
                probe_shutdown,
            )
        })
        .map_err(|e| crate::kafka::KafkaFailure::Other(format!("starting the probe: {e}")))?;
    let reader_edge = edge.clone();
    let reader_shutdown = shutdown.clone();
    std::thread::Builder::new()
        .name("edge-reader".into())
        .spawn(move || reader::run(consumer, targets, reader_edge, added_rx, reader_shutdown))
        .map_err(|e| crate::kafka::KafkaFailure::Other(format!("starting the reader: {e}")))?;
    tracing::info!(
        channels = %channels.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(","),
        node = %edge.node_id,
        "edge started"
    );
    Ok(Some(edge))
}
