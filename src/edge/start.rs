//! Starting an edge node: wait for the channel topics, position the reader, build the shared
//! [`Edge`], and start the reader and probe threads.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::reload::LiveRules;
use crate::edge::auth::{self, ApiKeys, Verifier};
use crate::edge::demo::DemoSigner;
use crate::edge::kafka::recover::StallFault;
use crate::edge::kafka::replay::ReplayPool;
use crate::edge::kafka::{position, probe, reader};
use crate::edge::log::symbols::Symbols;
use crate::edge::log::topic::{Hub, TopicLog};
use crate::edge::node::{Edge, Sessions, Stats};
use crate::edge::publish::Publisher;
use crate::kafka::KafkaSettings;
use crate::telemetry;

/// How to start an edge.
#[derive(Clone)]
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
    /// The HS256 secret, for a program that embeds the edge and has it at hand (`None`: the
    /// environment variable `[auth] secret_env`, as the command line does).
    pub hs256_secret: Option<String>,
    /// The HTTP publish API keys as `name:key,…`, for a program that embeds the edge (`None`:
    /// the environment variable `[auth] api_keys_env`).
    pub api_keys: Option<String>,
    /// Fault injection for tests: stall one partition's fetching ([`StallFault`]).
    #[doc(hidden)]
    pub stall_fault: Option<StallFault>,
}

/// Everything but the secret, which is never printed.
impl std::fmt::Debug for EdgeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeOptions")
            .field("kafka", &self.kafka)
            .field("config_dir", &self.config_dir)
            .field("channels", &self.channels)
            .field("node_id", &self.node_id)
            .field("demo", &self.demo)
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| "(given)"),
            )
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error(transparent)]
    Auth(#[from] auth::AuthSetupError),
    #[error("unknown channel {0:?} in --channels")]
    UnknownChannel(String),
    #[error(transparent)]
    Kafka(#[from] crate::kafka::KafkaFailure),
    #[error("starting the {what} thread: {source}")]
    Thread {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("a start-up task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Connects to Kafka, fills the hub and starts the reader. Returns `None` when `shutdown` fires
/// while waiting for the channel topics.
pub async fn start(
    opts: EdgeOptions,
    rules: LiveRules,
    shutdown: CancellationToken,
) -> Result<Option<Arc<Edge>>, EdgeError> {
    let current = rules.load_full();
    let verifier = Verifier::from_settings(
        &current.auth,
        &opts.config_dir,
        opts.hs256_secret.as_deref(),
    )?;
    let demo = if opts.demo {
        tracing::warn!("demo mode: GET /demo/session gives a token for every channel to anyone");
        Some(DemoSigner::from_settings(
            &current.auth,
            opts.hs256_secret.as_deref(),
        )?)
    } else {
        None
    };
    let api_keys = match &opts.api_keys {
        Some(text) => ApiKeys::parse(text)?,
        None => ApiKeys::from_env(&current.auth.api_keys_env)?,
    };
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
    let Some(found) = position::wait_for_topics(&opts.kafka, &topics, &shutdown).await? else {
        return Ok(None);
    };
    let symbols = Symbols::default();
    for ins in &current.instruments {
        symbols.intern(&ins.symbol);
    }
    let logs = channels
        .iter()
        .zip(&found.counts)
        .map(|(c, n)| {
            TopicLog::new(&c.name, &c.topic, *n).with_epoch(found.epochs.get(&c.topic).cloned())
        })
        .collect();
    let settings = current.edge.clone();
    let replay_rate = settings.replay_records_per_second;
    let hub = Arc::new(Hub::new(logs, symbols, settings.history_per_partition));
    let kafka = opts.kafka.clone();
    let hub2 = hub.clone();
    let (consumer, targets) =
        tokio::task::spawn_blocking(move || position::assign(&kafka, &hub2)).await??;
    let publisher = Publisher::new(
        &opts.kafka,
        rules.clone(),
        Duration::from_millis(settings.dedup_window_ms),
    )?;
    let node_id = opts
        .node_id
        .unwrap_or_else(|| format!("{:08x}", rand::random::<u32>()));
    telemetry::edge_info(&node_id);
    let tasks = TaskTracker::new();
    let edge = Arc::new(Edge {
        hub: hub.clone(),
        verifier,
        api_keys,
        leeway_s: current.auth.leeway_s,
        rules,
        settings,
        replay: ReplayPool::new(opts.kafka.clone(), tasks.clone(), replay_rate),
        publisher: Arc::new(publisher),
        stats: Stats::default(),
        latency: telemetry::edge_latency(),
        internal_latency: telemetry::edge_internal_latency(),
        shutdown: shutdown.child_token(),
        sessions: Sessions::default(),
        tasks,
        threads: Default::default(),
        node_id,
        demo,
        next_session: AtomicU64::new(1),
        kafka_error: Default::default(),
        kafka: opts.kafka.clone(),
    });
    let closer = edge.clone();
    edge.tasks.spawn(async move {
        closer.shutdown.cancelled().await;
        closer.sessions.close_all();
    });
    let (probe_kafka, probe_hub, probe_rules, probe_error, probe_shutdown) = (
        opts.kafka.clone(),
        edge.hub.clone(),
        edge.rules.clone(),
        edge.kafka_error.clone(),
        shutdown.clone(),
    );
    // Channels added to channels.toml: found by the probe, read by the reader.
    let (added_tx, added_rx) = std::sync::mpsc::channel();
    let serves_every_channel = opts.channels.is_none();
    let probe = std::thread::Builder::new()
        .name("edge-probe".into())
        .spawn(move || {
            probe::probe_loop(
                &probe_kafka,
                probe_hub,
                probe_rules,
                probe_error,
                added_tx,
                serves_every_channel,
                probe_shutdown,
            )
        })
        .map_err(|source| EdgeError::Thread {
            what: "probe",
            source,
        })?;
    edge.track_thread(probe);
    let (reader_hub, reader_error) = (edge.hub.clone(), edge.kafka_error.clone());
    let reader_opts = reader::ReaderOptions {
        coalesce: Duration::from_millis(edge.settings.coalesce_ms),
        fault: opts.stall_fault.clone(),
    };
    let reader_shutdown = shutdown.clone();
    let reader = std::thread::Builder::new()
        .name("edge-reader".into())
        .spawn(move || {
            reader::run(
                consumer,
                targets,
                reader_hub,
                reader_error,
                added_rx,
                reader_opts,
                reader_shutdown,
            )
        })
        .map_err(|source| EdgeError::Thread {
            what: "reader",
            source,
        })?;
    edge.track_thread(reader);
    tracing::info!(
        channels = %channels.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(","),
        node = %edge.node_id,
        "edge started"
    );
    Ok(Some(edge))
}
