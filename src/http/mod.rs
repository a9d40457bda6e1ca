//! The process's HTTP surface, in one place: the application ([`app`]: every route, and
//! `/openapi.json` generated from them), the routes every process serves ([`ops`]: metrics,
//! health, readiness), the edge's routes ([`edge_routes`]: the WebSocket endpoints behind the
//! [`upgrade`] handshake, `/stats`, `POST /publish`, `/demo/session`; [`sse_route`], the
//! Server-Sent Events stream; [`audit_route`], quote audit) with their JSON
//! [`bodies`] and one error type ([`problem`]), the pages ([`web`]), and serving them
//! ([`serve`], over [`tls`] when configured).

pub mod app;
pub mod audit_route;
pub mod bodies;
pub mod edge_routes;
pub mod ops;
pub mod problem;
pub mod serve;
pub mod sse_route;
pub mod tls;
pub mod upgrade;
pub mod web;
