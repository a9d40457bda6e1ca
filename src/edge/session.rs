//! One WebSocket connection. A single task owns the socket: it reads client frames while the
//! previous write is still in flight, and writes everything that is ready (control frames, then
//! prices pulled from each subscription) in one flush. A client that does not read only stalls
//! its own task.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{Sink, Stream};
use tokio::sync::Notify;

use super::Edge;
use super::auth::Grant;
use super::hub::Budget;
use super::protocol::{self, Code};
use super::requests::TokenBucket;
use super::subscription::{Out, PullContext, Subscription, Trouble};
use crate::telemetry;

/// Most price frames (and bytes) written per flush.
const BATCH_FRAMES: usize = 512;
pub const BATCH_BYTES: usize = 64 * 1024;
/// Control frames queued for a client that is not reading before it is dropped.
pub(super) const MAX_CONTROL_QUEUE: usize = 256;
/// Time to deliver a Close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A write that waits this long on the client marks it as not keeping up: only then does a
/// backlog count as the client's lag (a burst of the feed is not).
const SLOW_WRITE: Duration = Duration::from_millis(100);

/// WebSocket close codes.
pub(super) const CLOSE_GOING_AWAY: u16 = 1001;
pub(super) const CLOSE_POLICY: u16 = 1008;
pub(super) const CLOSE_TOO_BIG: u16 = 1009;
pub(super) const CLOSE_TRY_LATER: u16 = 1013;

enum SocketEvent {
    Read(Option<Result<Message, axum::Error>>),
    Flushed(Result<(), axum::Error>),
}

