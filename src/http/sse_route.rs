//! `GET /sse/{topic}`: a topic's prices as Server-Sent Events, for networks that block
//! WebSockets (docs/protocol.md section 18). The stream itself is
//! [`crate::edge::connection::sse`]; this is the HTTP side: the token from the `Authorization`
//! header or the query, the position from `Last-Event-ID`, refusals as JSON problems.

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::edge_routes::{EdgeSlot, Started};
use super::problem::Problem;
use crate::edge::connection::sse::{self, SseRequest};

/// How long a browser waits before reconnecting (the `retry:` field): `EventSource`'s default
/// is about 3 s.
const RETRY_MS: &str = "1000";

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SseQuery {
    /// The client token, when the `Authorization: Bearer` header cannot be set (a browser's
    /// `EventSource` cannot).
    token: Option<String>,
    /// Only these symbols, comma-separated (default: what the token allows).
    symbols: Option<String>,
    /// At most this many updates per second per symbol, always the latest (capped by the
    /// token's `max_rate`).
    #[serde(rename = "maxRate")]
    #[param(rename = "maxRate")]
    max_rate: Option<f64>,
    /// Resume after this position (an `id:` of an earlier stream) when the `Last-Event-ID`
    /// header is not sent: a new `EventSource` after a token refresh.
    #[serde(rename = "lastEventId")]
    #[param(rename = "lastEventId")]
    last_event_id: Option<String>,
}

/// A topic's prices as Server-Sent Events: `ready`, `subscribed`, the snapshot, then every price
/// (docs/protocol.md section 18). Each event's `data` is the same JSON frame a WebSocket client
/// gets; prices and snapshots carry `id:`, a position over every partition, and a client that
/// reconnects with it as `Last-Event-ID` resumes with no gap and no duplicate.
#[utoipa::path(get, path = "/sse/{topic}", tag = "sse",
    params(("topic" = String, Path, description = "A channel this edge serves", example = "vip"), SseQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this position (sent by EventSource when it reconnects)")),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream"),
        (status = 400, description = "A bad maxRate, symbols or Last-Event-ID", body = Problem),
        (status = 401, description = "No token, or a token that is not valid", body = Problem),
        (status = 403, description = "The token does not allow this topic or symbol", body = Problem),
        (status = 404, description = "No such topic on this edge, or a symbol it does not carry", body = Problem),
        (status = 503, description = "The edge is starting, at its connection limit, or shutting down", body = Problem),
    ))]
pub async fn sse_stream(
    Started(edge): Started,
    Path(topic): Path<String>,
    query: Result<Query<SseQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let Query(q) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    if !edge.hub.caught_up() {
        return Err(Problem::unavailable(
            "this edge is still reading the channel topics; retry shortly",
        ));
    }
    if edge.shutdown.is_cancelled() {
        return Err(Problem::unavailable("this edge is shutting down"));
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let Some(token) = bearer.or(q.token) else {
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the token as Authorization: Bearer <token> or as ?token=",
        ));
    };
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(q.last_event_id);
    let symbols = q.symbols.map(|s| {
        s.split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    });
    let req = SseRequest {
        topic,
        token,
        symbols,
        max_rate: q.max_rate,
        last_event_id,
    };
    let events = sse::open(edge, req).map_err(|r| {
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
        Problem::new(status, r.code, r.message)
    })?;
    let first = Bytes::from(format!("retry: {RETRY_MS}\n\n"));
    let body = futures_util::stream::unfold((Some(first), events), |(first, mut events)| async {
        let b = match first {
            Some(b) => b,
            None => events.recv().await?,
        };
        Some((Ok::<_, std::io::Error>(b), (None, events)))
    });
    let mut r = Body::from_stream(body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies such as nginx would otherwise buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
}

/// `EdgeSlot` is the state of this route.
pub fn routes(edge: EdgeSlot) -> utoipa_axum::router::OpenApiRouter {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(sse_stream))
        .with_state(edge)
}
