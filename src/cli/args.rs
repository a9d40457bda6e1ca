//! The command line: global flags, one subcommand per role or tool, and their flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::kafka_options::{OptionList, OptionsParser};
use crate::telemetry;

/// Kafka-backed price-feed fan-out: per-channel margins, one sub stream per channel.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    /// The channel rules file.
    #[arg(
        long,
        short,
        global = true,
        env = "PRICEFEED_CONFIG",
        default_value = "channels.toml"
    )]
    pub config: PathBuf,
    /// Kafka bootstrap servers, comma-separated.
    #[arg(
        long,
        global = true,
        env = "PRICEFEED_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    /// Any librdkafka option as KEY=VALUE (repeat, or comma-separate: a comma starts a new
    /// option only when KEY= follows it, so debug=broker,topic is one option); applied last,
    /// e.g. security.protocol=SSL or session.timeout.ms=6000.
    /// The value is never echoed (not in --help, not in an error): it may hold a password.
    #[arg(
        long = "kafka-option",
        global = true,
        env = "PRICEFEED_KAFKA_OPTIONS",
        hide_env_values = true,
        value_parser = OptionsParser
    )]
    pub kafka_options: Vec<OptionList>,
    /// Log lines as text (for people) or JSON (one object per line, for log pipelines).
    #[arg(
        long,
        global = true,
        env = "PRICEFEED_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: telemetry::LogFormat,
    /// What to run; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// Parses the command line; with no subcommand, `pricefeed [global flags]` means `run`.
    pub fn parse_with_default() -> Cli {
        let cli = Cli::parse();
        if cli.command.is_some() {
            return cli;
        }
        let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        args.push("run".into());
        Cli::parse_from(args)
    }

    pub fn command(&self) -> &Command {
        self.command
            .as_ref()
            .expect("parse_with_default sets a command")
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Every role in one process: the transform workers for all channels and the WebSocket edge.
    /// The default.
    Run(RunArgs),
    /// A transform worker: prices.raw → prices.<channel>.
    Transform(TransformArgs),
    /// A WebSocket edge: serves prices.<channel> to clients (any number can run side by side).
    Edge(EdgeCommandArgs),
    /// A realistic raw-price feed for demos and load tests.
    Simulate(SimulateArgs),
    /// Print the latest records of a topic (e.g. prices.retail) with their headers.
    Tail(TailArgs),
    /// Validate a channels.toml and list every error; exits non-zero when invalid.
    CheckConfig {
        /// The file to check (default: --config).
        file: Option<PathBuf>,
    },
    /// Print live prices from an edge over WebSocket (demos, operations).
    Watch(WatchArgs),
    /// Sign an HS256 client token with the secret named by [auth] secret_env (demos, tests, ops).
    Token(TokenArgs),
    /// Compare the raw topic with every channel topic and the dead-letter topic: missing,
    /// doubled and out-of-order raw offsets, wrong partitions, wrong prices. Exits 1 on any
    /// finding, 2 when it cannot compare.
    Reconcile(ReconcileArgs),
    /// What a channel quoted for a symbol around a time: each quote with the raw record it came
    /// from and the rules version and markup that made it (found with Kafka's time index).
    Audit(AuditArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    /// Where HTTP is served: the WebSocket edge, /stats, /metrics, /healthz, /readyz.
    #[arg(long, env = "PRICEFEED_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Serve HTTPS/WSS with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "PRICEFEED_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long, env = "PRICEFEED_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Do not watch the config file; reload only on SIGHUP.
    #[arg(long, env = "PRICEFEED_NO_WATCH")]
    pub no_watch: bool,
}

#[derive(Args)]
pub struct WorkerArgs {
    /// Consumer group (default: pricefeed-transform[-<channel>]).
    #[arg(long, env = "PRICEFEED_GROUP_ID")]
    pub group_id: Option<String>,
    /// How often output is flushed and raw offsets committed, in milliseconds (with
    /// transactional delivery, how long each transaction lasts). Default: 1000, or 100 with
    /// `[kafka] delivery = "transactional"`.
    #[arg(long, env = "PRICEFEED_COMMIT_INTERVAL_MS")]
    pub commit_interval_ms: Option<u64>,
}

#[derive(Args)]
pub struct EdgeArgs {
    /// Serve only these channels, comma-separated (default: every channel).
    #[arg(
        long = "edge-channels",
        env = "PRICEFEED_EDGE_CHANNELS",
        value_delimiter = ','
    )]
    pub edge_channels: Option<Vec<String>>,
    /// This node's name in session ids (default: random).
    #[arg(long, env = "PRICEFEED_NODE_ID")]
    pub node_id: Option<String>,
    /// Demo mode: GET /demo/session gives a client token for every channel to anyone who asks
    /// (for the trading UI at /). Never in production.
    #[arg(long, env = "PRICEFEED_DEMO", value_parser = clap::builder::BoolishValueParser::new())]
    pub demo: bool,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
    #[command(flatten)]
    pub edge: EdgeArgs,
}

