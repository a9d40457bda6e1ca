//! The process's HTTP surface: `/metrics` (Prometheus), `/healthz`, `/readyz`, and the edge's
//! routes when the process runs an edge.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

/// One part of the process that must be ready: its name, what it waits for, and the check.
#[derive(Clone)]
pub struct ReadyCheck {
    pub name: &'static str,
    pub waiting_for: &'static str,
    pub check: Arc<dyn Fn() -> bool + Send + Sync>,
}

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Option<PrometheusHandle>,
    /// Every role's readiness; `/readyz` is 200 when all are ready.
    pub ready: Vec<ReadyCheck>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    match &s.metrics {
        Some(h) => (
            StatusCode::OK,
            [(CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(CONTENT_TYPE, "text/plain")],
            "metrics recorder not installed\n".to_string(),
        ),
    }
}

async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    let waiting: Vec<String> = s
        .ready
        .iter()
        .filter(|c| !(c.check)())
        .map(|c| format!("{}: {}", c.name, c.waiting_for))
        .collect();
    if waiting.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", waiting.join("; ")),
        )
    }
}

/// Serves `router` on `listener` until `shutdown`.
pub async fn serve<L>(
    listener: L,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
