//! `GET /audit`: `pricefeed audit` over HTTP for backends, with an API key.

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::edge_routes::{EdgeSlot, Started, presented_key};
use super::problem::Problem;
use crate::audit::{Audit, AuditError, AuditQuery};
use crate::reconcile::{parse_duration_ms, parse_time};
use crate::telemetry;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// The channel, e.g. `retail`.
    channel: String,
    /// The symbol, e.g. `EURUSD`.
    symbol: String,
    /// The time: ms since 1970, or RFC 3339 (`2026-12-06T07:30:00Z`).
    at: String,
    /// How far either side of `at` to look: `500ms`, `5s` (default), `2m`, `1h`.
    window: Option<String>,
    /// At most this many quotes, the nearest to `at` (default 50, at most 1000).
    limit: Option<usize>,
}

/// What a channel quoted for a symbol around a time: each quote with the raw record it came from
/// and the rules version and markup that made it, found with Kafka's time index. For backends:
/// an API key from `PRICEFEED_API_KEYS` in `X-Api-Key` or `Authorization: Bearer`.
#[utoipa::path(get, path = "/audit", tag = "audit",
    params(AuditParams, ("X-Api-Key" = Option<String>, Header, description = "An API key")),
    responses(
        (status = 200, description = "The quotes in the window", body = Audit),
        (status = 400, description = "A time or window that is not one", body = Problem),
        (status = 401, description = "No or an unknown API key", body = Problem),
        (status = 404, description = "No such channel topic", body = Problem),
        (status = 503, description = "Kafka could not answer, or the edge is starting", body = Problem),
    ))]
pub async fn audit(
    Started(edge): Started,
    headers: HeaderMap,
    query: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<Audit>, Problem> {
    let Query(p) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    if presented_key(&headers)
        .and_then(|k| edge.api_keys.publisher(k))
        .is_none()
    {
        telemetry::edge_auth_failure("bad_api_key");
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send an API key (PRICEFEED_API_KEYS) in X-Api-Key or Authorization: Bearer",
        ));
    }
    let q = AuditQuery {
        channel: p.channel,
        symbol: p.symbol,
        at: parse_time(&p.at).map_err(Problem::bad_request)?,
        window_ms: match p.window {
            Some(w) => parse_duration_ms(&w).map_err(Problem::bad_request)?,
            None => 5000,
        },
        limit: p.limit.unwrap_or(50).clamp(1, 1000),
    };
    let (kafka, rules) = (edge.kafka.clone(), edge.rules.load_full());
    let answer = tokio::task::spawn_blocking(move || crate::audit::audit(&kafka, &rules, &q))
        .await
        .map_err(|e| Problem::unavailable(format!("the audit task failed: {e}")))?;
    match answer {
        Ok(a) => Ok(Json(a)),
        Err(AuditError::NotFound(why)) => {
            Err(Problem::new(StatusCode::NOT_FOUND, "not_found", why))
        }
        Err(AuditError::Kafka(e)) => Err(Problem::unavailable(format!("Kafka: {e}"))),
    }
}

pub fn routes(edge: EdgeSlot) -> utoipa_axum::router::OpenApiRouter {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(audit))
        .with_state(edge)
}
