//! The WebSocket opening handshake (RFC 6455 §4.2): checks the client's upgrade request and
//! answers `101 Switching Protocols`; the connection it yields is served by [`super::session`].

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, Version, header};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;

use super::problem::Problem;

/// A refused handshake: the status, and a message for the client.
fn refused(status: StatusCode, message: &'static str) -> Problem {
    Problem::new(status, "bad_request", message)
}

/// True when the comma-separated header `name` holds `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Checks the upgrade request; returns the `101` response and the connection to come.
pub fn accept(req: &mut Request) -> Result<(Response, OnUpgrade), Problem> {
    let h = req.headers();
    if req.version() < Version::HTTP_11 {
        return Err(refused(StatusCode::BAD_REQUEST, "WebSocket needs HTTP/1.1"));
    }
    if !has_token(h, header::CONNECTION, "upgrade") || !has_token(h, header::UPGRADE, "websocket") {
        return Err(refused(
            StatusCode::UPGRADE_REQUIRED,
            "this is a WebSocket endpoint: send Connection: Upgrade and Upgrade: websocket",
        ));
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err(refused(
            StatusCode::UPGRADE_REQUIRED,
            "only WebSocket version 13 is supported",
        ));
    }
    // The key is 16 random bytes in base64: 24 characters ending in "==".
    let key = match h.get(header::SEC_WEBSOCKET_KEY) {
        Some(k) if k.len() == 24 && k.as_bytes().ends_with(b"==") => k.as_bytes().to_vec(),
        _ => {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "missing or malformed Sec-WebSocket-Key",
            ));
        }
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "this connection cannot be upgraded",
        ));
    };
    let accept = tungstenite::handshake::derive_accept_key(&key);
    let response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(axum::body::Body::empty())
        .expect("static response parts");
    Ok((response, on_upgrade))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().uri("/ws");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    const GOOD: [(&str, &str); 4] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn a_request_that_is_not_a_proper_upgrade_is_refused_with_a_reason() {
        let without = |name: &str| -> Vec<(&str, &str)> {
            GOOD.iter().copied().filter(|(k, _)| *k != name).collect()
        };
        let cases = [
            (without("connection"), StatusCode::UPGRADE_REQUIRED),
            (without("upgrade"), StatusCode::UPGRADE_REQUIRED),
            (
                without("sec-websocket-version"),
                StatusCode::UPGRADE_REQUIRED,
            ),
            (without("sec-websocket-key"), StatusCode::BAD_REQUEST),
        ];
        for (headers, status) in cases {
            let Err(refusal) = accept(&mut request(&headers)) else {
                panic!("accepted {headers:?}");
            };
            assert_eq!(refusal.status, status, "{headers:?}");
        }
        let mut v8 = GOOD.to_vec();
        v8[2] = ("sec-websocket-version", "8");
        let refusal = accept(&mut request(&v8)).unwrap_err().into_response();
        assert_eq!(refusal.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(refusal.headers()["sec-websocket-version"], "13");
    }

    #[test]
    fn a_proper_request_without_a_connection_to_upgrade_is_refused() {
        // Only the HTTP server attaches the connection; a bare request has none.
        let refusal = accept(&mut request(&GOOD)).unwrap_err();
        assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
        assert_eq!(refusal.message, "this connection cannot be upgraded");
    }
}
