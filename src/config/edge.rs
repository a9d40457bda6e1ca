//! The `[auth]` and `[edge]` tables: how the WebSocket edge checks tokens and what it allows a
//! connection to do. Secrets never live in `channels.toml`: the file names the environment
//! variable or key file they come from.

use toml::Value;

use super::walk::{Walker, join};

/// Signature algorithm of the JWTs clients present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// Shared secret (from the environment variable `secret_env`).
    Hs256,
    /// RSA public key (PEM file `public_key_file`).
    Rs256,
    /// P-256 ECDSA public key (PEM file `public_key_file`).
    Es256,
}

/// `[auth]`: JWT verification and HTTP publish API keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSettings {
    pub algorithm: JwtAlgorithm,
    /// HS256: the environment variable that holds the shared secret.
    pub secret_env: String,
    /// RS256/ES256: a PEM public key, relative to the config file's directory.
    pub public_key_file: Option<String>,
    /// When set, tokens must carry this `iss`.
    pub issuer: Option<String>,
    /// When set, tokens must carry this `aud`.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp`, in seconds.
    pub leeway_s: u64,
    /// The environment variable with HTTP publish API keys: `name:key,name2:key2`.
    pub api_keys_env: String,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            algorithm: JwtAlgorithm::Hs256,
            secret_env: "PRICEFEED_JWT_SECRET".into(),
            public_key_file: None,
            issuer: None,
            audience: None,
            leeway_s: 5,
            api_keys_env: "PRICEFEED_API_KEYS".into(),
        }
    }
}

/// `[edge]`: limits and timings of the WebSocket edge. Every limit has a specific error code
/// (see docs/protocol.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeSettings {
    /// Open WebSocket connections per edge process; one more is told `unavailable` and closed
    /// with 1013 (try again later).
    pub max_connections: usize,
    /// Largest client frame accepted; a larger one gets `frame_too_large`.
    pub max_frame_bytes: usize,
    /// Topics one connection may be subscribed to at once.
    pub max_subscriptions: usize,
    /// Client frames per second per connection (a burst of this many is allowed).
    pub messages_per_second: u32,
    /// Records a connection may fall behind on one partition before its channel's
    /// `slow_client` policy applies.
    pub max_lag_records: usize,
    /// Records kept in memory per partition for snapshots and resume; older ones come from Kafka.
    pub history_per_partition: usize,
    /// A write batch that the client has not taken within this long gets the connection dropped.
    pub write_timeout_ms: u64,
    /// The server pings this often; a peer silent for two intervals is dropped.
    pub heartbeat_ms: u64,
    /// A connection must send `setup` within this time.
    pub setup_timeout_ms: u64,
    /// Publish dedup: a messageId seen from the same publisher within this window is acked
    /// `duplicate` and not written again.
    pub dedup_window_ms: u64,
    /// On SIGTERM, sessions get a Close frame and this long to drain.
    pub shutdown_grace_ms: u64,
    /// Kernel send buffer per client socket (0: the OS default, which can grow to several MiB).
    /// Bounds kernel memory per connection and how long a stalled client goes unnoticed.
    pub send_buffer_bytes: usize,
    /// Wake-up coalescing: the reader wakes the sessions of a topic at most once per this many
    /// milliseconds, so that a wake-up (and a socket write per client) carries every record of
    /// the window. 0: every batch the reader reads wakes them at once. Costs up to this much
    /// latency; saves CPU at low rates with many clients (docs/benchmarks.md).
    pub coalesce_ms: u64,
    /// A partition whose position has not moved for this long while Kafka had newer records is
    /// stalled: logged, counted, and re-seeked by the reader (again every this long).
    pub stall_after_ms: u64,
    /// A stall that lasts this long makes `/readyz` answer not ready.
    pub stall_unready_after_ms: u64,
    /// Records per second all Kafka replays of this edge together may send (resumes that reach
    /// back past memory), so that a resume storm leaves the live path its CPU. 0: no limit.
    pub replay_records_per_second: u64,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        EdgeSettings {
            max_connections: 50_000,
            max_frame_bytes: 16 * 1024,
            max_subscriptions: 64,
            messages_per_second: 100,
            max_lag_records: 4096,
            history_per_partition: 10_000,
            write_timeout_ms: 10_000,
            heartbeat_ms: 15_000,
            setup_timeout_ms: 10_000,
            dedup_window_ms: 300_000,
            shutdown_grace_ms: 5_000,
            send_buffer_bytes: 256 * 1024,
            coalesce_ms: 0,
            stall_after_ms: 5_000,
            stall_unready_after_ms: 15_000,
            replay_records_per_second: 0,
        }
    }
}

/// What happens to a client that falls `max_lag_records` behind on a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowClientPolicy {
    /// Skip to the latest price of each symbol, sent with `"conflated": true`.
    Conflate,
    /// Close the connection with `slow_consumer`.
    Close,
}

pub(super) fn parse_slow_client(w: &mut Walker, path: &str, v: Option<&Value>) -> SlowClientPolicy {
    match v.map(|v| (v, w.string(path, v))) {
        None => SlowClientPolicy::Conflate,
        Some((_, Some("conflate"))) => SlowClientPolicy::Conflate,
        Some((_, Some("close"))) => SlowClientPolicy::Close,
        Some((_, Some(other))) => {
            w.error(path, format!("{other:?} is not one of: conflate, close"));
            SlowClientPolicy::Conflate
        }
        Some((_, None)) => SlowClientPolicy::Conflate,
    }
}

