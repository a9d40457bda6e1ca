//! One WebSocket connection. A single task owns the socket: it reads client frames while the
//! previous write is still in flight, and writes everything that is ready (control frames, then
//! prices copied from the hub at each subscription's cursor) in one write. A client that does
//! not read only stalls its own task.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use super::Edge;
use super::auth::Grant;
use super::hub::Budget;
use super::outbox::Outbox;
use super::protocol::{self, Code};
use super::requests::TokenBucket;
use super::subscription::{PullContext, Subscription, Trouble};
use super::wire::{self, FrameReader, Incoming, WireError};
use crate::telemetry;

/// Most price frames (and bytes) written per flush.
const BATCH_FRAMES: usize = 512;
pub const BATCH_BYTES: usize = 64 * 1024;
/// Bytes read from the socket at a time: client frames are small.
const READ_CHUNK: usize = 1024;
/// A write buffer smaller than this is released once written (an idle connection keeps none);
/// a busy connection keeps its buffer between batches, up to `MAX_KEPT_WRITE_BUFFER`.
const KEEP_WRITE_BUFFER: usize = 4 * 1024;
const MAX_KEPT_WRITE_BUFFER: usize = 4 * BATCH_BYTES;
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

/// The socket, the client's frames being parsed, and the bytes (whole frames) to write.
struct Conn<S> {
    io: S,
    reader: FrameReader,
    out: Vec<u8>,
    /// How much of `out` the socket has taken.
    written: usize,
}

enum SocketEvent {
    /// Everything in `out` is written.
    Written,
    /// Bytes arrived for the frame reader.
    Read,
    /// The client closed the TCP connection.
    Eof,
    Failed(io::Error),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn busy(&self) -> bool {
        !self.out.is_empty()
    }

