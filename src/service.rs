//! Running the roles of one process: the config reload watcher, the HTTP server, the transform
//! workers and the edge, started in order and drained in reverse on shutdown.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, Rules};
use crate::edge::{self, EdgeError, EdgeOptions};
use crate::http::edge_routes::EdgeSlot;
use crate::http::ops::{self, ReadyCheck};
use crate::http::serve::{HttpListener, SocketOptions, serve};
use crate::http::{app, tls};
use crate::ready::Readiness;
use crate::telemetry;
use crate::transform::{self, TransformError, TransformOptions};

/// Where the rules come from and how changes are picked up.
#[derive(Clone, Debug)]
pub struct ConfigSource {
    pub path: PathBuf,
    /// Reload when the file changes (SIGHUP always reloads).
    pub watch: bool,
}

/// Which roles this process runs.
#[derive(Clone, Debug, Default)]
pub struct Roles {
    pub transform: Option<TransformOptions>,
    pub edge: Option<EdgeOptions>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Transform(#[from] TransformError),
    #[error(transparent)]
    Edge(#[from] EdgeError),
    #[error("HTTP: {0}")]
    Http(#[from] std::io::Error),
}

/// Runs the given roles with hot reload of the config and HTTP on `listener` until `shutdown`
/// fires (then drains: sessions get a Close frame, the transform flushes and commits) or a role
/// fails.
pub async fn run(
    roles: Roles,
    rules: Rules,
    config: ConfigSource,
    listener: HttpListener,
    metrics: Option<PrometheusHandle>,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), ServiceError> {
    let live = Arc::new(ArcSwap::from_pointee(rules));
    telemetry::rules_version(&live.load().version);
    let tasks = TaskTracker::new();
    let background = shutdown.child_token();
    tasks.spawn(config::reload::watch(
        config.path,
        live.clone(),
        config.watch,
        background.clone(),
    ));

    let mut ready = Vec::new();
    let transform_ready = readiness.transform.clone();
    if roles.transform.is_some() {
        let r = transform_ready.clone();
        ready.push(ReadyCheck {
            name: "transform",
            waiting_for: "joining the consumer group and receiving partitions",
            check: Arc::new(move || r.get()),
        });
    }
    let slot: EdgeSlot = Arc::new(OnceLock::new());
    if roles.edge.is_some() {
        let s = slot.clone();
        ready.push(ReadyCheck {
            name: "edge",
            waiting_for: "reading the channel topics up to their end, with Kafka answering and no \
                          partition stalled (/stats names it)",
            check: Arc::new(move || s.get().is_some_and(|e| e.ready())),
        });
    }
    let router = app::app(
        ops::HttpState { metrics, ready },
        roles.edge.is_some().then(|| slot.clone()),
    );
    let http_token = background.clone();
    let local = listener.tcp.local_addr()?;
    let rules_now = live.load();
    let edge_settings = &rules_now.edge;
    let sockets = SocketOptions {
        send_buffer_bytes: edge_settings.send_buffer_bytes,
        // Twice the write timeout: sessions give up first and say why; then the kernel closes
        // what the session can no longer close itself (an event stream under the HTTP server).
        user_timeout_ms: edge_settings.write_timeout_ms.saturating_mul(2),
    };
    match listener.tls {
        Some(tls) => {
            let l = tls::TlsListener::new(listener.tcp, tls, sockets)?;
            tracing::info!(addr = %local, "HTTPS listening");
            tasks.spawn(async move {
                if let Err(e) = serve(l, router, http_token).await {
                    tracing::error!("HTTP server stopped: {e}");
                }
            });
        }
        None => {
            tracing::info!(addr = %local, "HTTP listening");
            use axum::serve::ListenerExt;
            let tcp = listener.tcp.tap_io(move |s| sockets.apply(s));
            tasks.spawn(async move {
                if let Err(e) = serve(tcp, router, http_token).await {
                    tracing::error!("HTTP server stopped: {e}");
                }
            });
        }
    }
    tasks.close();

    // The transform runs on its own; the edge starts once the channel topics exist (in `run`,
    // the transform creates them).
    let mut transform = roles.transform.map(|opts| {
        tokio::spawn(transform::run(
            opts,
            live.clone(),
            shutdown.clone(),
            transform_ready,
        ))
    });
    let result = async {
        let mut edge = None;
        if let Some(opts) = roles.edge {
            tokio::select! {
                r = edge::start(opts, live.clone(), shutdown.clone()) => {
                    if let Some(e) = r? {
                        let _ = slot.set(e.clone());
                        let (caught_up, ready) = (e.hub.caught_up_flag().clone(), readiness.edge.clone());
                        e.tasks.spawn(async move {
                            caught_up.wait().await;
                            ready.set(true);
                        });
                        edge = Some(e);
                    }
                }
                r = join(&mut transform) => return r,
            }
        }
        let outcome = if transform.is_some() {
            join(&mut transform).await
        } else {
            shutdown.cancelled().await;
            Ok(())
        };
        if let Some(e) = edge {
            e.drain().await;
        }
        outcome
    }
    .await;
    shutdown.cancel();
    let _ = join_if_running(&mut transform).await;
    background.cancel();
    tasks.wait().await;
    result
}

type TransformTask = Option<tokio::task::JoinHandle<Result<(), TransformError>>>;

/// Waits for the transform task to end (forever when there is none).
async fn join(transform: &mut TransformTask) -> Result<(), ServiceError> {
    match transform {
        None => std::future::pending().await,
        Some(handle) => {
            let r = handle.await;
            *transform = None;
            match r {
                Ok(r) => r.map_err(ServiceError::from),
                Err(e) => Err(TransformError::Thread(e).into()),
            }
        }
    }
}

async fn join_if_running(transform: &mut TransformTask) -> Result<(), ServiceError> {
    if transform.is_some() {
        join(transform).await
    } else {
        Ok(())
    }
}