#[derive(Args)]
pub struct TransformArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
    /// Serve only this channel, in its own consumer group.
    #[arg(long, env = "PRICEFEED_CHANNEL")]
    pub channel: Option<String>,
}

#[derive(Args)]
pub struct EdgeCommandArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub edge: EdgeArgs,
}

#[derive(Args)]
pub struct WatchArgs {
    /// The edge's WebSocket endpoint; several, comma-separated, for several edge nodes: the
    /// next is used (resuming) when one fails.
    #[arg(long, value_delimiter = ',', default_value = "ws://127.0.0.1:8080/ws")]
    pub url: Vec<String>,
    /// The token to set up with (default: one signed for user "watch" with the [auth] secret).
    #[arg(long, env = "PRICEFEED_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Channels to subscribe to, comma-separated (default: every channel of the config).
    #[arg(long, value_delimiter = ',')]
    pub topics: Option<Vec<String>>,
    /// Only these symbols, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub symbols: Option<Vec<String>>,
    /// Exit after this many prices.
    #[arg(long)]
    pub count: Option<u64>,
}

#[derive(Args)]
pub struct TokenArgs {
    /// The user the token names.
    #[arg(long)]
    pub sub: String,
    /// Channels the user may see, comma-separated; "*" for all.
    #[arg(long, value_delimiter = ',', required = true)]
    pub channels: Vec<String>,
    /// Only these symbols (default: all), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub symbols: Option<Vec<String>>,
    /// Allow publishing raw prices.
    #[arg(long)]
    pub publish: bool,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
    /// A ceiling the client cannot raise: at most this many updates per second per symbol
    /// (e.g. 0.2 for one update per 5 s).
    #[arg(long)]
    pub max_rate: Option<f64>,
}

#[derive(Args)]
pub struct SimulateArgs {
    /// Records per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Stop after this many records (default: run until stopped).
    #[arg(long)]
    pub count: Option<u64>,
    /// Comma-separated symbols (default: every instrument in channels.toml).
    #[arg(long, value_delimiter = ',')]
    pub symbols: Option<Vec<String>>,
    /// Fraction of records that are deliberately malformed (0 to 1), to exercise dead-lettering.
    #[arg(long, default_value_t = 0.0)]
    pub malformed_ratio: f64,
    /// Random seed (same seed, same walk).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Depth levels per side in every record (`bids`/`asks`, up to 50), for size-tiered
    /// channels; 0 sends only the top of book with a size.
    #[arg(long, default_value_t = 0)]
    pub depth: usize,
    /// Serve /metrics, /healthz and /readyz here (default: no HTTP).
    #[arg(long, env = "PRICEFEED_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
}

#[derive(Args)]
pub struct TailArgs {
    /// The topic, e.g. prices.retail or prices.dead-letter.
    pub topic: String,
    /// Records per partition to show.
    #[arg(long, short = 'n', default_value_t = 5)]
    pub last: i64,
    /// Show every record from the start of each partition.
    #[arg(long)]
    pub from_beginning: bool,
    /// Keep printing new records until Ctrl-C.
    #[arg(long, short)]
    pub follow: bool,
}

#[derive(Args)]
pub struct AuditArgs {
    /// The channel (e.g. retail).
    #[arg(long)]
    pub channel: String,
    /// The symbol (e.g. EURUSD).
    #[arg(long)]
    pub symbol: String,
    /// The time (ms since 1970, or RFC 3339 such as 2026-12-06T07:30:00Z).
    #[arg(long, value_parser = crate::reconcile::parse_time)]
    pub at: i64,
    /// How far either side of --at to look (500ms, 5s, 2m, 1h).
    #[arg(long, default_value = "5s", value_parser = crate::reconcile::parse_duration_ms)]
    pub window: i64,
    /// At most this many quotes, the nearest to --at.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ReconcileArgs {
    /// First raw offset to compare (default: each partition's first).
    #[arg(long, conflicts_with = "from_time")]
    pub from_offset: Option<i64>,
    /// Raw offset to stop before (default: each partition's end when the run starts).
    #[arg(long, conflicts_with = "to_time")]
    pub to_offset: Option<i64>,
    /// Compare raw records from this time on (ms since 1970, or RFC 3339).
    #[arg(long, value_parser = crate::reconcile::parse_time)]
    pub from_time: Option<i64>,
    /// Compare raw records before this time.
    #[arg(long, value_parser = crate::reconcile::parse_time)]
    pub to_time: Option<i64>,
    /// Only these raw partitions, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub partitions: Option<Vec<i32>>,
    /// An earlier channels.toml whose records may be in the range (records carry the version of
    /// the rules that priced them); repeatable. Records of versions not given are not checked.
    #[arg(long = "rules")]
    pub older_rules: Vec<PathBuf>,
    /// Check the single-channel worker group of this channel (its topic and dead-letter topic).
    #[arg(long)]
    pub channel: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}
