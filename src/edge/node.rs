//! What every session of an edge node shares: the in-memory log, the verifier and API keys, the
//! live rules and settings, the replay pool and publisher, counters, and the registry of open
//! sessions that shutdown goes through.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustc_hash::FxHashMap;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::EdgeSettings;
use crate::config::reload::LiveRules;
use crate::edge::auth::{ApiKeys, Verifier};
use crate::edge::demo::DemoSigner;
use crate::edge::kafka::replay::ReplayPool;
use crate::edge::log::topic::Hub;
use crate::edge::publish::Publisher;
use crate::telemetry;

/// How long shutdown waits for the reader and probe threads.
const THREAD_JOIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters behind `/stats`.
#[derive(Default)]
pub struct Stats {
    connections: AtomicI64,
    pub subscriptions: AtomicI64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
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

    pub fn close_all(&self) {
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
    /// Sessions, publish tasks and replays, awaited on shutdown.
    pub tasks: TaskTracker,
    /// The reader and probe threads, joined on shutdown.
    pub threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    pub node_id: String,
    /// Set in demo mode.
    pub demo: Option<DemoSigner>,
    pub next_session: AtomicU64,
    /// Set by the reader when Kafka calls fail; cleared when they succeed again.
    pub kafka_error: Arc<AtomicBool>,
    /// How to reach Kafka (for `GET /audit`, which reads with clients of its own).
    pub kafka: crate::kafka::KafkaSettings,
}

impl Edge {
    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Ready: every partition was read to the end it had at start, and Kafka answers.
    pub fn ready(&self) -> bool {
        self.hub.caught_up() && !self.kafka_error.load(Ordering::Acquire) && !self.hub.stalled()
    }

    /// A thread of this edge, joined by [`Edge::drain`].
    pub fn track_thread(&self, t: std::thread::JoinHandle<()>) {
        self.threads.lock().expect("threads lock").push(t);
    }

    /// Stops accepting work, closes sessions and waits up to the grace period for them; then
    /// joins the reader and probe threads (they stop with the process's shutdown token).
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
        let threads = std::mem::take(&mut *self.threads.lock().expect("threads lock"));
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                let name = t.thread().name().unwrap_or("edge").to_string();
                if t.join().is_err() {
                    tracing::error!(thread = %name, "an edge thread panicked");
                }
            }
        });
        // A Kafka call may hold a thread for its timeout (a few seconds) when the broker is gone.
        if tokio::time::timeout(THREAD_JOIN_TIMEOUT, joined)
            .await
            .is_err()
        {
            tracing::warn!("the edge's Kafka threads did not stop in time");
        }
    }
}
