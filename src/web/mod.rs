//! The pages and the client library the edge serves, compiled into the binary (they work
//! offline: no CDN, no build step): `/` (the trading UI), `/client.js` (the client library,
//! docs/client.md), and the UI's script and style under `/ui/`.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("index.html");
const CLIENT: &str = include_str!("client.js");
const APP: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The files change with the binary; revalidating is cheap.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

pub fn routes() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/client.js",
            get(|| async { asset("text/javascript; charset=utf-8", CLIENT) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}
