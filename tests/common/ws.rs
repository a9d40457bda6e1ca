//! A real WebSocket client for the edge tests (tokio-tungstenite), tokens signed with the test
//! secret, and a per-partition record of what a client received.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use pricefeed::edge::auth::{Claims, sign_hs256};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The HS256 secret every test process gets in PRICEFEED_JWT_SECRET.
pub const SECRET: &str = "pricefeed-test-secret-0123456789abcdef";

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A token for `sub` valid for `ttl_s` seconds (negative: already expired).
pub fn token(
    sub: &str,
    channels: &[&str],
    symbols: Option<&[&str]>,
    publish: bool,
    ttl_s: i64,
) -> String {
    let claims = Claims {
        sub: sub.into(),
        channels: channels.iter().map(|c| c.to_string()).collect(),
        symbols: symbols.map(|s| s.iter().map(|s| s.to_string()).collect()),
        publish,
        exp: (unix_now() + ttl_s).max(0) as u64,
        nbf: None,
        max_rate: None,
        iss: None,
        aud: None,
    };
    sign_hs256(&claims, SECRET.as_bytes()).unwrap()
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Close(Option<u16>, String),
    Eof,
    Error(String),
    Timeout,
}

pub struct Ws {
    inner: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames read while looking for another type.
    backlog: VecDeque<Value>,
    pub ended: Option<Ended>,
}

impl Ws {
    pub async fn connect(port: u16, path: &str) -> Ws {
        Self::connect_with(port, path, None).await
    }

    /// With a small receive buffer, a client that stops reading pushes back on the server soon.
    pub async fn connect_with(port: u16, path: &str, recv_buffer: Option<u32>) -> Ws {
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(b) = recv_buffer {
            socket.set_recv_buffer_size(b).unwrap();
        }
        let stream = socket
            .connect(([127, 0, 0, 1], port).into())
            .await
            .expect("connect to the edge");
        let url = format!("ws://127.0.0.1:{port}{path}");
        let (inner, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .expect("WebSocket handshake");
        Ws {
            inner,
            backlog: VecDeque::new(),
            ended: None,
        }
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, s: &str) {
        self.inner
            .send(Message::text(s.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.inner.send(m).await.expect("send");
    }

    /// The next JSON frame (backlog first), or `None` when the connection ended or nothing came
    /// within `timeout` (see `ended`).
    pub async fn next(&mut self, timeout: Duration) -> Option<Value> {
        if let Some(v) = self.backlog.pop_front() {
            return Some(v);
        }
        self.read(timeout).await
    }

    async fn read(&mut self, timeout: Duration) -> Option<Value> {
        if self.ended.is_some() {
            return None;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let m = match tokio::time::timeout_at(deadline, self.inner.next()).await {
                Err(_) => return None,
                Ok(None) => {
                    self.ended = Some(Ended::Eof);
                    return None;
                }
                Ok(Some(Err(e))) => {
                    self.ended = Some(Ended::Error(e.to_string()));
                    return None;
                }
                Ok(Some(Ok(m))) => m,
            };
            match m {
                Message::Text(t) => {
                    return Some(serde_json::from_str(&t).expect("server frames are JSON"));
                }
                Message::Close(c) => {
                    self.ended = Some(Ended::Close(
                        c.as_ref().map(|c| u16::from(c.code)),
                        c.map(|c| c.reason.to_string()).unwrap_or_default(),
                    ));
                    return None;
                }
                _ => continue,
            }
        }
    }

    /// Reads until a frame of type `ty` (other frames are kept for `next`). Panics on timeout.
    pub async fn expect(&mut self, ty: &str) -> Value {
        if let Some(i) = self.backlog.iter().position(|v| v["type"] == ty) {
            return self.backlog.remove(i).unwrap();
        }
        loop {
            match self.read(Duration::from_secs(20)).await {
                Some(v) if v["type"] == ty => return v,
                Some(v) => self.backlog.push_back(v),
                None => panic!(
                    "no {ty} frame (ended: {:?}; read meanwhile: {:?})",
                    self.ended, self.backlog
                ),
            }
        }
    }

    /// Expects an `error` frame with `code`.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let e = self.expect("error").await;
        assert_eq!(e["code"], code, "error frame: {e}");
        e
    }

    /// Reads until the connection ends; returns how.
    pub async fn until_closed(&mut self, timeout: Duration) -> &Ended {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.ended.is_none() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                self.ended = Some(Ended::Timeout);
                break;
            }
            if let Some(v) = self.read(left).await {
                self.backlog.push_back(v);
            }
        }
        self.ended.as_ref().unwrap()
    }

    pub async fn setup(&mut self, token: &str) -> Value {
        self.send(json!({"type": "setup", "token": token})).await;
        self.expect("ready").await
    }

    pub fn backlog(&self) -> &VecDeque<Value> {
        &self.backlog
    }

    pub async fn close(mut self) {
        let _ = self.inner.close(None).await;
    }
}

/// What one client received on one topic: per partition, the seqNos of `message` frames in
/// arrival order, and the position of the snapshots.
#[derive(Default, Debug)]
pub struct Received {
    pub seqs: BTreeMap<i64, Vec<i64>>,
    /// Per partition, the last seqNo covered (snapshot `upTo` or a message).
    pub last: BTreeMap<i64, i64>,
    pub messages: Vec<Value>,
    /// Messages whose `prev` is past the last seqNo taken in (records missed in between).
    pub gaps: usize,
}

impl Received {
    /// Takes in a `snapshot` or `message` frame.
    pub fn take(&mut self, v: &Value) {
        match v["type"].as_str() {
            Some("snapshot") => {
                for (p, seq) in v["upTo"].as_object().unwrap() {
                    let p: i64 = p.parse().unwrap();
                    let seq = seq.as_i64().unwrap();
                    let e = self.last.entry(p).or_insert(seq);
                    *e = (*e).max(seq);
                }
            }
            Some("message") => {
                let p = v["partition"].as_i64().unwrap();
                let seq = v["seqNo"].as_i64().unwrap();
                if let (Some(last), Some(prev)) = (self.last.get(&p), v["prev"].as_i64())
                    && prev > *last
                    && v.get("conflated").is_none()
                {
                    self.gaps += 1;
                }
                self.seqs.entry(p).or_default().push(seq);
                self.last.insert(p, seq);
                self.messages.push(v.clone());
            }
            _ => {}
        }
    }

    /// The `from` map of a resume.
    pub fn resume_from(&self) -> Value {
        let m: serde_json::Map<String, Value> = self
            .last
            .iter()
            .map(|(p, s)| (p.to_string(), json!(s)))
            .collect();
        Value::Object(m)
    }

    pub fn count(&self) -> usize {
        self.messages.len()
    }
}
