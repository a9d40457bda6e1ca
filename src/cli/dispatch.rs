//! What the binary does: parse the command line, load the config, then run a role (a pipeline
//! stage, through [`crate::run`]) or a tool.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::args::{Cli, Command, EdgeArgs, WorkerArgs};
use super::reconcile::reconcile;
use crate::config::Rules;
use crate::kafka::KafkaSettings;
use crate::telemetry;
use crate::tools::check_config::check_config;
use crate::tools::simulate::{self, SimulateOptions};
use crate::tools::token::{TokenRequest, mint, token};
use crate::transform::TransformOptions;

pub fn main() -> ExitCode {
    let cli = Cli::parse_with_default();
    telemetry::init_logging(cli.log_format);
    if let Command::CheckConfig { file } = cli.command() {
        return check_config(file.as_deref().unwrap_or(&cli.config));
    }
    // Every role but `tail` needs valid rules before anything starts.
    if let Command::Token(t) = cli.command() {
        return match Rules::load(&cli.config) {
            Ok(rules) => token(
                &rules,
                &TokenRequest {
                    sub: t.sub.clone(),
                    channels: t.channels.clone(),
                    symbols: t.symbols.clone(),
                    publish: t.publish,
                    ttl: t.ttl,
                    max_rate: t.max_rate,
                },
            ),
            Err(errors) => {
                eprint!("{errors}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Reconcile(_) | Command::Audit(_) = cli.command() {
        return match Rules::load(&cli.config) {
            Ok(rules) => match cli.command() {
                Command::Audit(a) => super::reconcile::audit(&cli, rules, a),
                Command::Reconcile(r) => reconcile(&cli, rules, r),
                _ => unreachable!("matched above"),
            },
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

/// Installs the Prometheus recorder and its periodic upkeep (until `shutdown`).
fn start_metrics(
    shutdown: &CancellationToken,
) -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    let metrics = telemetry::install_metrics().context("installing the metrics recorder")?;
    let upkeep = metrics.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => upkeep.run_upkeep(),
            }
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
        let opts = crate::tools::tail::TailOptions {
            kafka,
            topic: t.topic,
            last: t.last.max(0),
            from_beginning: t.from_beginning,
            follow: t.follow,
        };
        tokio::task::spawn_blocking(move || crate::tools::tail::run(&opts, &shutdown)).await??;
        return Ok(());
    }
    let rules = rules.context("rules are loaded for every role but tail")?;
    let edge_opts = |e: EdgeArgs| crate::edge::EdgeOptions {
        kafka: kafka.clone(),
        config_dir: cli
            .config
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        channels: e.edge_channels,
        node_id: e.node_id,
        demo: e.demo,
        hs256_secret: None,
        api_keys: None,
        stall_fault: None,
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
            crate::Roles {
                transform: Some(transform_opts(r.worker, None)),
                edge: Some(edge_opts(r.edge)),
            },
        ),
        Command::Transform(t) => (
            t.serve,
            crate::Roles {
                transform: Some(transform_opts(t.worker, t.channel)),
                edge: None,
            },
        ),
        Command::Edge(e) => (
            e.serve,
            crate::Roles {
                transform: None,
                edge: Some(edge_opts(e.edge)),
            },
        ),
        Command::Simulate(s) => {
            if let Some(addr) = s.http_addr {
                let metrics = start_metrics(&shutdown)?;
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding HTTP on {addr}"))?;
                let router = crate::http::app::app(
                    crate::http::ops::HttpState {
                        metrics: Some(metrics),
                        ready: Vec::new(),
                    },
                    None,
                );
                tokio::spawn(crate::http::serve::serve(
                    listener,
                    router,
                    shutdown.clone(),
                ));
            }
            let opts = SimulateOptions {
                kafka,
                rate: s.rate,
                count: s.count,
                symbols: s.symbols,
                malformed_ratio: s.malformed_ratio,
                seed: s.seed,
                depth: s.depth,
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
                None => mint(
                    &rules,
                    &TokenRequest {
                        sub: "watch".into(),
                        channels: topics.clone(),
                        symbols: w.symbols.clone(),
                        publish: false,
                        ttl: 3600,
                        max_rate: None,
                    },
                )
                .map_err(|e| anyhow::anyhow!("{e}; or pass --token"))?,
            };
            let opts = crate::tools::watch::WatchOptions {
                urls: w.url,
                token,
                topics,
                symbols: w.symbols,
                count: w.count,
            };
            crate::tools::watch::run(opts, shutdown).await?;
            return Ok(());
        }
        Command::Tail(_)
        | Command::CheckConfig { .. }
        | Command::Token(_)
        | Command::Reconcile(_)
        | Command::Audit(_) => {
            unreachable!("handled above")
        }
    };
    let tls = match (&serve.tls_cert, &serve.tls_key) {
        (Some(cert), Some(key)) => Some(crate::http::tls::server_config(cert, key)?),
        _ => None,
    };
    let metrics = start_metrics(&shutdown)?;
    let tcp = tokio::net::TcpListener::bind(serve.http_addr)
        .await
        .with_context(|| format!("binding HTTP on {}", serve.http_addr))?;
    let source = crate::ConfigSource {
        path: cli.config.clone(),
        watch: !serve.no_watch,
    };
    let listener = crate::http::serve::HttpListener { tcp, tls };
    crate::run(
        roles,
        rules,
        source,
        listener,
        Some(metrics),
        Default::default(),
        shutdown,
    )
    .await?;
    Ok(())
}
