//! The process's HTTP application. Every route is registered through an `OpenApiRouter` from a
//! handler carrying `#[utoipa::path]`, and `/openapi.json` is what those registrations produce,
//! so the document lists exactly the routes this process serves (which depend on its roles). A
//! request for any other path gets a JSON 404 with the code `no_route`.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::edge_routes::{self, EdgeSlot};
use super::problem::Problem;
use super::{audit_route, ops, sse_route, web};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pricefeed",
        description = "Kafka-backed price fan-out: margin rules per channel, a WebSocket edge with \
            the Kafka offset as seqNo and resume. The WebSocket protocol itself is in \
            docs/protocol.md; the routes below are the HTTP surface.",
    ),
    tags(
        (name = "websocket", description = "WebSocket endpoints (Micro Socket protocol, docs/protocol.md)"),
        (name = "sse", description = "Server-Sent Events: prices over plain HTTP, with Last-Event-ID resume (docs/protocol.md section 18)"),
        (name = "publish", description = "Publishing raw prices over HTTP"),
        (name = "audit", description = "What a channel quoted when, from which source price, under which rules"),
        (name = "operations", description = "Health, readiness, metrics and statistics"),
        (name = "demo", description = "Demo mode only"),
        (name = "ui", description = "Pages and the client library"),
        (name = "api", description = "This description"),
    )
)]
struct ApiDoc;

/// The serialized document, set once the routes are assembled.
type Spec = Arc<OnceLock<String>>;

/// The routes of a process: health and metrics always; the edge's routes, the pages and the
/// client library when it runs an edge; `/openapi.json` describing them all.
pub fn app(state: ops::HttpState, edge: Option<EdgeSlot>) -> Router {
    let spec: Spec = Arc::new(OnceLock::new());
    let mut api = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(ops::router(state))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(openapi_json))
                .with_state(spec.clone()),
        );
    if let Some(slot) = edge {
        api = api
            .merge(edge_routes::routes(slot.clone()))
            .merge(sse_route::routes(slot.clone()))
            .merge(audit_route::routes(slot))
            .merge(web::routes());
    }
    let (router, doc) = api.split_for_parts();
    let _ = spec.set(
        doc.to_pretty_json()
            .expect("the OpenAPI document serializes"),
    );
    router.fallback(no_route)
}

/// This document: OpenAPI 3.1, generated from the route handlers.
#[utoipa::path(get, path = "/openapi.json", tag = "api",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
async fn openapi_json(State(spec): State<Spec>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        spec.get().cloned().unwrap_or_default(),
    )
        .into_response()
}

async fn no_route(method: Method, uri: Uri) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "no_route",
        format!(
            "no route {method} {}; the routes are in /openapi.json",
            uri.path()
        ),
    )
}
