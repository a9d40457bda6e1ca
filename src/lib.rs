//! pricefeed: raw prices from Kafka, per-channel margins, one sub stream per channel.
//!
//! Data flow (and module layout): [`ingest`] decodes `prices.raw`, [`pricing`] applies the margin
//! rules of [`config`], [`transform`] workers write `prices.<channel>`; [`simulate`] is a demo
//! feed and [`tail`] a topic viewer; [`kafka`] builds every Kafka client; [`http`] and
//! [`telemetry`] expose the process.

pub mod config;
pub mod http;
pub mod ingest;
pub mod kafka;
pub mod pricing;
pub mod simulate;
pub mod tail;
pub mod telemetry;
pub mod transform;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use config::Rules;
use transform::{TransformError, TransformOptions};

/// Where the rules come from and how changes are picked up.
#[derive(Clone, Debug)]
pub struct ConfigSource {
    pub path: PathBuf,
    /// Reload when the file changes (SIGHUP always reloads).
    pub watch: bool,
}

/// Everything a transform process runs: the worker, hot reload of the config, and HTTP on
/// `listener`. Returns when `shutdown` fires (after draining) or the worker fails.
pub async fn run_transform(
    opts: TransformOptions,
    rules: Rules,
    config: ConfigSource,
    listener: TcpListener,
    metrics: Option<PrometheusHandle>,
    shutdown: CancellationToken,
) -> Result<(), TransformError> {
    let live = Arc::new(ArcSwap::from_pointee(rules));
    telemetry::rules_version(&live.load().version);
    let ready = Arc::new(AtomicBool::new(false));
    let tasks = TaskTracker::new();
    let background = shutdown.child_token();

    tasks.spawn(config::reload::watch(
        config.path,
        live.clone(),
        config.watch,
        background.clone(),
    ));
    let router = http::router(http::HttpState {
        metrics,
        ready: ready.clone(),
    });
    let http_token = background.clone();
    tasks.spawn(async move {
        if let Err(e) = http::serve(listener, router, http_token).await {
            tracing::error!("HTTP server stopped: {e}");
        }
    });
    tasks.close();

    let result = transform::run(opts, live, shutdown.clone(), ready).await;
    background.cancel();
    tasks.wait().await;
    result
}
