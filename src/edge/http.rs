//! The edge's HTTP routes: `/ws`, `/ws/sub/{topic}`, `/stats` and `POST /publish`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::Edge;
use super::publish::PublishError;
use super::session;
use crate::telemetry;

/// The edge once it has started (the HTTP server runs before, for health checks).
pub type EdgeSlot = Arc<std::sync::OnceLock<Arc<Edge>>>;

fn started(slot: &EdgeSlot) -> Result<Arc<Edge>, Box<Response>> {
    slot.get().cloned().ok_or_else(|| {
        Box::new(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the edge is starting (waiting for Kafka and the channel topics)",
        ))
    })
}

pub fn routes(edge: EdgeSlot) -> Router {
    Router::new()
        .route("/ws", get(ws_all))
        .route("/ws/sub/{topic}", get(ws_one))
        .route("/stats", get(stats))
        .route("/publish", post(publish))
        .route("/demo/session", get(demo_session))
        .with_state(edge)
}

async fn ws_all(State(slot): State<EdgeSlot>, req: Request) -> Response {
    upgrade(&slot, req, None)
}

async fn ws_one(State(slot): State<EdgeSlot>, Path(topic): Path<String>, req: Request) -> Response {
    upgrade(&slot, req, Some(topic))
}

fn upgrade(slot: &EdgeSlot, mut req: Request, topic: Option<String>) -> Response {
    let (response, on_upgrade) = match super::upgrade::accept(&mut req) {
        Ok(accepted) => accepted,
        Err(refused) => return refused.into_response(),
    };
    let edge = match started(slot) {
        Ok(edge) => edge,
        Err(r) => return *r,
    };
    if !edge.hub.caught_up() {
        // Until the reader has caught up, a snapshot would miss prices and the "live" stream
        // would replay history: send clients to a ready node (or let them retry).
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this edge is still reading the channel topics; retry shortly",
        );
    }
    if edge.shutdown.is_cancelled() {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this edge is shutting down",
        );
    }
    let tracked = edge.clone();
    tokio::spawn(tracked.tasks.track_future(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                session::run(hyper_util::rt::TokioIo::new(upgraded), edge, topic).await;
            }
            Err(e) => tracing::debug!("WebSocket upgrade failed: {e}"),
        }
    }));
    response
}

/// Demo mode only: a token per channel this edge serves, and the instruments.
async fn demo_session(State(slot): State<EdgeSlot>) -> Response {
    let edge = match started(&slot) {
        Ok(edge) => edge,
        Err(r) => return *r,
    };
    let Some(signer) = &edge.demo else {
        return problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "demo mode is off (start the edge with --demo to get demo tokens here)",
        );
    };
    let channels: Vec<String> = edge.hub.topics.keys().cloned().collect();
    let mut body = signer.session(&edge.rules.load(), &channels);
    if let Some(list) = body["channels"].as_array_mut() {
        list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    }
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

async fn stats(State(slot): State<EdgeSlot>) -> Response {
    match started(&slot) {
        Ok(edge) => Json(stats_json(&edge)).into_response(),
        Err(r) => *r,
    }
}

fn stats_json(edge: &Edge) -> serde_json::Value {
    let mut topics: Vec<serde_json::Value> = edge
        .hub
        .topics
        .values()
        .map(|t| {
            let ends: serde_json::Map<String, serde_json::Value> = t
                .partitions
                .iter()
                .enumerate()
                .map(|(p, log)| (p.to_string(), json!(log.next() - 1)))
                .collect();
            json!({
                "topic": t.channel,
                "kafkaTopic": t.kafka_topic,
                "partitions": t.partitions.len(),
                "subscribers": t.subscriber_count(),
                "lastSeqNo": ends,
            })
        })
        .collect();
    topics.sort_by(|a, b| a["topic"].as_str().cmp(&b["topic"].as_str()));
    let s = &edge.stats;
    json!({
        "node": edge.node_id,
        "connections": s.connections(),
        "subscriptions": s.subscriptions.load(Ordering::Relaxed),
        "topics": topics,
        "messagesIn": s.messages_in.load(Ordering::Relaxed),
        "messagesOut": s.messages_out.load(Ordering::Relaxed),
        "recordsIn": edge.hub.records_in.load(Ordering::Relaxed),
        "ready": edge.ready(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    #[serde(rename = "messageId")]
    message_id: String,
    payload: Box<RawValue>,
    #[serde(default)]
    topic: Option<String>,
}

fn problem(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"code": code, "message": message}))).into_response()
}

/// Who is publishing: an API key (`X-Api-Key` or `Authorization: Bearer <key>`) or a JWT with
/// the publish right (`Authorization: Bearer <jwt>`).
fn publisher(edge: &Edge, headers: &HeaderMap) -> Result<String, Box<Response>> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or(bearer);
    let Some(key) = key else {
        telemetry::edge_auth_failure("missing_credentials");
        return Err(Box::new(problem(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send an API key in X-Api-Key, or a token in Authorization: Bearer",
        )));
    };
    if let Some(name) = edge.api_keys.publisher(key) {
        return Ok(format!("key:{name}"));
    }
    match edge.verifier.verify(key) {
        Ok(g) if g.publish => Ok(g.user),
        Ok(_) => {
            telemetry::edge_auth_failure("forbidden_publish");
            Err(Box::new(problem(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this token does not allow publishing",
            )))
        }
        Err(e) => {
            telemetry::edge_auth_failure("bad_api_key_or_token");
            Err(Box::new(problem(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                &format!("not a known API key, and not a valid token ({e})"),
            )))
        }
    }
}

async fn publish(State(slot): State<EdgeSlot>, headers: HeaderMap, body: Bytes) -> Response {
    let edge = match started(&slot) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    let who = match publisher(&edge, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if body.len() > edge.settings.max_frame_bytes {
        return problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "frame_too_large",
            &format!("the limit is {} bytes", edge.settings.max_frame_bytes),
        );
    }
    let req: PublishBody = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("expected {{\"messageId\", \"payload\"}}: {e}"),
            );
        }
    };
    if req.message_id.is_empty() || req.message_id.len() > super::protocol::MAX_MESSAGE_ID {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "messageId must be 1 to 128 bytes",
        );
    }
    let raw_topic = edge.publisher.raw_topic();
    if req.topic.as_ref().is_some_and(|t| *t != raw_topic) {
        return problem(
            StatusCode::BAD_REQUEST,
            "unknown_topic",
            &format!("publish goes to the raw topic {raw_topic:?}"),
        );
    }
    match edge
        .publisher
        .publish(&who, &req.message_id, req.payload.get().as_bytes())
        .await
    {
        Ok(status) => {
            Json(json!({"messageId": req.message_id, "status": status.as_str()})).into_response()
        }
        Err(PublishError::Invalid(why)) => problem(StatusCode::BAD_REQUEST, "bad_request", &why),
        Err(e) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "publish_failed",
            &e.to_string(),
        ),
    }
}