/// Reads the next frame, or completes the pending flush, whichever comes first.
async fn socket_event(ws: &mut WebSocket, flushing: bool) -> SocketEvent {
    poll_fn(|cx| {
        if flushing
            && let Poll::Ready(r) = Sink::<Message>::poll_flush(std::pin::Pin::new(&mut *ws), cx)
        {
            return Poll::Ready(SocketEvent::Flushed(r));
        }
        match Stream::poll_next(std::pin::Pin::new(&mut *ws), cx) {
            Poll::Ready(m) => Poll::Ready(SocketEvent::Read(m)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Queues `msg` in the socket's write buffer without writing (the batch is flushed at once).
fn feed(ws: &mut WebSocket, msg: Message) -> Result<(), axum::Error> {
    let mut pinned = std::pin::Pin::new(ws);
    pinned.as_mut().start_send(msg)
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(super) struct Session {
    pub(super) edge: Arc<Edge>,
    pub(super) id: u64,
    /// `Some(topic)` on `/ws/sub/{topic}`.
    pub(super) only_topic: Option<String>,
    pub(super) grant: Option<Grant>,
    pub(super) expires: Option<Instant>,
    pub(super) subs: Vec<Subscription>,
    pub(super) waker: Arc<Notify>,
    pub(super) control: VecDeque<Utf8Bytes>,
    /// Publish results, filled by publish tasks (created on the first publish: most sessions
    /// never publish, and an idle connection should cost little).
    pub(super) acks: Option<Arc<std::sync::Mutex<Vec<Utf8Bytes>>>>,
    pub(super) rate: TokenBucket,
    /// Set when the session must end: the close code and reason.
    pub(super) closing: Option<(u16, &'static str)>,
    pub(super) last_heard: Instant,
    pub(super) next_ping: Instant,
    pub(super) setup_deadline: Instant,
    /// When the write in flight started.
    pub(super) flushing_since: Option<Instant>,
    /// Source timestamp of the oldest price in the write in flight.
    pub(super) oldest_ts: i64,
    pub(super) ping_pending: bool,
    /// The last write waited on the client for at least [`SLOW_WRITE`]: it is not keeping up.
    pub(super) blocked: bool,
}

/// Serves one upgraded connection until it closes or the edge shuts down.
pub async fn run(mut ws: WebSocket, edge: Arc<Edge>, only_topic: Option<String>) {
    let id = edge.next_session_id();
    let admitted = edge.stats.connection_opened(edge.settings.max_connections);
    let _guard = ConnectionGuard(edge.clone(), admitted);
    if !admitted {
        let _ = feed(
            &mut ws,
            Message::Text(protocol::error(
                Code::Unavailable,
                "this edge is at its connection limit; try another node or later",
                None,
            )),
        );
        Box::pin(close_now(&mut ws, CLOSE_TRY_LATER, "too many connections")).await;
        return;
    }
    let now = Instant::now();
    let heartbeat = Duration::from_millis(edge.settings.heartbeat_ms);
    let mut s = Session {
        id,
        only_topic,
        grant: None,
        expires: None,
        subs: Vec::new(),
        waker: Arc::new(Notify::new()),
        control: VecDeque::new(),
        acks: None,
        rate: TokenBucket::new(edge.settings.messages_per_second),
        closing: None,
        last_heard: now,
        next_ping: now + heartbeat,
        setup_deadline: now + Duration::from_millis(edge.settings.setup_timeout_ms),
        flushing_since: None,
        oldest_ts: 0,
        ping_pending: false,
        blocked: false,
        edge,
    };
    let shutdown = s.edge.shutdown.clone();
    loop {
        if s.closing.is_some() {
            break;
        }
        if s.flushing_since.is_none() {
            match s.fill(&mut ws) {
                Ok(0) => {}
                Ok(_) => {
                    s.blocked = false;
                    // Most writes complete at once; only one the kernel cannot take keeps the
                    // session in the flushing state (and marks the client as pushing back).
                    match futures_util::FutureExt::now_or_never(futures_util::SinkExt::flush(
                        &mut ws,
                    )) {
                        Some(Ok(())) => s.flushed(),
                        Some(Err(_)) => break,
                        None => s.flushing_since = Some(Instant::now()),
                    }
                }
                Err(_) => break,
            }
            if s.closing.is_some() {
                break;
            }
        }
        let deadline = s.next_deadline();
        let flushing = s.flushing_since.is_some();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                s.closing = Some((CLOSE_GOING_AWAY, "server shutting down"));
            }
            ev = socket_event(&mut ws, flushing) => match ev {
                SocketEvent::Flushed(Ok(())) => s.flushed(),
                SocketEvent::Flushed(Err(e)) => {
                    tracing::debug!(session = %s.session_id(), "write failed: {e}");
                    break;
                }
                SocketEvent::Read(None) => break,
                SocketEvent::Read(Some(Err(e))) => {
                    if is_too_big(&e) {
                        s.fail(Code::FrameTooLarge, &format!(
                            "frame larger than the hard limit of {} bytes; closing",
                            s.edge.settings.max_frame_bytes * 4
                        ), None);
                        s.closing = Some((CLOSE_TOO_BIG, "frame too large"));
                    } else {
                        tracing::debug!(session = %s.session_id(), "read failed: {e}");
                        break;
                    }
                }
                SocketEvent::Read(Some(Ok(msg))) => {
                    s.last_heard = Instant::now();
                    if Box::pin(s.on_message(msg)).await.is_break() {
                        break;
                    }
                }
            },
            _ = s.waker.notified() => {
                // While the socket is still busy with the last write, only the `close` policy
                // can act (the next pull happens once the write completes).
                let max_lag = s.edge.settings.max_lag_records;
                let slow = s.flushing_since.is_some_and(|t| t.elapsed() >= SLOW_WRITE);
                if slow && s.subs.iter().any(|sub| sub.policy == crate::config::SlowClientPolicy::Close && sub.lagging(max_lag)) {
                    telemetry::edge_slow_close("lag");
                    s.fail(
                        Code::SlowConsumer,
                        &format!("fell more than {max_lag} records behind on a channel whose policy is to close"),
                        None,
                    );
                    s.closing = Some((CLOSE_POLICY, "slow consumer"));
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => s.housekeeping(),
        }
    }
    // Say why, when the socket can still take it.
    if let Some((code, reason)) = s.closing.take() {
        s.write_control(&mut ws);
        Box::pin(close_now(&mut ws, code, reason)).await;
    }
    s.leave_all();
}

fn is_too_big(e: &axum::Error) -> bool {
    use std::error::Error;
    let mut source: Option<&dyn Error> = e.source();
    while let Some(err) = source {
        if let Some(t) = err.downcast_ref::<tungstenite::Error>() {
            return matches!(t, tungstenite::Error::Capacity(_));
        }
        source = err.source();
    }
    false
}

async fn close_with(ws: &mut WebSocket, code: u16, reason: &str) {
    let _ = feed(
        ws,
        Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        })),
    );
    let _ = poll_fn(|cx| Sink::<Message>::poll_flush(std::pin::Pin::new(&mut *ws), cx)).await;
}

async fn close_now(ws: &mut WebSocket, code: u16, reason: &str) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, close_with(ws, code, reason)).await;
}

/// Keeps the connection count right however the session ends.
struct ConnectionGuard(Arc<Edge>, bool);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.1 {
            self.0.stats.connection_closed();
        }
    }
}

