//! The routes every process serves: `/metrics` (Prometheus), `/healthz`, `/readyz`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::PrometheusHandle;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

pub fn router(state: HttpState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(metrics))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .with_state(state)
}

/// Prometheus metrics (text format 0.0.4); the list is in docs/architecture.md section 12.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Every metric of this process", content_type = "text/plain"),
        (status = 503, description = "No metrics recorder (embedded use)", content_type = "text/plain"),
    ))]
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

/// Liveness: the process runs and serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`ok`", content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the transform has its partitions and the edge has read every channel topic to its
/// end with Kafka answering. Otherwise 503, naming what it waits for.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "`ready`", content_type = "text/plain"),
        (status = 503, description = "`not ready: …` with what each role waits for", content_type = "text/plain"),
    ))]
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
