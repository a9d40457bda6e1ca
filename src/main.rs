//! The `pricefeed` binary: parse the command line, load the config, start the role.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use pricefeed::config::Rules;
use pricefeed::kafka::KafkaSettings;
use pricefeed::simulate::SimulateOptions;
use pricefeed::transform::TransformOptions;
use pricefeed::{simulate, telemetry};
use tokio_util::sync::CancellationToken;

/// Kafka-backed price-feed fan-out: per-channel margins, one sub stream per channel.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The channel rules file.
    #[arg(
        long,
        short,
        global = true,
        env = "PRICEFEED_CONFIG",
        default_value = "channels.toml"
    )]
    config: PathBuf,
    /// Kafka bootstrap servers, comma-separated.
    #[arg(
        long,
        global = true,
        env = "PRICEFEED_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    brokers: String,
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
    kafka_options: Vec<OptionList>,
    /// Log lines as text (for people) or JSON (one object per line, for log pipelines).
    #[arg(
        long,
        global = true,
        env = "PRICEFEED_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: telemetry::LogFormat,
    /// What to run; `run` when omitted.
    #[command(subcommand)]
    command: Option<Command>,
}

impl Cli {
    /// Parses the command line; with no subcommand, `pricefeed [global flags]` means `run`.
    fn parse_with_default() -> Cli {
        let cli = Cli::parse();
        if cli.command.is_some() {
            return cli;
        }
        let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        args.push("run".into());
        Cli::parse_from(args)
    }

    fn command(&self) -> &Command {
        self.command
            .as_ref()
            .expect("parse_with_default sets a command")
    }
}

#[derive(Subcommand)]
enum Command {
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
}

#[derive(Args)]
struct ServeArgs {
    /// Where HTTP is served: the WebSocket edge, /stats, /metrics, /healthz, /readyz.
    #[arg(long, env = "PRICEFEED_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Serve HTTPS/WSS with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "PRICEFEED_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long, env = "PRICEFEED_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Do not watch the config file; reload only on SIGHUP.
    #[arg(long, env = "PRICEFEED_NO_WATCH")]
    no_watch: bool,
}

#[derive(Args)]
struct WorkerArgs {
    /// Consumer group (default: pricefeed-transform[-<channel>]).
    #[arg(long, env = "PRICEFEED_GROUP_ID")]
    group_id: Option<String>,
    /// How often output is flushed and raw offsets committed, in milliseconds (with
    /// transactional delivery, how long each transaction lasts). Default: 1000, or 100 with
    /// `[kafka] delivery = "transactional"`.
    #[arg(long, env = "PRICEFEED_COMMIT_INTERVAL_MS")]
    commit_interval_ms: Option<u64>,
}

#[derive(Args)]
struct EdgeArgs {
    /// Serve only these channels, comma-separated (default: every channel).
    #[arg(
        long = "edge-channels",
        env = "PRICEFEED_EDGE_CHANNELS",
        value_delimiter = ','
    )]
    edge_channels: Option<Vec<String>>,
    /// This node's name in session ids (default: random).
    #[arg(long, env = "PRICEFEED_NODE_ID")]
    node_id: Option<String>,
    /// Demo mode: GET /demo/session gives a client token for every channel to anyone who asks
    /// (for the trading UI at /). Never in production.
    #[arg(long, env = "PRICEFEED_DEMO", value_parser = clap::builder::BoolishValueParser::new())]
    demo: bool,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    edge: EdgeArgs,
}

#[derive(Args)]
struct TransformArgs {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(flatten)]
    worker: WorkerArgs,
    /// Serve only this channel, in its own consumer group.
    #[arg(long, env = "PRICEFEED_CHANNEL")]
    channel: Option<String>,
}

#[derive(Args)]
struct EdgeCommandArgs {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(flatten)]
    edge: EdgeArgs,
}

#[derive(Args)]
struct WatchArgs {
    /// The edge's WebSocket endpoint.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// The token to set up with (default: one signed for user "watch" with the [auth] secret).
    #[arg(long, env = "PRICEFEED_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Channels to subscribe to, comma-separated (default: every channel of the config).
    #[arg(long, value_delimiter = ',')]
    topics: Option<Vec<String>>,
    /// Only these symbols, comma-separated.
    #[arg(long, value_delimiter = ',')]
    symbols: Option<Vec<String>>,
    /// Exit after this many prices.
    #[arg(long)]
    count: Option<u64>,
}

#[derive(Args)]
struct TokenArgs {
    /// The user the token names.
    #[arg(long)]
    sub: String,
    /// Channels the user may see, comma-separated; "*" for all.
    #[arg(long, value_delimiter = ',', required = true)]
    channels: Vec<String>,
    /// Only these symbols (default: all), comma-separated.
    #[arg(long, value_delimiter = ',')]
    symbols: Option<Vec<String>>,
    /// Allow publishing raw prices.
    #[arg(long)]
    publish: bool,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
}