impl Session {
    fn next_deadline(&self) -> Instant {
        let mut d = self.next_ping;
        if self.grant.is_none() {
            d = d.min(self.setup_deadline);
        }
        if let Some(e) = self.expires {
            d = d.min(e);
        }
        if let Some(since) = self.flushing_since {
            d = d.min(since + Duration::from_millis(self.edge.settings.write_timeout_ms));
        }
        d
    }

    fn housekeeping(&mut self) {
        let now = Instant::now();
        let settings = &self.edge.settings;
        if let Some(since) = self.flushing_since
            && now.duration_since(since) >= Duration::from_millis(settings.write_timeout_ms)
        {
            telemetry::edge_slow_close("write_timeout");
            self.fail(
                Code::SlowConsumer,
                "the connection accepted no data for too long",
                None,
            );
            self.closing = Some((CLOSE_POLICY, "slow consumer"));
            return;
        }
        if self.grant.is_none() && now >= self.setup_deadline {
            self.fail(
                Code::NotSetup,
                &format!("no setup within {} ms", settings.setup_timeout_ms),
                None,
            );
            self.closing = Some((CLOSE_POLICY, "no setup"));
            return;
        }
        if self.expires.is_some_and(|e| now >= e) {
            telemetry::edge_auth_failure("expired_on_open_connection");
            self.fail(
                Code::Unauthorized,
                "token expired; send setup with a fresh token before expiry to stay connected",
                None,
            );
            self.closing = Some((CLOSE_POLICY, "token expired"));
            return;
        }
        let heartbeat = Duration::from_millis(settings.heartbeat_ms);
        if now >= self.next_ping {
            if now.duration_since(self.last_heard) > heartbeat * 2 {
                tracing::debug!(session = %self.session_id(), "peer silent for two heartbeats; dropping");
                self.closing = Some((CLOSE_GOING_AWAY, "heartbeat timeout"));
                return;
            }
            self.ping_pending = true;
            self.next_ping = now + heartbeat;
        }
    }

