//! The pages and the client library the edge serves, compiled into the binary (they work
//! offline: no CDN, no build step): `/` (the trading UI), `/client.js` (the client library,
//! docs/client.md), `/docs` (the protocol playground and the HTTP API reference), `/dashboard`
//! (live operations charts), and the pages' scripts and style under `/ui/`.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const INDEX: &str = include_str!("index.html");
const DOCS: &str = include_str!("docs.html");
const DASHBOARD: &str = include_str!("dashboard.html");
const CLIENT: &str = include_str!("client.js");

/// The files under `/ui/`: name, content type, body.
const UI_FILES: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("app.js")),
    ("docs.js", JS, include_str!("docs.js")),
    ("dashboard.js", JS, include_str!("dashboard.js")),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("style.css"),
    ),
];
const JS: &str = "text/javascript; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The files change with the binary; revalidating is cheap.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub fn routes() -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(index))
        .routes(routes!(docs))
        .routes(routes!(dashboard))
        .routes(routes!(client_js))
        .routes(routes!(ui_file))
}

/// The trading UI: two channels side by side (needs demo mode for its tokens).
#[utoipa::path(get, path = "/", tag = "ui",
    responses((status = 200, description = "The trading UI", content_type = "text/html")))]
async fn index() -> Response {
    asset(HTML, INDEX)
}

/// The protocol playground (connect, send each message type, see every frame) and a readable
/// rendering of `/openapi.json`.
#[utoipa::path(get, path = "/docs", tag = "ui",
    responses((status = 200, description = "The playground and API reference", content_type = "text/html")))]
async fn docs() -> Response {
    asset(HTML, DOCS)
}

/// The ops dashboard: connections, delivered prices per channel, latency, slow clients, consumer
/// lag and the pipeline's rates, from this process's `/metrics` and `/stats`.
#[utoipa::path(get, path = "/dashboard", tag = "ui",
    responses((status = 200, description = "The dashboard", content_type = "text/html")))]
async fn dashboard() -> Response {
    asset(HTML, DASHBOARD)
}

/// The client library: an ES module for browsers and Node (docs/client.md).
#[utoipa::path(get, path = "/client.js", tag = "ui",
    responses((status = 200, description = "The client library", content_type = "text/javascript")))]
async fn client_js() -> Response {
    asset(JS, CLIENT)
}

/// The pages' scripts and style.
#[utoipa::path(get, path = "/ui/{file}", tag = "ui",
    params(("file" = String, Path, description = "app.js, docs.js, dashboard.js or style.css", example = "app.js")),
    responses(
        (status = 200, description = "The file"),
        (status = 404, description = "No such file"),
    ))]
async fn ui_file(Path(file): Path<String>) -> Response {
    match UI_FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => asset(content_type, body),
        None => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}
