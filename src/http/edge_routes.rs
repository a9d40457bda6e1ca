//! The edge's HTTP routes: `/ws`, `/ws/sub/{topic}`, `/stats`, `POST /publish` and, in demo
//! mode, `/demo/session`. Each handler's `#[utoipa::path]` is its entry in `/openapi.json`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::bodies::{PartitionReading, PublishAck, PublishRequest, Stats, TopicStats};
use super::problem::Problem;
use super::upgrade;
use crate::edge::connection::driver;
use crate::edge::demo::DemoSession;
use crate::edge::node::Edge;
use crate::edge::publish::PublishError;
use crate::edge::wire::protocol::MAX_MESSAGE_ID;
use crate::telemetry;

/// The edge once it has started (the HTTP server runs before, for health checks).
pub type EdgeSlot = Arc<std::sync::OnceLock<Arc<Edge>>>;

/// The started edge, for a handler; a request that comes before is answered 503.
pub struct Started(pub Arc<Edge>);

impl FromRequestParts<EdgeSlot> for Started {
    type Rejection = Problem;

    async fn from_request_parts(_: &mut Parts, slot: &EdgeSlot) -> Result<Started, Problem> {
        slot.get().cloned().map(Started).ok_or_else(|| {
            Problem::unavailable("the edge is starting (waiting for Kafka and the channel topics)")
        })
    }
}

pub fn routes(edge: EdgeSlot) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(ws_all))
        .routes(routes!(ws_one))
        .routes(routes!(stats))
        .routes(routes!(publish))
        .routes(routes!(demo_session))
        .with_state(edge)
}

/// A WebSocket connection for any number of topics: the Micro Socket protocol
/// (docs/protocol.md). Send `setup` with a token first.
#[utoipa::path(get, path = "/ws", tag = "websocket",
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a valid upgrade request (no Sec-WebSocket-Key, not HTTP/1.1)", body = Problem),
        (status = 426, description = "Not a WebSocket upgrade, or a version other than 13", body = Problem),
        (status = 503, description = "The edge is starting, still reading the channel topics, or shutting down", body = Problem),
    ))]
async fn ws_all(State(slot): State<EdgeSlot>, req: Request) -> Response {
    accept(&slot, req, None).unwrap_or_else(IntoResponse::into_response)
}

/// A WebSocket connection for one topic, subscribed right after `setup` (or resumed, with the
/// setup's `resume`).
#[utoipa::path(get, path = "/ws/sub/{topic}", tag = "websocket",
    params(("topic" = String, Path, description = "A channel this edge serves", example = "vip")),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a valid upgrade request", body = Problem),
        (status = 426, description = "Not a WebSocket upgrade, or a version other than 13", body = Problem),
        (status = 503, description = "The edge is not serving yet, or shutting down", body = Problem),
    ))]
async fn ws_one(State(slot): State<EdgeSlot>, Path(topic): Path<String>, req: Request) -> Response {
    accept(&slot, req, Some(topic)).unwrap_or_else(IntoResponse::into_response)
}

/// The handshake is checked before the edge's state: a request that is not a WebSocket upgrade
/// gets the same answer whether or not the edge has started.
fn accept(slot: &EdgeSlot, mut req: Request, topic: Option<String>) -> Result<Response, Problem> {
    let (response, on_upgrade) = upgrade::accept(&mut req)?;
    let edge = slot.get().cloned().ok_or_else(|| {
        Problem::unavailable("the edge is starting (waiting for Kafka and the channel topics)")
    })?;
    if !edge.hub.caught_up() {
        // Until the reader has caught up, a snapshot would miss prices and the "live" stream
        // would replay history: send clients to a ready node (or let them retry).
        return Err(Problem::unavailable(
            "this edge is still reading the channel topics; retry shortly",
        ));
    }
    if edge.shutdown.is_cancelled() {
        return Err(Problem::unavailable("this edge is shutting down"));
    }
    let tracked = edge.clone();
    tokio::spawn(tracked.tasks.track_future(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                driver::run(hyper_util::rt::TokioIo::new(upgraded), edge, topic).await;
            }
            Err(e) => tracing::debug!("WebSocket upgrade failed: {e}"),
        }
    }));
    Ok(response)
}

/// Demo mode only (`--demo`): a one-hour client token per channel this edge serves, and the
/// instruments (for the trading UI at `/`).
#[utoipa::path(get, path = "/demo/session", tag = "demo",
    responses(
        (status = 200, description = "A token per channel, and the instruments", body = DemoSession),
        (status = 404, description = "Demo mode is off", body = Problem),
        (status = 503, description = "The edge is starting", body = Problem),
    ))]
async fn demo_session(Started(edge): Started) -> Result<Response, Problem> {
    let Some(signer) = &edge.demo else {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "demo mode is off (start the edge with --demo to get demo tokens here)",
        ));
    };
    let channels: Vec<String> = edge.hub.topics().keys().cloned().collect();
    let body = signer.session(&edge.rules.load(), &channels);
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