    /// Writes `out` to the end and flushes it; then releases or keeps the buffer.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.out[self.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if let Err(e) = std::task::ready!(Pin::new(&mut self.io).poll_flush(cx)) {
            return Poll::Ready(Err(e));
        }
        if self.out.len() < KEEP_WRITE_BUFFER || self.out.capacity() > MAX_KEPT_WRITE_BUFFER {
            self.out = Vec::new();
        } else {
            self.out.clear();
        }
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Completes the pending write, or reads, whichever comes first.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<SocketEvent> {
        if self.busy() {
            match self.poll_write(cx) {
                Poll::Ready(Ok(())) => return Poll::Ready(SocketEvent::Written),
                Poll::Ready(Err(e)) => return Poll::Ready(SocketEvent::Failed(e)),
                Poll::Pending => {}
            }
        }
        let mut chunk = [0u8; READ_CHUNK];
        let mut rb = ReadBuf::new(&mut chunk);
        match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) if rb.filled().is_empty() => Poll::Ready(SocketEvent::Eof),
            Poll::Ready(Ok(())) => {
                self.reader.push(rb.filled());
                Poll::Ready(SocketEvent::Read)
            }
            Poll::Ready(Err(e)) => Poll::Ready(SocketEvent::Failed(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Tries to complete the write without waiting (most writes do).
    fn write_now(&mut self) -> Poll<io::Result<()>> {
        self.poll_write(&mut Context::from_waker(Waker::noop()))
    }
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
    pub(super) control: VecDeque<String>,
    /// The payload of the client's last ping, to answer.
    pub(super) pong: Option<Vec<u8>>,
    /// Publish results, filled by publish tasks (created on the first publish: most sessions
    /// never publish, and an idle connection should cost little).
    pub(super) acks: Option<Arc<std::sync::Mutex<Vec<String>>>>,
    pub(super) rate: TokenBucket,
    /// Set when the session must end: the close code and reason.
    pub(super) closing: Option<(u16, &'static str)>,
    pub(super) last_heard: Instant,
    pub(super) next_ping: Instant,
    pub(super) setup_deadline: Instant,
    /// When the write in flight started (`None`: nothing is being written).
    pub(super) flushing_since: Option<Instant>,
    /// Source timestamp of the oldest price in the write in flight.
    pub(super) oldest_ts: i64,
    /// Earliest receipt by this edge of a price in the write in flight.
    pub(super) oldest_received_us: u64,
    pub(super) ping_pending: bool,
    /// The last write waited on the client for at least [`SLOW_WRITE`]: it is not keeping up.
    pub(super) blocked: bool,
}

/// Serves one upgraded connection until it closes or the edge shuts down.
pub async fn run<S>(io: S, edge: Arc<Edge>, only_topic: Option<String>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut conn = Conn {
        io,
        // Oversized frames up to 4× the limit are read and answered with `frame_too_large`;
        // beyond that the connection is closed without reading them.
        reader: FrameReader::new(edge.settings.max_frame_bytes * 4),
        out: Vec::new(),
        written: 0,
    };
    let id = edge.next_session_id();
    let admitted = edge.stats.connection_opened(edge.settings.max_connections);
    let _guard = ConnectionGuard(edge.clone(), admitted, id);
    if !admitted {
        wire::put_text(
            &mut conn.out,
            &protocol::error(
                Code::Unavailable,
                "this edge is at its connection limit; try another node or later",
                None,
            ),
        );
        Box::pin(close_now(
            &mut conn,
            CLOSE_TRY_LATER,
            "too many connections",
        ))
        .await;
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
        pong: None,
        acks: None,
        rate: TokenBucket::new(edge.settings.messages_per_second),
        closing: None,
        last_heard: now,
        next_ping: now + heartbeat,
        setup_deadline: now + Duration::from_millis(edge.settings.setup_timeout_ms),
        flushing_since: None,
        oldest_ts: 0,
        oldest_received_us: 0,
        ping_pending: false,
        blocked: false,
        edge,
    };
    s.edge.sessions.register(s.id, s.waker.clone());
    let timer = tokio::time::sleep_until(s.next_deadline().into());
    tokio::pin!(timer);
    loop {
        if s.edge.sessions.closing() {
            s.closing = Some((CLOSE_GOING_AWAY, "server shutting down"));
        }
        if s.closing.is_some() {
            break;
        }
        if !conn.busy() && s.fill(&mut conn) > 0 {
            s.blocked = false;
            s.flushing_since = Some(Instant::now());
            match conn.write_now() {
                Poll::Ready(Ok(())) => {
                    s.flushed();
                    continue;
                }
                Poll::Ready(Err(e)) => {
                    tracing::debug!(session = %s.session_id(), "write failed: {e}");
                    break;
                }
                // The kernel took part of it: the rest is written as the socket drains, while
                // the session keeps reading.
                Poll::Pending => {}
            }
        }
        // The timer is re-armed only when the deadline moves (not on every turn).
        let deadline = tokio::time::Instant::from_std(s.next_deadline());
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        tokio::select! {
            biased;
            ev = poll_fn(|cx| conn.poll_event(cx)) => match ev {
                SocketEvent::Written => s.flushed(),
                SocketEvent::Failed(e) => {
                    tracing::debug!(session = %s.session_id(), "socket failed: {e}");
                    break;
                }
                SocketEvent::Eof => break,
                SocketEvent::Read => {
                    s.last_heard = Instant::now();
                    Box::pin(s.on_frames(&mut conn.reader)).await;
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
            _ = &mut timer => s.housekeeping(),
        }
    }
    // Say why, when the socket can still take it.
    if let Some((code, reason)) = s.closing.take() {
        let mut out = Outbox::new(std::mem::take(&mut conn.out));
        s.write_control(&mut out);
        conn.out = out.buf;
        Box::pin(close_now(&mut conn, code, reason)).await;
    }
    s.leave_all();
}

/// Queues a Close frame after what is still to write, writes it all and shuts the socket's
/// sending side; then reads (and drops) what the client still sends until it closes too, all
/// within [`CLOSE_TIMEOUT`]. Closing a socket with unread input makes the kernel reset the
/// connection, and the client could lose the frames that say why it was closed.
async fn close_now<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut Conn<S>, code: u16, reason: &str) {
    wire::put_close(&mut conn.out, code, reason);
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        poll_fn(|cx| conn.poll_write(cx)).await?;
        poll_fn(|cx| Pin::new(&mut conn.io).poll_shutdown(cx)).await?;
        let mut sink = [0u8; READ_CHUNK];
        while tokio::io::AsyncReadExt::read(&mut conn.io, &mut sink).await? > 0 {}
        Ok::<(), io::Error>(())
    })
    .await;
}

/// Keeps the connection count right however the session ends.
struct ConnectionGuard(Arc<Edge>, bool, u64);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.1 {
            self.0.sessions.unregister(self.2);
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

    /// Writes queued control frames, then prices, into the connection's write buffer. Returns
    /// how many frames.
    fn fill<S>(&mut self, conn: &mut Conn<S>) -> usize {
        self.take_acks();
        let mut out = Outbox::new(std::mem::take(&mut conn.out));
        if let Some(payload) = self.pong.take() {
            wire::put_frame(&mut out.buf, wire::OP_PONG, &[&payload]);
            out.frames += 1;
        }
        self.write_control(&mut out);
        if self.ping_pending {
            self.ping_pending = false;
            wire::put_frame(&mut out.buf, wire::OP_PING, &[]);
            out.frames += 1;
        }
        if !self.subs.is_empty() {
            self.pull(&mut out);
        }
        if out.prices > 0 {
            self.oldest_ts = out.oldest_ts;
            self.oldest_received_us = out.oldest_received_us;
        }
        conn.out = out.buf;
        out.frames
    }

    /// Prices (and what a subscription has to say) from every subscription, within a batch.
    fn pull(&mut self, out: &mut Outbox) {
        let frames_before = out.frames;
        let mut budget = Budget {
            frames: BATCH_FRAMES,
            bytes: BATCH_BYTES,
        };
        let edge = self.edge.clone();
        let ctx = PullContext::new(&edge, &self.waker, self.blocked);
        let mut i = 0;
        while i < self.subs.len() {
            let before = out.prices;
            let result = self.subs[i].pull(&ctx, &mut budget, out);
            self.subs[i]
                .topic
                .delivered
                .increment((out.prices - before) as u64);
            match result {
                Ok(()) => {}
                Err(Trouble::SlowConsumer) => {
                    telemetry::edge_slow_close("lag");
                    let topic = self.subs[i].topic.channel.clone();
                    out.control(&protocol::error(
                        Code::SlowConsumer,
                        &format!(
                            "fell more than {} records behind on {topic}, whose policy is to close",
                            edge.settings.max_lag_records
                        ),
                        Some(&topic),
                    ));
                    self.closing = Some((CLOSE_POLICY, "slow consumer"));
                    break;
                }
                Err(Trouble::Gap(why)) => {
                    // Never silently wrong: say so, then start over from a fresh snapshot.
                    let sub = &self.subs[i];
                    let topic = sub.topic.clone();
                    out.control(&protocol::error(
                        Code::ResumeGap,
                        &format!("cannot resume without a gap: {why}; a fresh snapshot follows"),
                        Some(&topic.channel),
                    ));
                    let (fresh, snap) = Subscription::subscribe(
                        topic,
                        sub.filter.clone(),
                        sub.symbols.clone(),
                        sub.policy,
                    );
                    out.control(&snap);
                    self.subs[i] = fresh;
                }
            }
            i += 1;
        }
        self.edge.stats.add_out((out.frames - frames_before) as u64);
    }

    fn write_control(&mut self, out: &mut Outbox) {
        // Control frames come in small bursts; an idle connection should not keep the queue's
        // allocation.
        for f in std::mem::take(&mut self.control) {
            out.control(&f);
        }
    }

    /// Handles every complete frame the client sent.
    async fn on_frames(&mut self, reader: &mut FrameReader) {
        while self.closing.is_none() {
            match reader.next_message() {
                Ok(None) => return,
                Ok(Some(Incoming::Text(text))) => self.on_text(text).await,
                Ok(Some(Incoming::Binary(_))) => self.fail(
                    Code::BadRequest,
                    "binary frames are not supported; send JSON text",
                    None,
                ),
                Ok(Some(Incoming::Ping(payload))) => self.pong = Some(payload),
                Ok(Some(Incoming::Pong)) => {}
                Ok(Some(Incoming::Close(code))) => {
                    // Answer with the client's code, as RFC 6455 suggests.
                    self.closing = Some((code.unwrap_or(wire::CLOSE_NORMAL), ""));
                }
                Err(WireError::TooBig(limit)) => {
                    self.fail(
                        Code::FrameTooLarge,
                        &format!("frame larger than the hard limit of {limit} bytes; closing"),
                        None,
                    );
                    self.closing = Some((CLOSE_TOO_BIG, "frame too large"));
                }
                Err(e) => {
                    self.fail(
                        Code::BadRequest,
                        &format!("WebSocket protocol error: {e}; closing"),
                        None,
                    );
                    self.closing = Some((
                        e.close_code(),
                        match e {
                            WireError::Protocol(why) => why,
                            _ => "invalid UTF-8",
                        },
                    ));
                }
            }
        }
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
            let held_us = super::hub::clock_us().saturating_sub(self.oldest_received_us);
            self.edge.internal_latency.record(held_us as f64 / 1e6);
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

    pub(super) fn send(&mut self, frame: String) {
        self.control.push_back(frame);
        if self.control.len() > MAX_CONTROL_QUEUE {
            telemetry::edge_slow_close("control_queue");
            self.closing = Some((CLOSE_POLICY, "slow consumer"));
        }
    }

    pub(super) fn take_acks(&mut self) {
        if let Some(acks) = &self.acks {
            let done: Vec<String> = std::mem::take(&mut *acks.lock().expect("acks lock"));
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
