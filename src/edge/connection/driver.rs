//! The socket loop of one WebSocket connection. A single task owns the socket: it reads client
//! frames while the previous write is still in flight, and writes everything that is ready
//! (control frames, then prices copied from the log at each subscription's cursor) in one
//! write. A client that does not read only stalls its own task.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::outbox::Outbox;
use super::requests;
use super::session::{
    BATCH_BYTES, CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_TRY_LATER, Session,
};
use crate::edge::log::entry::clock_us;
use crate::edge::node::Edge;
use crate::edge::wire::frames::{self as wire, CLOSE_NORMAL};
use crate::edge::wire::protocol::Code;
use crate::edge::wire::reader::{FrameReader, Incoming, WireError};
use crate::edge::wire::server;
use crate::telemetry;

/// Bytes read from the socket at a time: client frames are small.
const READ_CHUNK: usize = 1024;
/// A write buffer smaller than this is released once written (an idle connection keeps none);
/// a busy connection keeps its buffer between batches, up to `MAX_KEPT_WRITE_BUFFER`.
const KEEP_WRITE_BUFFER: usize = 4 * 1024;
const MAX_KEPT_WRITE_BUFFER: usize = 4 * BATCH_BYTES;
/// Time to deliver a Close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// A write that waits this long on the client marks it as not keeping up: only then does a
/// backlog count as the client's lag (a burst of the feed is not).
const SLOW_WRITE: Duration = Duration::from_millis(100);

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

/// The write in flight: when it started and the age of the oldest price in it.
#[derive(Default)]
struct Flight {
    /// When the write in flight started (`None`: nothing is being written).
    since: Option<Instant>,
    /// Source timestamp (ms) of the oldest price in it, 0 when none.
    oldest_ts: i64,
    /// Earliest receipt by this edge of a price in it.
    oldest_received_us: u64,
    /// The last write waited on the client for at least [`SLOW_WRITE`]: it is not keeping up.
    blocked: bool,
}

impl Flight {
    fn started(&mut self, out: &Outbox) {
        self.blocked = false;
        self.since = Some(Instant::now());
        if out.prices > 0 {
            self.oldest_ts = out.oldest_ts;
            self.oldest_received_us = out.oldest_received_us;
        }
    }

    fn done(&mut self, s: &mut Session) {
        if let Some(t) = self.since.take() {
            self.blocked = t.elapsed() >= SLOW_WRITE;
        }
        if self.oldest_ts != 0 {
            let age_ms = unix_now_ms() - self.oldest_ts;
            let held_us = clock_us().saturating_sub(self.oldest_received_us);
            s.record_latency(age_ms.max(0) as f64 / 1000.0, held_us as f64 / 1e6);
            self.oldest_ts = 0;
        }
    }

    /// When a write that has not completed makes the client a slow consumer.
    fn deadline(&self, node: &Edge) -> Option<Instant> {
        let timeout = Duration::from_millis(node.settings.write_timeout_ms);
        self.since.map(|t| t + timeout)
    }

    fn slow(&self) -> bool {
        self.since.is_some_and(|t| t.elapsed() >= SLOW_WRITE)
    }
}

fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Serves one upgraded connection until it closes or the edge shuts down.
pub async fn run<S>(io: S, node: Arc<Edge>, only_topic: Option<String>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut conn = Conn {
        io,
        // Oversized frames up to 4× the limit are read and answered with `frame_too_large`;
        // beyond that the connection is closed without reading them.
        reader: FrameReader::new(node.settings.max_frame_bytes * 4),
        out: Vec::new(),
        written: 0,
    };
    if !node.stats.connection_opened(node.settings.max_connections) {
        let refusal = server::error(
            Code::Unavailable,
            "this edge is at its connection limit; try another node or later",
            None,
        );
        wire::put_text(&mut conn.out, &refusal);
        Box::pin(close_now(
            &mut conn,
            CLOSE_TRY_LATER,
            "too many connections",
        ))
        .await;
        return;
    }
    let _counted = Counted(node.clone());
    let id = node.next_session_id();
    let mut s = Session::new(node.clone(), id, only_topic, Instant::now());
    let mut flight = Flight::default();
    let timer = tokio::time::sleep_until(s.next_deadline().into());
    tokio::pin!(timer);
    loop {
        if node.sessions.closing() {
            s.close(CLOSE_GOING_AWAY, "server shutting down");
        }
        if s.closing().is_some() {
            break;
        }
        if !conn.busy() {
            let mut out = Outbox::new(std::mem::take(&mut conn.out));
            s.fill(&mut out, flight.blocked, Instant::now());
            if out.frames > 0 {
                flight.started(&out);
            }
            let frames = out.frames;
            conn.out = out.buf;
            if frames > 0 {
                match conn.write_now() {
                    Poll::Ready(Ok(())) => {
                        flight.done(&mut s);
                        continue;
                    }
                    Poll::Ready(Err(e)) => {
                        tracing::debug!(session = %s.session_id(), "write failed: {e}");
                        break;
                    }
                    // The kernel took part of it: the rest is written as the socket drains,
                    // while the session keeps reading.
                    Poll::Pending => {}
                }
            }
        }
        // The timer is re-armed only when the deadline moves (not on every turn).
        let mut next = s.next_deadline();
        if let Some(w) = flight.deadline(&node) {
            next = next.min(w);
        }
        let deadline = tokio::time::Instant::from_std(next);
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        tokio::select! {
            biased;
            ev = poll_fn(|cx| conn.poll_event(cx)) => match ev {
                SocketEvent::Written => flight.done(&mut s),
                SocketEvent::Failed(e) => {
                    tracing::debug!(session = %s.session_id(), "socket failed: {e}");
                    break;
                }
                SocketEvent::Eof => break,
                SocketEvent::Read => {
                    s.heard(Instant::now());
                    on_frames(&mut s, &mut conn.reader);
                }
            },
            _ = s.waker().notified() => {
                // While the socket is still busy with the last write, only the `close` policy
                // can act (the next pull happens once the write completes).
                let max_lag = node.settings.max_lag_records;
                if flight.slow() && s.subs().lagging_on_close_policy(max_lag) {
                    telemetry::edge_slow_close("lag");
                    let why = format!("fell more than {max_lag} records behind on a channel whose policy is to close");
                    s.fail(Code::SlowConsumer, &why, None);
                    s.close(CLOSE_POLICY, "slow consumer");
                }
            }
            _ = &mut timer => {
                let now = Instant::now();
                if flight.deadline(&node).is_some_and(|d| now >= d) {
                    telemetry::edge_slow_close("write_timeout");
                    s.fail(Code::SlowConsumer, "the connection accepted no data for too long", None);
                    s.close(CLOSE_POLICY, "slow consumer");
                } else {
                    s.housekeeping(now);
                }
            }
        }
    }
    // Say why, when the socket can still take it.
    if let Some((code, reason)) = s.closing() {
        let mut out = Outbox::new(std::mem::take(&mut conn.out));
        s.write_control(&mut out);
        conn.out = out.buf;
        Box::pin(close_now(&mut conn, code, reason)).await;
    }
}

/// Handles every complete frame the client sent.
fn on_frames(s: &mut Session, reader: &mut FrameReader) {
    while s.closing().is_none() {
        match reader.next_message() {
            Ok(None) => return,
            Ok(Some(Incoming::Text(text))) => requests::on_text(s, text),
            Ok(Some(Incoming::Binary(_))) => s.fail(
                Code::BadRequest,
                "binary frames are not supported; send JSON text",
                None,
            ),
            Ok(Some(Incoming::Ping(payload))) => s.pong(payload),
            Ok(Some(Incoming::Pong)) => {}
            // Answer with the client's code, as RFC 6455 suggests.
            Ok(Some(Incoming::Close(code))) => s.close(code.unwrap_or(CLOSE_NORMAL), ""),
            Err(WireError::TooBig(limit)) => {
                let why = format!("frame larger than the hard limit of {limit} bytes; closing");
                s.fail(Code::FrameTooLarge, &why, None);
                s.close(CLOSE_TOO_BIG, "frame too large");
            }
            Err(e) => {
                let why = format!("WebSocket protocol error: {e}; closing");
                s.fail(Code::BadRequest, &why, None);
                let reason = match e {
                    WireError::Protocol(why) => why,
                    _ => "invalid UTF-8",
                };
                s.close(e.close_code(), reason);
            }
        }
    }
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
struct Counted(Arc<Edge>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.stats.connection_closed();
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