/// This edge's connections, subscriptions and, per topic, subscribers and positions.
#[utoipa::path(get, path = "/stats", tag = "operations",
    responses(
        (status = 200, description = "Connections, subscriptions and per-topic positions", body = Stats),
        (status = 503, description = "The edge is starting", body = Problem),
    ))]
async fn stats(Started(edge): Started) -> Json<Stats> {
    Json(stats_body(&edge))
}

fn stats_body(edge: &Edge) -> Stats {
    let mut topics: Vec<TopicStats> = edge
        .hub
        .topics()
        .values()
        .map(|t| TopicStats {
            topic: t.channel.clone(),
            kafka_topic: t.kafka_topic.clone(),
            partitions: t.partitions.len(),
            subscribers: t.subscriber_count(),
            last_seq_no: t
                .partitions
                .iter()
                .enumerate()
                .map(|(p, log)| (p.to_string(), log.next() - 1))
                .collect(),
            reading: t
                .partitions
                .iter()
                .enumerate()
                .map(|(p, log)| {
                    let r = log.progress.reading();
                    let reading = PartitionReading {
                        position: r.position,
                        end: r.end,
                        lag: r.lag,
                        idle_ms: r.idle_ms,
                        stalled: r.stalled,
                    };
                    (p.to_string(), reading)
                })
                .collect(),
        })
        .collect();
    topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    let s = &edge.stats;
    Stats {
        node: edge.node_id.clone(),
        connections: s.connections(),
        subscriptions: s.subscriptions.load(Ordering::Relaxed),
        topics,
        messages_in: s.messages_in.load(Ordering::Relaxed),
        messages_out: s.messages_out.load(Ordering::Relaxed),
        records_in: edge.hub.records_in.load(Ordering::Relaxed),
        ready: edge.ready(),
    }
}

/// The API key (or token) a backend presents: `X-Api-Key`, else `Authorization: Bearer`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or(bearer)
}

/// Who is publishing: an API key (`X-Api-Key` or `Authorization: Bearer <key>`) or a JWT with
/// the publish right (`Authorization: Bearer <jwt>`).
fn publisher(edge: &Edge, headers: &HeaderMap) -> Result<String, Problem> {
    let Some(key) = presented_key(headers) else {
        telemetry::edge_auth_failure("missing_credentials");
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send an API key in X-Api-Key, or a token in Authorization: Bearer",
        ));
    };
    if let Some(name) = edge.api_keys.publisher(key) {
        return Ok(format!("key:{name}"));
    }
    match edge.verifier.verify(key) {
        Ok(g) if g.publish => Ok(g.user),
        Ok(_) => {
            telemetry::edge_auth_failure("forbidden_publish");
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this token does not allow publishing",
            ))
        }
        Err(e) => {
            telemetry::edge_auth_failure("bad_api_key_or_token");
            Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!("not a known API key, and not a valid token ({e})"),
            ))
        }
    }
}

/// Publishes one raw price for backends: with an API key (`X-Api-Key`, or
/// `Authorization: Bearer <key>`) or a JWT with the publish right (`Authorization: Bearer`).
/// Validated like the feed, deduplicated per publisher by `messageId`, answered after Kafka
/// acknowledged the write.
#[utoipa::path(post, path = "/publish", tag = "publish",
    request_body = PublishRequest,
    params(("X-Api-Key" = Option<String>, Header, description = "An API key from PRICEFEED_API_KEYS")),
    responses(
        (status = 200, description = "Written (`ok`) or already written (`duplicate`)", body = PublishAck),
        (status = 400, description = "Not a valid request or raw price (`bad_request`, `unknown_topic`)", body = Problem),
        (status = 401, description = "No or an unknown API key or token", body = Problem),
        (status = 403, description = "A token without the publish right", body = Problem),
        (status = 413, description = "Larger than max_frame_bytes", body = Problem),
        (status = 503, description = "Kafka did not acknowledge (`publish_failed`), or the edge is starting", body = Problem),
    ))]
async fn publish(
    Started(edge): Started,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<PublishAck>, Problem> {
    let who = publisher(&edge, &headers)?;
    let limit = edge.settings.max_frame_bytes;
    if body.len() > limit {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "frame_too_large",
            format!("the limit is {limit} bytes"),
        ));
    }
    let req: PublishRequest = serde_json::from_slice(&body).map_err(|e| {
        Problem::bad_request(format!("expected {{\"messageId\", \"payload\"}}: {e}"))
    })?;
    if req.message_id.is_empty() || req.message_id.len() > MAX_MESSAGE_ID {
        return Err(Problem::bad_request("messageId must be 1 to 128 bytes"));
    }
    let raw_topic = edge.publisher.raw_topic();
    if req.topic.as_ref().is_some_and(|t| *t != raw_topic) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "unknown_topic",
            format!("publish goes to the raw topic {raw_topic:?}"),
        ));
    }
    match edge
        .publisher
        .publish(&who, &req.message_id, req.payload.get().as_bytes())
        .await
    {
        Ok(status) => Ok(Json(PublishAck {
            message_id: req.message_id,
            status: status.as_str(),
        })),
        Err(PublishError::Invalid(why)) => Err(Problem::bad_request(why)),
        Err(e) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "publish_failed",
            e.to_string(),
        )),
    }
}