#[derive(Args)]
struct SimulateArgs {
    /// Records per second.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Stop after this many records (default: run until stopped).
    #[arg(long)]
    count: Option<u64>,
    /// Comma-separated symbols (default: every instrument in channels.toml).
    #[arg(long, value_delimiter = ',')]
    symbols: Option<Vec<String>>,
    /// Fraction of records that are deliberately malformed (0 to 1), to exercise dead-lettering.
    #[arg(long, default_value_t = 0.0)]
    malformed_ratio: f64,
    /// Random seed (same seed, same walk).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Serve /metrics, /healthz and /readyz here (default: no HTTP).
    #[arg(long, env = "PRICEFEED_HTTP_ADDR")]
    http_addr: Option<SocketAddr>,
}

#[derive(Args)]
struct TailArgs {
    /// The topic, e.g. prices.retail or prices.dead-letter.
    topic: String,
    /// Records per partition to show.
    #[arg(long, short = 'n', default_value_t = 5)]
    last: i64,
    /// Show every record from the start of each partition.
    #[arg(long)]
    from_beginning: bool,
    /// Keep printing new records until Ctrl-C.
    #[arg(long, short)]
    follow: bool,
}

#[derive(Args)]
struct ReconcileArgs {
    /// First raw offset to compare (default: each partition's first).
    #[arg(long, conflicts_with = "from_time")]
    from_offset: Option<i64>,
    /// Raw offset to stop before (default: each partition's end when the run starts).
    #[arg(long, conflicts_with = "to_time")]
    to_offset: Option<i64>,
    /// Compare raw records from this time on (ms since 1970, or RFC 3339).
    #[arg(long, value_parser = pricefeed::reconcile::parse_time)]
    from_time: Option<i64>,
    /// Compare raw records before this time.
    #[arg(long, value_parser = pricefeed::reconcile::parse_time)]
    to_time: Option<i64>,
    /// Only these raw partitions, comma-separated.
    #[arg(long, value_delimiter = ',')]
    partitions: Option<Vec<i32>>,
    /// An earlier channels.toml whose records may be in the range (records carry the version of
    /// the rules that priced them); repeatable. Records of versions not given are not checked.
    #[arg(long = "rules")]
    older_rules: Vec<PathBuf>,
    /// Check the single-channel worker group of this channel (its topic and dead-letter topic).
    #[arg(long)]
    channel: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// The librdkafka options of one `--kafka-option` (or of `PRICEFEED_KAFKA_OPTIONS`).
#[derive(Clone)]
struct OptionList(Vec<(String, String)>);

/// `KEY=VALUE[,KEY=VALUE…]`. A comma starts a new option only when `KEY=` follows it, so values
/// may hold commas (`debug=broker,topic`). Empty items (`PRICEFEED_KAFKA_OPTIONS=`, a trailing
/// comma) are no option.
fn parse_options(s: &str) -> Result<OptionList, String> {
    let is_key = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for part in s.split(',') {
        let starts_option = part.split_once('=').is_some_and(|(k, _)| is_key(k.trim()));
        match (starts_option, out.last_mut()) {
            (true, _) => {
                let (k, v) = part.split_once('=').expect("checked");
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
            (false, _) if part.trim().is_empty() => {}
            (false, Some((_, v))) => {
                v.push(',');
                v.push_str(part.trim());
            }
            // The text is not quoted back: it may hold a password (`sasl.password:…`).
            (false, None) => {
                return Err(
                    "expected KEY=VALUE[,KEY=VALUE…]: the text before the first '=' is not an \
                     option name (letters, digits, '.', '_', '-'); the value is not shown, as it \
                     may hold a secret"
                        .to_string(),
                );
            }
        }
    }
    Ok(OptionList(out))
}

/// `--kafka-option`'s parser: clap's own error for a failed value quotes the value, and a Kafka
/// option may be a password, so a bad value gets an error that names the flag only.
#[derive(Clone)]
struct OptionsParser;

impl clap::builder::TypedValueParser for OptionsParser {
    type Value = OptionList;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<OptionList, clap::Error> {
        let fail = |why: &str| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--kafka-option / PRICEFEED_KAFKA_OPTIONS: {why}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value.to_str().ok_or_else(|| fail("not UTF-8"))?;
        parse_options(text).map_err(|why| fail(&why))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse_with_default();
    telemetry::init_logging(cli.log_format);
    if let Command::CheckConfig { file } = cli.command() {
        return check_config(file.as_deref().unwrap_or(&cli.config));
    }
    // Every role but `tail` needs valid rules before anything starts.
    if let Command::Token(t) = cli.command() {
        return match Rules::load(&cli.config) {
            Ok(rules) => token(&rules, t),
            Err(errors) => {
                eprint!("{errors}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Reconcile(r) = cli.command() {
        return match Rules::load(&cli.config) {
            Ok(rules) => reconcile(&cli, rules, r),
            Err(errors) => {
                eprint!("{errors}");
                ExitCode::from(2)
            }
        };
    }
    let rules = if matches!(cli.command(), Command::Tail(_)) {
        None
    } else {
        match Rules::load(&cli.config) {
            Ok(r) => Some(r),
            Err(errors) => {
                eprint!("{errors}");
                return ExitCode::from(2);
            }
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli, rules));
    // `run` has drained everything that matters (sessions, the transform's flush and commit); a
    // Kafka metadata request still blocking a thread (broker unreachable) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("pricefeed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn reconcile(cli: &Cli, rules: Rules, r: &ReconcileArgs) -> ExitCode {
    use pricefeed::reconcile::{Bound, ReconcileOptions};
    let mut older = Vec::new();
    for path in &r.older_rules {
        match Rules::load(path) {
            Ok(rules) => older.push(std::sync::Arc::new(rules)),
            Err(errors) => {
                eprint!("{errors}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(c) = &r.channel
        && rules.channel(c).is_none()
    {
        eprintln!(
            "pricefeed: unknown channel {c:?}: it is not in {}",
            cli.config.display()
        );
        return ExitCode::from(2);
    }
    let bound = |offset: Option<i64>, time: Option<i64>| match (offset, time) {
        (Some(o), _) => Bound::Offset(o),
        (None, Some(t)) => Bound::Time(t),
        (None, None) => Bound::Edge,
    };
    let opts = ReconcileOptions {
        kafka: KafkaSettings {
            brokers: cli.brokers.clone(),
            options: cli.kafka_options.iter().flat_map(|l| l.0.clone()).collect(),
        },
        rules: std::sync::Arc::new(rules),
        older_rules: older,
        channel: r.channel.clone(),
        from: bound(r.from_offset, r.from_time),
        to: bound(r.to_offset, r.to_time),
        partitions: r.partitions.clone(),
    };
    match pricefeed::reconcile::run(&opts) {
        Ok(report) => {
            if r.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                println!("{}", report.text());
            }
            if report.findings() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("pricefeed reconcile: {e}");
            ExitCode::from(2)
        }
    }
}

fn check_config(path: &Path) -> ExitCode {
    match Rules::load(path) {
        Ok(rules) => {
            println!(
                "{}: ok (version {}, {} instruments, {} channels: {})",
                path.display(),
                rules.version,
                rules.instruments.len(),
                rules.channels.len(),
                rules
                    .channels
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{errors}");
            ExitCode::FAILURE
        }
    }
}

fn token(rules: &Rules, t: &TokenArgs) -> ExitCode {
    match mint(
        rules,
        &t.sub,
        &t.channels,
        t.symbols.clone(),
        t.publish,
        t.ttl,
    ) {
        Ok(tok) => {
            println!("{tok}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// Signs an HS256 token with the secret named by `[auth] secret_env`.
fn mint(
    rules: &Rules,
    sub: &str,
    channels: &[String],
    symbols: Option<Vec<String>>,
    publish: bool,
    ttl: u64,
) -> Result<String, String> {
    use pricefeed::config::JwtAlgorithm;
    use pricefeed::edge::auth::{Audience, Claims, sign_hs256};
    if rules.auth.algorithm != JwtAlgorithm::Hs256 {
        return Err(format!(
            "pricefeed signs HS256 tokens only; this config verifies {:?} tokens, which your \
             identity provider issues",
            rules.auth.algorithm
        ));
    }
    let Ok(secret) = std::env::var(&rules.auth.secret_env) else {
        return Err(format!(
            "the environment variable {} (auth.secret_env) must hold the HS256 secret",
            rules.auth.secret_env
        ));
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = Claims {
        sub: sub.to_string(),
        channels: channels.to_vec(),
        symbols,
        publish,
        exp: now + ttl,
        iss: rules.auth.issuer.clone(),
        aud: rules.auth.audience.clone().map(Audience::One),
    };
    sign_hs256(&claims, secret.as_bytes()).map_err(|e| format!("signing failed: {e}"))
}

/// SIGINT or SIGTERM cancels the returned token.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested");
        t.cancel();
    });
    token
}

/// Installs the Prometheus recorder and its periodic upkeep.
fn start_metrics() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    let metrics = telemetry::install_metrics().context("installing the metrics recorder")?;
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok(metrics)
}

async fn run(cli: Cli, rules: Option<Rules>) -> anyhow::Result<()> {
    let kafka = KafkaSettings {
        brokers: cli.brokers,
        options: cli.kafka_options.into_iter().flat_map(|l| l.0).collect(),
    };
    let shutdown = shutdown_on_signals();
    let command = cli.command.expect("parse_with_default sets a command");
    if let Command::Tail(t) = command {
        let opts = pricefeed::tail::TailOptions {
            kafka,
            topic: t.topic,
            last: t.last.max(0),
            from_beginning: t.from_beginning,
            follow: t.follow,
        };
        tokio::task::spawn_blocking(move || pricefeed::tail::run(&opts, &shutdown)).await??;
        return Ok(());
    }
    let rules = rules.context("rules are loaded for every role but tail")?;
    let edge_opts = |e: EdgeArgs| pricefeed::edge::EdgeOptions {
        kafka: kafka.clone(),
        config_dir: cli
            .config
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        channels: e.edge_channels,
        node_id: e.node_id,
        demo: e.demo,
    };
    let transform_opts = |w: WorkerArgs, channel: Option<String>| TransformOptions {
        kafka: kafka.clone(),
        group_id: w
            .group_id
            .unwrap_or_else(|| TransformOptions::default_group(channel.as_deref())),
        only_channel: channel,
        commit_interval: w
            .commit_interval_ms
            .map(|ms| Duration::from_millis(ms.max(10))),
    };
    let (serve, roles) = match command {
        Command::Run(r) => (
            r.serve,
            pricefeed::Roles {
                transform: Some(transform_opts(r.worker, None)),
                edge: Some(edge_opts(r.edge)),
            },
        ),
        Command::Transform(t) => (
            t.serve,
            pricefeed::Roles {
                transform: Some(transform_opts(t.worker, t.channel)),
                edge: None,
            },
        ),
        Command::Edge(e) => (
            e.serve,
            pricefeed::Roles {
                transform: None,
                edge: Some(edge_opts(e.edge)),
            },
        ),
        Command::Simulate(s) => {
            if let Some(addr) = s.http_addr {
                let metrics = start_metrics()?;
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding HTTP on {addr}"))?;
                let router = pricefeed::api::app(
                    pricefeed::http::HttpState {
                        metrics: Some(metrics),
                        ready: Vec::new(),
                    },
                    None,
                );
                tokio::spawn(pricefeed::http::serve(listener, router, shutdown.clone()));
            }
            let opts = SimulateOptions {
                kafka,
                rate: s.rate,
                count: s.count,
                symbols: s.symbols,
                malformed_ratio: s.malformed_ratio,
                seed: s.seed,
            };
            simulate::run(opts, &rules, shutdown).await?;
            return Ok(());
        }
        Command::Watch(w) => {
            let topics = w
                .topics
                .unwrap_or_else(|| rules.channels.iter().map(|c| c.name.clone()).collect());
            let token = match w.token {
                Some(t) => t,
                None => mint(&rules, "watch", &topics, w.symbols.clone(), false, 3600)
                    .map_err(|e| anyhow::anyhow!("{e}; or pass --token"))?,
            };
            let opts = pricefeed::watch::WatchOptions {
                url: w.url,
                token,
                topics,
                symbols: w.symbols,
                count: w.count,
            };
            pricefeed::watch::run(opts, shutdown).await?;
            return Ok(());
        }
        Command::Tail(_)
        | Command::CheckConfig { .. }
        | Command::Token(_)
        | Command::Reconcile(_) => {
            unreachable!("handled above")
        }
    };
    let tls = match (&serve.tls_cert, &serve.tls_key) {
        (Some(cert), Some(key)) => Some(pricefeed::tls::server_config(cert, key)?),
        _ => None,
    };
    let metrics = start_metrics()?;
    let tcp = tokio::net::TcpListener::bind(serve.http_addr)
        .await
        .with_context(|| format!("binding HTTP on {}", serve.http_addr))?;
    let source = pricefeed::ConfigSource {
        path: cli.config.clone(),
        watch: !serve.no_watch,
    };
    let listener = pricefeed::HttpListener { tcp, tls };
    pricefeed::run(roles, rules, source, listener, Some(metrics), shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &str) -> Vec<(String, String)> {
        parse_options(s).unwrap().0
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kafka_options_split_at_commas_that_start_a_new_key() {
        assert_eq!(
            opts("linger.ms=5, debug=broker,topic,msg ,acks=all"),
            kv(&[
                ("linger.ms", "5"),
                ("debug", "broker,topic,msg"),
                ("acks", "all")
            ])
        );
        assert_eq!(
            opts("sasl.jaas.config=a=b"),
            kv(&[("sasl.jaas.config", "a=b")])
        );
        assert_eq!(opts(""), kv(&[]));
        assert_eq!(opts(" , "), kv(&[]));
        assert_eq!(opts("linger.ms=5,"), kv(&[("linger.ms", "5")]));
        assert!(parse_options("linger.ms").is_err());
        assert!(parse_options("=5").is_err());
    }
}
