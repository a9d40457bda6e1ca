//! The edge's WebSocket layer against a raw TCP client (no WebSocket library): the opening
//! handshake and its refusals, fragmented messages with control frames between fragments,
//! pings answered with pongs, a client's Close answered in kind, and each protocol violation
//! closing that connection with its close code while the edge keeps serving others.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::service::{Role, Service};
use common::ws::token;
use common::*;

const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// RFC 6455 §1.3: the accept value for the sample key.
const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const MAX_FRAME: usize = 1024;

fn config(prefix: &str) -> String {
    format!(
        "{}\n[edge]\nmax_frame_bytes = {MAX_FRAME}\n\n{}\
         [channels.vip]\nmarkup = {{ unit = \"pips\", bid = \"0.1\", ask = \"0.1\" }}\n",
        kafka_table(prefix, 1),
        instruments(&["EURUSD"])
    )
}

/// Sends an HTTP request with `headers`; returns the response head and the open stream.
fn request(port: u16, headers: &str) -> (String, TcpStream) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "response cut short: {head:?}");
        head.push(b[0]);
    }
    (String::from_utf8(head).unwrap(), s)
}

fn upgrade_headers(version: &str) -> String {
    format!(
        "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: {version}\r\nSec-WebSocket-Key: {SAMPLE_KEY}\r\n"
    )
}

fn connect(port: u16) -> TcpStream {
    let (head, s) = request(port, &upgrade_headers("13"));
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// A client frame: masked, FIN as given.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// Reads one server frame: (opcode, payload). `None` at end of stream.
fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).ok()?;
    assert_eq!(h[0] & 0x70, 0, "no reserved bits");
    assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
    let len = match h[1] & 0x7F {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).unwrap();
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).unwrap();
            u64::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    Some((h[0] & 0x0F, payload))
}

/// Reads frames until one with `opcode` (and, for text, of JSON `type`) arrives.
fn read_until(s: &mut TcpStream, opcode: u8, ty: Option<&str>) -> Vec<u8> {
    let mut seen = Vec::new();
    loop {
        let Some((op, payload)) = read_frame(s) else {
            panic!("stream ended waiting for opcode {opcode} {ty:?}; saw {seen:?}");
        };
        let text = String::from_utf8_lossy(&payload).into_owned();
        let matches =
            op == opcode && ty.is_none_or(|t| text.contains(&format!("\"type\":\"{t}\"")));
        if matches {
            return payload;
        }
        seen.push((op, text));
    }
}

/// The close code of the server's Close frame, after any other frames; then the stream ends.
fn close_code(s: &mut TcpStream) -> u16 {
    let p = read_until(s, 0x8, None);
    assert!(read_frame(s).is_none(), "nothing after Close");
    u16::from_be_bytes([p[0], p[1]])
}

#[test]
fn handshake_fragments_pings_closes_and_protocol_violations() {
    let broker = Broker::start();
    let prefix = unique_prefix("edge-websocket");
    let (_dir, path) = write_config(&config(&prefix));
    create_topic(&broker, &format!("{prefix}.raw"), 1);
    let node = Service::start(&broker, &path, Role::Run);
    let port = node.http_port;
    let tok = token("wanda", &["vip"], None, false, 600);

    // Handshake: the accept key of RFC 6455's example; refusals say why.
    let (head, _s) = request(port, &upgrade_headers("13"));
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains(&format!(
            "sec-websocket-accept: {}",
            SAMPLE_ACCEPT.to_ascii_lowercase()
        )),
        "{head}"
    );
    let (head, _) = request(port, "");
    assert!(head.starts_with("HTTP/1.1 426"), "plain GET: {head}");
    let (head, _) = request(port, &upgrade_headers("8"));
    assert!(head.starts_with("HTTP/1.1 426"), "version 8: {head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{head}"
    );
    let (head, _) = request(
        port,
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 400"), "no key: {head}");

    // A setup in three fragments with a ping between them: pong with the same payload, then
    // ready and the subscription it asked for.
    let mut s = connect(port);
    let setup = format!(r#"{{"type":"setup","token":"{tok}","topics":["vip"]}}"#);
    let (a, rest) = setup.as_bytes().split_at(10);
    let (b, c) = rest.split_at(rest.len() / 2);
    let mut bytes = frame(false, 0x1, a);
    bytes.extend(frame(true, 0x9, b"hb-1"));
    bytes.extend(frame(false, 0x0, b));
    // Written byte by byte at the seam: frames may arrive in any pieces.
    s.write_all(&bytes).unwrap();
    for byte in frame(true, 0x0, c) {
        s.write_all(&[byte]).unwrap();
    }
    assert_eq!(read_until(&mut s, 0xA, None), b"hb-1");
    read_until(&mut s, 0x1, Some("ready"));
    read_until(&mut s, 0x1, Some("subscribed"));
    read_until(&mut s, 0x1, Some("snapshot"));
    // A protocol-level ping (the JSON one) and a frame of 126+ bytes (16-bit length).
    s.write_all(&frame(true, 0x1, br#"{"type":"ping"}"#))
        .unwrap();
    read_until(&mut s, 0x1, Some("pong"));
    let padded = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(300));
    s.write_all(&frame(true, 0x1, padded.as_bytes())).unwrap();
    let e = read_until(&mut s, 0x1, Some("error"));
    assert!(String::from_utf8_lossy(&e).contains("bad_request"));
    // The client closes: the edge answers with the same code and ends the stream.
    let mut close = 4001u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    s.write_all(&frame(true, 0x8, &close)).unwrap();
    assert_eq!(close_code(&mut s), 4001);

    // Violations close the offending connection with their code, after a `bad_request` (or
    // `frame_too_large`) error that says what was wrong.
    let unmasked = {
        let mut f = vec![0x81, 2];
        f.extend_from_slice(b"{}");
        f
    };
    let mut rsv = frame(true, 0x1, b"{}");
    rsv[0] |= 0x20;
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("unmasked", unmasked, 1002, "bad_request"),
        ("reserved bit", rsv, 1002, "bad_request"),
        ("unknown opcode", frame(true, 0x5, b""), 1002, "bad_request"),
        (
            "continuation first",
            frame(true, 0x0, b"{}"),
            1002,
            "bad_request",
        ),
        (
            "invalid UTF-8",
            frame(true, 0x1, &[b'"', 0xC3, 0x28]),
            1007,
            "bad_request",
        ),
        (
            "beyond the hard limit",
            frame(true, 0x1, &vec![b' '; MAX_FRAME * 4 + 1]),
            1009,
            "frame_too_large",
        ),
    ];
    for (what, bytes, code, error) in cases {
        let mut s = connect(port);
        s.write_all(&frame(true, 0x1, setup.as_bytes())).unwrap();
        read_until(&mut s, 0x1, Some("snapshot"));
        let _ = s.write_all(&bytes);
        let e = read_until(&mut s, 0x1, Some("error"));
        assert!(
            String::from_utf8_lossy(&e).contains(&format!("\"code\":\"{error}\"")),
            "{what}: {}",
            String::from_utf8_lossy(&e)
        );
        assert_eq!(close_code(&mut s), code, "{what}");
    }

    // The edge is unaffected: a new client is served.
    let mut s = connect(port);
    s.write_all(&frame(true, 0x1, setup.as_bytes())).unwrap();
    read_until(&mut s, 0x1, Some("snapshot"));
    let stats: serde_json::Value =
        serde_json::from_str(&http_get(port, "/stats").unwrap()).unwrap();
    assert!(stats["connections"].as_i64().unwrap() >= 1, "{stats}");
}
