//! One Server-Sent Events stream (`GET /sse/{topic}`): the same session, subscription, snapshot,
//! slow-client policy and token expiry as a WebSocket connection, written as `data:` events
//! whose `id:` is the stream's position ([`EventId`]). Heartbeats are comments. A client that
//! reconnects with `Last-Event-ID` resumes after it with no gap and no duplicate.
//!
//! The events go to the HTTP response body through a channel of one write: a client that does
//! not read makes the send wait, which is how the session learns it is slow ([`Limits::blocked`],
//! the write timeout).
//!
//! [`Limits::blocked`]: super::cursor::Limits

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::event_id::EventId;
use super::outbox::{Framing, Outbox};
use super::requests;
use super::session::{CLOSE_GOING_AWAY, Session};
use crate::edge::log::entry::clock_us;
use crate::edge::node::Edge;
use crate::edge::wire::protocol::Code;
use crate::edge::wire::server;
use crate::telemetry;

/// A send that waits this long on the client marks it as not keeping up (as a WebSocket write).
const SLOW_WRITE: Duration = Duration::from_millis(100);

/// What a client asked for.
pub struct SseRequest {
    pub topic: String,
    pub token: String,
    pub symbols: Option<Vec<String>>,
    pub max_rate: Option<f64>,
    /// The `Last-Event-ID` header (or query parameter): resume after this position.
    pub last_event_id: Option<String>,
}

/// Why no stream was opened: the HTTP status, the error code and what to tell the client.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

fn refused(status: u16, code: Code, message: impl Into<String>) -> Refused {
    Refused {
        status,
        code: code.as_str(),
        message: message.into(),
    }
}

/// Checks the request (token, topic, ACL, symbols, rate, position) and starts the stream:
/// returns the body's source, whose first events are `ready`, `subscribed` and the snapshot
/// (or, when resuming, the missed prices).
pub fn open(node: Arc<Edge>, req: SseRequest) -> Result<mpsc::Receiver<Bytes>, Refused> {
    let grant = node.verifier.verify(&req.token).map_err(|e| {
        telemetry::edge_auth_failure(e.reason());
        refused(401, Code::Unauthorized, e.to_string())
    })?;
    if let Some(rate) = req.max_rate {
        super::throttle::interval(rate).map_err(|why| refused(400, Code::BadRequest, why))?;
    }
    let resume_from = match req.last_event_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(EventId::parse(text).map_err(|w| refused(400, Code::BadRequest, w))?),
    };
    if !node.stats.connection_opened(node.settings.max_connections) {
        return Err(refused(
            503,
            Code::Unavailable,
            "this edge is at its connection limit; try another node or later",
        ));
    }
    let counted = Counted(node.clone());
    let now = Instant::now();
    let mut s = Session::new(
        node.clone(),
        node.next_session_id(),
        Some(req.topic.clone()),
        now,
    );
    let topic = req.topic;
    let secs = (grant.expires_at + node.leeway_s).saturating_sub(requests::unix_now());
    let (user, expires_at) = (grant.user.clone(), grant.expires_at);
    s.set_grant(grant, now + Duration::from_secs(secs));
    let c = requests::check_subscription(&s, &topic, req.symbols, req.max_rate).map_err(|r| {
        let status = match r.code {
            Code::Forbidden => 403,
            Code::UnknownTopic | Code::UnknownSymbol => 404,
            _ => 400,
        };
        refused(status, r.code, r.message)
    })?;
    let partitions = c.topic.partitions.len();
    if let Some(id) = &resume_from
        && id.positions.len() != partitions
    {
        return Err(refused(
            400,
            Code::BadRequest,
            format!(
                "Last-Event-ID has {} positions; {topic} has {partitions} partitions",
                id.positions.len()
            ),
        ));
    }
    s.send(server::ready(&s.session_id(), &user, expires_at));
    let id = match resume_from {
        Some(id) => {
            let epoch = (!id.epoch.is_empty()).then_some(id.epoch.as_str());
            requests::resume_checked(&mut s, &topic, c, id.from(), epoch);
            id
        }
        None => {
            requests::subscribe_checked(&mut s, &topic, c);
            EventId {
                positions: vec![-1; partitions],
                epoch: String::new(),
            }
        }
    };
    let (tx, rx) = mpsc::channel(1);
    node.tasks.spawn(run(s, id, tx, counted));
    Ok(rx)
}

/// Writes the session's events until it closes, the client goes away or the edge shuts down.
async fn run(mut s: Session, mut id: EventId, tx: mpsc::Sender<Bytes>, _counted: Counted) {
    let node = s.node().clone();
    let write_timeout = Duration::from_millis(node.settings.write_timeout_ms);
    let mut blocked = false;
    loop {
        if node.sessions.closing() && s.closing().is_none() {
            s.close(CLOSE_GOING_AWAY, "server shutting down");
        }
        let now = Instant::now();
        // An event stream's client never writes: the write timeout is what finds one gone.
        s.heard(now);
        let mut out = Outbox::framed(Vec::new(), Framing::Sse(std::mem::take(&mut id)));
        if s.closing().is_some() {
            s.write_control(&mut out);
        } else {
            s.fill(&mut out, blocked, now);
        }
        if let Framing::Sse(next) = std::mem::take(&mut out.framing) {
            id = next;
        }
        if out.frames > 0 {
            let (prices, oldest_ts, oldest_us) =
                (out.prices, out.oldest_ts, out.oldest_received_us);
            let started = Instant::now();
            match tokio::time::timeout(write_timeout, tx.send(Bytes::from(out.buf))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return, // the client went away
                Err(_) => {
                    telemetry::edge_slow_close("write_timeout");
                    return;
                }
            }
            blocked = started.elapsed() >= SLOW_WRITE;
            if prices > 0 {
                let age_ms = (unix_now_ms() - oldest_ts).max(0);
                let held_us = clock_us().saturating_sub(oldest_us);
                s.record_latency(age_ms as f64 / 1000.0, held_us as f64 / 1e6);
            }
            if s.closing().is_none() {
                continue;
            }
        }
        if s.closing().is_some() {
            return;
        }
        let deadline = tokio::time::Instant::from_std(s.next_deadline());
        tokio::select! {
            _ = s.waker().notified() => {}
            _ = tokio::time::sleep_until(deadline) => s.housekeeping(Instant::now()),
            _ = tx.closed() => return,
        }
    }
}

fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Keeps the connection count right however the stream ends.
struct Counted(Arc<Edge>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.stats.connection_closed();
    }
}
