//! The one error type of every HTTP route: a status, a stable code and a message for people,
//! answered as `{"code", "message"}` (the `Problem` schema of `/openapi.json`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An error: a stable code and a message for people.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(skip)]
    pub status: StatusCode,
    /// e.g. `unauthorized`, `bad_request`, `unavailable` (docs/protocol.md section 6).
    pub code: &'static str,
    pub message: String,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Problem {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut r = (status, Json(self)).into_response();
        if status == StatusCode::UPGRADE_REQUIRED {
            // The WebSocket endpoints say which version they speak (RFC 6455 section 4.4).
            r.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        r
    }
}