    /// Writes queued control frames, then prices, into the socket buffer. Returns how many.
    fn fill(&mut self, ws: &mut WebSocket) -> Result<usize, axum::Error> {
        self.take_acks();
        let mut n = self.write_control(ws);
        if self.ping_pending {
            self.ping_pending = false;
            feed(ws, Message::Ping(bytes::Bytes::new()))?;
            n += 1;
        }
        if self.subs.is_empty() {
            return Ok(n);
        }
        let mut out: Vec<Out> = Vec::new();
        let mut budget = Budget {
            frames: BATCH_FRAMES,
            bytes: BATCH_BYTES,
        };
        let edge = self.edge.clone();
        let ctx = PullContext::new(&edge, &self.waker, self.blocked);
        let mut i = 0;
        while i < self.subs.len() {
            let before = out.len();
            let result = self.subs[i].pull(&ctx, &mut budget, &mut out);
            let delivered = out[before..].iter().filter(|o| o.ts_ms != 0).count();
            self.subs[i].topic.delivered.increment(delivered as u64);
            match result {
                Ok(()) => {}
                Err(Trouble::SlowConsumer) => {
                    telemetry::edge_slow_close("lag");
                    let topic = self.subs[i].topic.channel.clone();
                    out.push(Out::control(protocol::error(
                        Code::SlowConsumer,
                        &format!(
                            "fell more than {} records behind on {topic}, whose policy is to close",
                            edge.settings.max_lag_records
                        ),
                        Some(&topic),
                    )));
                    self.closing = Some((CLOSE_POLICY, "slow consumer"));
                    break;
                }
                Err(Trouble::Gap(why)) => {
                    // Never silently wrong: say so, then start over from a fresh snapshot.
                    let sub = &self.subs[i];
                    let topic = sub.topic.clone();
                    out.push(Out::control(protocol::error(
                        Code::ResumeGap,
                        &format!("cannot resume without a gap: {why}; a fresh snapshot follows"),
                        Some(&topic.channel),
                    )));
                    let (fresh, snap) = Subscription::subscribe(
                        topic,
                        sub.filter.clone(),
                        sub.symbols.clone(),
                        sub.policy,
                    );
                    out.push(Out::control(snap));
                    self.subs[i] = fresh;
                }
            }
            i += 1;
        }
        let mut oldest = i64::MAX;
        for o in &out {
            if o.ts_ms != 0 {
                oldest = oldest.min(o.ts_ms);
            }
        }
        if oldest != i64::MAX {
            self.oldest_ts = oldest;
        }
        self.edge.stats.add_out(out.len() as u64);
        n += out.len();
        for o in out {
            feed(ws, Message::Text(o.frame))?;
        }
        Ok(n)
    }

    fn write_control(&mut self, ws: &mut WebSocket) -> usize {
        let n = self.control.len();
        if n == 0 {
            return 0;
        }
        // Control frames come in small bursts; an idle connection should not keep the queue's
        // allocation.
        for f in std::mem::take(&mut self.control) {
            if feed(ws, Message::Text(f)).is_err() {
                return 0;
            }
        }
        n
    }

    /// `<node>-<id>`, as in `ready`.
    pub(super) fn session_id(&self) -> String {
        format!("{}-{:x}", self.edge.node_id, self.id)
    }

    fn flushed(&mut self) {
        if let Some(t) = self.flushing_since.take() {
            self.blocked = t.elapsed() >= SLOW_WRITE;
        }
        if self.oldest_ts != 0 {
            let age_ms = unix_now_ms() - self.oldest_ts;
            self.edge.latency.record(age_ms.max(0) as f64 / 1000.0);
            self.oldest_ts = 0;
        }
    }

    /// Queues an error frame.
    pub(super) fn fail(&mut self, code: Code, message: &str, topic: Option<&str>) {
        self.control
            .push_back(protocol::error(code, message, topic));
        if self.control.len() > MAX_CONTROL_QUEUE {
            telemetry::edge_slow_close("control_queue");
            self.closing = Some((CLOSE_POLICY, "slow consumer"));
        }
    }

    pub(super) fn send(&mut self, frame: Utf8Bytes) {
        self.control.push_back(frame);
        if self.control.len() > MAX_CONTROL_QUEUE {
            telemetry::edge_slow_close("control_queue");
            self.closing = Some((CLOSE_POLICY, "slow consumer"));
        }
    }

    pub(super) fn take_acks(&mut self) {
        if let Some(acks) = &self.acks {
            let done: Vec<Utf8Bytes> = std::mem::take(&mut *acks.lock().expect("acks lock"));
            for frame in done {
                self.send(frame);
            }
        }
    }

    fn leave_all(&mut self) {
        for sub in self.subs.drain(..) {
            sub.topic.remove_subscriber(self.id);
            self.edge.stats.subscriptions(-1);
        }
    }
}