pub(super) fn parse_auth(w: &mut Walker, value: Option<&Value>) -> AuthSettings {
    let mut a = AuthSettings::default();
    let Some(table) = value.and_then(|v| w.table("auth", v)) else {
        return a;
    };
    w.only_keys(
        "auth",
        table,
        &[
            "algorithm",
            "secret_env",
            "public_key_file",
            "issuer",
            "audience",
            "leeway_s",
            "api_keys_env",
        ],
    );
    if let Some(v) = table.get("algorithm") {
        match w.string("auth.algorithm", v) {
            Some("HS256") => a.algorithm = JwtAlgorithm::Hs256,
            Some("RS256") => a.algorithm = JwtAlgorithm::Rs256,
            Some("ES256") => a.algorithm = JwtAlgorithm::Es256,
            Some(other) => w.error(
                "auth.algorithm",
                format!("{other:?} is not one of: HS256, RS256, ES256"),
            ),
            None => {}
        }
    }
    let mut text = |key: &str| -> Option<String> {
        let path = join("auth", key);
        let s = table.get(key).and_then(|v| w.string(&path, v))?;
        if s.trim().is_empty() {
            w.error(path, "must not be empty");
            return None;
        }
        Some(s.to_string())
    };
    if let Some(s) = text("secret_env") {
        a.secret_env = s;
    }
    a.public_key_file = text("public_key_file");
    a.issuer = text("issuer");
    a.audience = text("audience");
    if let Some(s) = text("api_keys_env") {
        a.api_keys_env = s;
    }
    if let Some(n) = table
        .get("leeway_s")
        .and_then(|v| w.integer("auth.leeway_s", v, 0, 600))
    {
        a.leeway_s = n as u64;
    }
    match (a.algorithm, &a.public_key_file) {
        (JwtAlgorithm::Hs256, Some(_)) => w.error(
            "auth.public_key_file",
            "only used with RS256 or ES256 (HS256 reads the secret from secret_env)",
        ),
        (JwtAlgorithm::Rs256 | JwtAlgorithm::Es256, None) => w.error(
            "auth.public_key_file",
            "missing: RS256 and ES256 need the PEM public key that verifies tokens",
        ),
        _ => {}
    }
    a
}

pub(super) fn parse_edge(w: &mut Walker, value: Option<&Value>) -> EdgeSettings {
    let mut e = EdgeSettings::default();
    let Some(table) = value.and_then(|v| w.table("edge", v)) else {
        return e;
    };
    const KEYS: [(&str, i64, i64); 17] = [
        ("max_connections", 1, 10_000_000),
        ("max_frame_bytes", 256, 16 << 20),
        ("max_subscriptions", 1, 10_000),
        ("messages_per_second", 1, 1_000_000),
        ("max_lag_records", 16, 10_000_000),
        ("history_per_partition", 16, 10_000_000),
        ("snapshot_lookback_records", 0, 1_000_000_000),
        ("write_timeout_ms", 100, 3_600_000),
        ("heartbeat_ms", 100, 3_600_000),
        ("setup_timeout_ms", 100, 3_600_000),
        ("dedup_window_ms", 0, 86_400_000),
        ("shutdown_grace_ms", 0, 600_000),
        ("send_buffer_bytes", 0, 64 << 20),
        ("coalesce_ms", 0, 1_000),
        ("stall_after_ms", 500, 3_600_000),
        ("stall_unready_after_ms", 500, 86_400_000),
        ("replay_records_per_second", 0, 100_000_000),
    ];
    let names: Vec<&str> = KEYS.iter().map(|k| k.0).collect();
    w.only_keys("edge", table, &names);
    for (key, min, max) in KEYS {
        let Some(n) = table
            .get(key)
            .and_then(|v| w.integer(&join("edge", key), v, min, max))
        else {
            continue;
        };
        let (u, ms) = (n as usize, n as u64);
        match key {
            "max_connections" => e.max_connections = u,
            "max_frame_bytes" => e.max_frame_bytes = u,
            "max_subscriptions" => e.max_subscriptions = u,
            "messages_per_second" => e.messages_per_second = n as u32,
            "max_lag_records" => e.max_lag_records = u,
            "history_per_partition" => e.history_per_partition = u,
            "snapshot_lookback_records" => tracing::warn!(
                "edge.snapshot_lookback_records is no longer used and can be removed: an edge \
                 learns every symbol's latest price from the channel's latest-price topic"
            ),
            "write_timeout_ms" => e.write_timeout_ms = ms,
            "heartbeat_ms" => e.heartbeat_ms = ms,
            "setup_timeout_ms" => e.setup_timeout_ms = ms,
            "dedup_window_ms" => e.dedup_window_ms = ms,
            "send_buffer_bytes" => e.send_buffer_bytes = u,
            "coalesce_ms" => e.coalesce_ms = ms,
            "stall_after_ms" => e.stall_after_ms = ms,
            "stall_unready_after_ms" => e.stall_unready_after_ms = ms,
            "replay_records_per_second" => e.replay_records_per_second = ms,
            _ => e.shutdown_grace_ms = ms,
        }
    }
    if e.max_lag_records > e.history_per_partition {
        w.error(
            "edge.max_lag_records",
            format!(
                "{} is more than edge.history_per_partition ({}): a client cannot lag further \
                 than the records kept in memory",
                e.max_lag_records, e.history_per_partition
            ),
        );
    }
    e
}
