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
use super::auth::{AuthError, Grant};
use super::hub::{Budget, SymbolSet};
use super::protocol::{self, ClientFrame, Code};
use super::subscription::{Out, PullContext, Start, Subscription, Trouble, start_for};
use crate::telemetry;

/// Most price frames (and bytes) written per flush.
const BATCH_FRAMES: usize = 512;
pub const BATCH_BYTES: usize = 64 * 1024;
/// Control frames queued for a client that is not reading before it is dropped.
const MAX_CONTROL_QUEUE: usize = 256;
/// How long a resume waits for this edge to reach an offset another edge already delivered.
const RESUME_WAIT: Duration = Duration::from_secs(2);
/// Time to deliver a Close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A write that waits this long on the client marks it as not keeping up: only then does a
/// backlog count as the client's lag (a burst of the feed is not).
const SLOW_WRITE: Duration = Duration::from_millis(100);

/// WebSocket close codes.
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_TRY_LATER: u16 = 1013;

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

struct TokenBucket {
    capacity: f64,
    tokens: f64,
    per_sec: f64,
    at: Instant,
    last_error: Option<Instant>,
    dropped: u32,
}

impl TokenBucket {
    fn new(per_sec: u32) -> Self {
        TokenBucket {
            capacity: f64::from(per_sec),
            tokens: f64::from(per_sec),
            per_sec: f64::from(per_sec),
            at: Instant::now(),
            last_error: None,
            dropped: 0,
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.per_sec)
            .min(self.capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.dropped = 0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// One `rate_limited` error per second at most, so a flood cannot amplify itself.
    fn should_report(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last_error
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.last_error = Some(now);
            true
        } else {
            false
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A subscribe or resume that passed the checks: the topic, the symbol filter, the symbols as
/// asked, and the channel's slow-client policy.
type Checked = (
    Arc<super::hub::TopicLog>,
    Option<SymbolSet>,
    Option<Vec<String>>,
    crate::config::SlowClientPolicy,
);

struct Session {
    edge: Arc<Edge>,
    id: u64,
    session_id: String,
    /// `Some(topic)` on `/ws/sub/{topic}`.
    only_topic: Option<String>,
    grant: Option<Grant>,
    expires: Option<Instant>,
    subs: Vec<Subscription>,
    waker: Arc<Notify>,
    control: VecDeque<Utf8Bytes>,
    /// Publish results, filled by publish tasks (created on the first publish: most sessions
    /// never publish, and an idle connection should cost little).
    acks: Option<Arc<std::sync::Mutex<Vec<Utf8Bytes>>>>,
    rate: TokenBucket,
    /// Set when the session must end: the close code and reason.
    closing: Option<(u16, String)>,
    last_heard: Instant,
    next_ping: Instant,
    setup_deadline: Instant,
    /// When the write in flight started.
    flushing_since: Option<Instant>,
    /// Source timestamp of the oldest price in the write in flight.
    oldest_ts: i64,
    ping_pending: bool,
    /// The last write waited on the client for at least [`SLOW_WRITE`]: it is not keeping up.
    blocked: bool,
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
        session_id: format!("{}-{id:x}", edge.node_id),
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
                s.closing = Some((CLOSE_GOING_AWAY, "server shutting down".into()));
            }
            ev = socket_event(&mut ws, flushing) => match ev {
                SocketEvent::Flushed(Ok(())) => s.flushed(),
                SocketEvent::Flushed(Err(e)) => {
                    tracing::debug!(session = %s.session_id, "write failed: {e}");
                    break;
                }
                SocketEvent::Read(None) => break,
                SocketEvent::Read(Some(Err(e))) => {
                    if is_too_big(&e) {
                        s.fail(Code::FrameTooLarge, &format!(
                            "frame larger than the hard limit of {} bytes; closing",
                            s.edge.settings.max_frame_bytes * 4
                        ), None);
                        s.closing = Some((CLOSE_TOO_BIG, "frame too large".into()));
                    } else {
                        tracing::debug!(session = %s.session_id, "read failed: {e}");
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
                    s.closing = Some((CLOSE_POLICY, "slow consumer".into()));
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => s.housekeeping(),
        }
    }
    // Say why, when the socket can still take it.
    if let Some((code, reason)) = s.closing.take() {
        s.write_control(&mut ws);
        Box::pin(close_now(&mut ws, code, &reason)).await;
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
            self.closing = Some((CLOSE_POLICY, "slow consumer".into()));
            return;
        }
        if self.grant.is_none() && now >= self.setup_deadline {
            self.fail(
                Code::NotSetup,
                &format!("no setup within {} ms", settings.setup_timeout_ms),
                None,
            );
            self.closing = Some((CLOSE_POLICY, "no setup".into()));
            return;
        }
        if self.expires.is_some_and(|e| now >= e) {
            telemetry::edge_auth_failure("expired_on_open_connection");
            self.fail(
                Code::Unauthorized,
                "token expired; send setup with a fresh token before expiry to stay connected",
                None,
            );
            self.closing = Some((CLOSE_POLICY, "token expired".into()));
            return;
        }
        let heartbeat = Duration::from_millis(settings.heartbeat_ms);
        if now >= self.next_ping {
            if now.duration_since(self.last_heard) > heartbeat * 2 {
                tracing::debug!(session = %self.session_id, "peer silent for two heartbeats; dropping");
                self.closing = Some((CLOSE_GOING_AWAY, "heartbeat timeout".into()));
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
        let ctx = PullContext {
            hub: &edge.hub,
            replay: &edge.replay,
            waker: &self.waker,
            max_lag: edge.settings.max_lag_records,
            blocked: self.blocked,
        };
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
                    self.closing = Some((CLOSE_POLICY, "slow consumer".into()));
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
        for f in self.control.drain(..) {
            if feed(ws, Message::Text(f)).is_err() {
                return 0;
            }
        }
        n
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
    fn fail(&mut self, code: Code, message: &str, topic: Option<&str>) {
        self.control
            .push_back(protocol::error(code, message, topic));
        if self.control.len() > MAX_CONTROL_QUEUE {
            telemetry::edge_slow_close("control_queue");
            self.closing = Some((CLOSE_POLICY, "slow consumer".into()));
        }
    }

    fn send(&mut self, frame: Utf8Bytes) {
        self.control.push_back(frame);
        if self.control.len() > MAX_CONTROL_QUEUE {
            telemetry::edge_slow_close("control_queue");
            self.closing = Some((CLOSE_POLICY, "slow consumer".into()));
        }
    }

    async fn on_message(&mut self, msg: Message) -> std::ops::ControlFlow<()> {
        use std::ops::ControlFlow::{Break, Continue};
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(_) => {
                self.fail(
                    Code::BadRequest,
                    "binary frames are not supported; send JSON text",
                    None,
                );
                return Continue(());
            }
            Message::Close(_) => return Break(()),
            Message::Ping(_) | Message::Pong(_) => return Continue(()),
        };
        self.edge.stats.add_in(1);
        if !self.rate.allow() {
            if self.rate.should_report() {
                self.fail(
                    Code::RateLimited,
                    &format!(
                        "more than {} frames per second; frames are being dropped",
                        self.edge.settings.messages_per_second
                    ),
                    None,
                );
            }
            // A client that keeps flooding long after being told is cut off.
            if self.rate.dropped
                > self
                    .edge
                    .settings
                    .messages_per_second
                    .saturating_mul(10)
                    .max(100)
            {
                self.closing = Some((CLOSE_POLICY, "rate limit".into()));
            }
            return Continue(());
        }
        if text.len() > self.edge.settings.max_frame_bytes {
            self.fail(
                Code::FrameTooLarge,
                &format!(
                    "frame of {} bytes; the limit is {}",
                    text.len(),
                    self.edge.settings.max_frame_bytes
                ),
                None,
            );
            return Continue(());
        }
        let frame = match protocol::parse(&text) {
            Ok(f) => f,
            Err(e) => {
                self.fail(e.code, &e.message, None);
                return Continue(());
            }
        };
        match frame {
            ClientFrame::Setup { token, topics } => self.on_setup(&token, topics),
            _ if self.grant.is_none() => {
                self.fail(Code::NotSetup, "send setup with a token first", None);
            }
            ClientFrame::Subscribe { topic, symbols } => self.on_subscribe(&topic, symbols),
            ClientFrame::Unsubscribe { topic } => {
                match self.subs.iter().position(|s| s.topic.channel == topic) {
                    Some(i) => {
                        self.subs.remove(i).topic.remove_subscriber(self.id);
                        self.edge.stats.subscriptions(-1);
                        self.send(protocol::unsubscribed(&topic, None));
                    }
                    None => self.fail(
                        Code::NotSubscribed,
                        &format!("not subscribed to {topic}"),
                        Some(&topic),
                    ),
                }
            }
            ClientFrame::Resume {
                topic,
                from,
                symbols,
            } => self.on_resume(&topic, from, symbols).await,
            ClientFrame::Publish {
                topic,
                message_id,
                payload,
            } => self.on_publish(&topic, message_id, payload),
            ClientFrame::Ping => self.send(protocol::pong()),
        }
        Continue(())
    }

    fn on_setup(&mut self, token: &str, topics: Vec<String>) {
        let grant = match self.edge.verifier.verify(token) {
            Ok(g) => g,
            Err(e) => {
                telemetry::edge_auth_failure(match e {
                    AuthError::Expired => "expired",
                    AuthError::BadSignature => "bad_signature",
                    AuthError::WrongAlgorithm(..) => "wrong_algorithm",
                    AuthError::Malformed(_) => "malformed",
                    AuthError::BadClaims(_) => "bad_claims",
                });
                self.fail(Code::Unauthorized, &e.to_string(), None);
                if self.grant.is_none() {
                    self.closing = Some((CLOSE_POLICY, "unauthorized".into()));
                }
                return;
            }
        };
        if let Some(old) = &self.grant
            && old.user != grant.user
        {
            self.fail(
                Code::Forbidden,
                &format!(
                    "this connection belongs to {}; a token for {} needs a new connection",
                    old.user, grant.user
                ),
                None,
            );
            return;
        }
        let refresh = self.grant.is_some();
        let remaining = grant.expires_at + self.edge.leeway_s;
        let secs = remaining.saturating_sub(unix_now());
        self.expires = Some(Instant::now() + Duration::from_secs(secs));
        self.send(protocol::ready(
            &self.session_id,
            &grant.user,
            grant.expires_at,
        ));
        self.grant = Some(grant);
        if refresh {
            self.reapply_grant();
        }
        let mut topics = topics;
        if let Some(t) = &self.only_topic
            && !refresh
            && !topics.contains(t)
        {
            topics.insert(0, t.clone());
        }
        for t in topics {
            self.on_subscribe(&t, None);
        }
    }

    /// After a token refresh: drop what the new token no longer allows.
    fn reapply_grant(&mut self) {
        let grant = self.grant.clone().expect("refresh has a grant");
        let mut i = 0;
        while i < self.subs.len() {
            let sub = &self.subs[i];
            let symbols_ok = sub
                .symbols
                .as_ref()
                .is_none_or(|s| s.iter().all(|s| grant.may_see_symbol(s)))
                && (grant.symbols.is_none() || sub.symbols.is_some());
            if grant.may_see_channel(&sub.topic.channel) && symbols_ok {
                i += 1;
                continue;
            }
            let sub = self.subs.remove(i);
            sub.topic.remove_subscriber(self.id);
            self.edge.stats.subscriptions(-1);
            self.send(protocol::unsubscribed(
                &sub.topic.channel,
                Some("the new token does not allow it"),
            ));
        }
    }

    /// Checks a subscribe or resume: the topic, the ACL, the symbols. Returns the filter.
    fn check_subscription(&mut self, topic: &str, symbols: Option<Vec<String>>) -> Option<Checked> {
        let grant = self.grant.clone().expect("checked by the caller");
        if let Some(only) = &self.only_topic
            && only != topic
        {
            self.fail(
                Code::BadRequest,
                &format!("this endpoint serves only {only}; use /ws for several topics"),
                Some(topic),
            );
            return None;
        }
        let Some(log) = self.edge.hub.topic(topic).cloned() else {
            let mut known: Vec<&str> = self.edge.hub.topics.keys().map(String::as_str).collect();
            known.sort_unstable();
            self.fail(
                Code::UnknownTopic,
                &format!(
                    "no topic {topic:?} on this edge (topics: {})",
                    known.join(", ")
                ),
                Some(topic),
            );
            return None;
        };
        if !grant.may_see_channel(topic) {
            telemetry::edge_auth_failure("forbidden_topic");
            self.fail(
                Code::Forbidden,
                &format!("your token does not allow {topic}"),
                Some(topic),
            );
            return None;
        }
        let already = self.subs.iter().any(|s| s.topic.channel == topic);
        if !already && self.subs.len() >= self.edge.settings.max_subscriptions {
            self.fail(
                Code::TooManySubscriptions,
                &format!(
                    "at most {} subscriptions per connection",
                    self.edge.settings.max_subscriptions
                ),
                Some(topic),
            );
            return None;
        }
        let rules = self.edge.rules.load();
        let channel = rules.channel(topic);
        let policy = channel.map_or(crate::config::SlowClientPolicy::Conflate, |c| c.slow_client);
        let wanted: Option<Vec<String>> = match (symbols, &grant.symbols) {
            (Some(s), _) => Some(s),
            // Everything the token allows that this channel carries.
            (None, Some(allowed)) => Some(
                allowed
                    .iter()
                    .filter(|s| {
                        rules
                            .instrument_index(s)
                            .is_some_and(|i| channel.is_none_or(|c| c.carries(i)))
                    })
                    .cloned()
                    .collect(),
            ),
            (None, None) => None,
        };
        let Some(wanted) = wanted else {
            return Some((log, None, None, policy));
        };
        let mut set = SymbolSet::default();
        for s in &wanted {
            let carried = rules
                .instrument_index(s)
                .is_some_and(|i| channel.is_none_or(|c| c.carries(i)));
            if !carried {
                self.fail(
                    Code::UnknownSymbol,
                    &format!("{topic} does not carry {s:?}"),
                    Some(topic),
                );
                return None;
            }
            if !grant.may_see_symbol(s) {
                telemetry::edge_auth_failure("forbidden_symbol");
                self.fail(
                    Code::Forbidden,
                    &format!("your token does not allow {s}"),
                    Some(topic),
                );
                return None;
            }
            set.insert(self.edge.hub.symbols.intern(s));
        }
        Some((log, Some(set), Some(wanted), policy))
    }

    fn replace_subscription(&mut self, sub: Subscription) {
        let topic = sub.topic.clone();
        match self
            .subs
            .iter()
            .position(|s| s.topic.channel == topic.channel)
        {
            Some(i) => self.subs[i] = sub,
            None => {
                self.subs.push(sub);
                self.edge.stats.subscriptions(1);
            }
        }
        topic.add_subscriber(self.id, self.waker.clone());
    }

    fn on_subscribe(&mut self, topic: &str, symbols: Option<Vec<String>>) {
        let Some((log, filter, symbols, policy)) = self.check_subscription(topic, symbols) else {
            return;
        };
        let partitions = log.partitions.len();
        self.send(protocol::subscribed(topic, partitions, symbols.as_deref()));
        let (sub, snap) = Subscription::subscribe(log, filter, symbols, policy);
        self.send(snap);
        self.replace_subscription(sub);
    }

    async fn on_resume(
        &mut self,
        topic: &str,
        from: std::collections::BTreeMap<i32, i64>,
        symbols: Option<Vec<String>>,
    ) {
        let Some((log, filter, symbols, policy)) = self.check_subscription(topic, symbols) else {
            return;
        };
        if let Some(p) = from.keys().find(|p| **p as usize >= log.partitions.len()) {
            self.fail(
                Code::BadRequest,
                &format!(
                    "{topic} has no partition {p} (it has {})",
                    log.partitions.len()
                ),
                Some(topic),
            );
            return;
        }
        // A client may come from an edge that is a little ahead of this one: wait briefly.
        let deadline = Instant::now() + RESUME_WAIT;
        let beyond = loop {
            let beyond: Vec<String> = from
                .iter()
                .filter_map(
                    |(p, seq)| match start_for(log.partitions[*p as usize].next(), *seq) {
                        Start::Beyond { asked, end } => Some(format!(
                            "partition {p}: seqNo {asked} is past the end of the log ({end})"
                        )),
                        Start::At(_) => None,
                    },
                )
                .collect();
            if beyond.is_empty() || Instant::now() >= deadline {
                break beyond;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let partitions = log.partitions.len();
        self.send(protocol::subscribed(topic, partitions, symbols.as_deref()));
        if !beyond.is_empty() {
            telemetry::edge_resume("gap");
            self.fail(
                Code::ResumeGap,
                &format!(
                    "cannot resume without a gap: {}; a fresh snapshot follows",
                    beyond.join("; ")
                ),
                Some(topic),
            );
            let (sub, snap) = Subscription::subscribe(log, filter, symbols, policy);
            self.send(snap);
            self.replace_subscription(sub);
            return;
        }
        let edge = self.edge.clone();
        let ctx = PullContext {
            hub: &edge.hub,
            replay: &edge.replay,
            waker: &self.waker,
            max_lag: edge.settings.max_lag_records,
            blocked: false,
        };
        let (sub, snap) = Subscription::resume(log, filter, symbols, policy, &from, &ctx);
        if let Some(snap) = snap {
            self.send(snap);
        }
        self.replace_subscription(sub);
        self.waker.notify_one();
    }

    fn on_publish(
        &mut self,
        topic: &str,
        message_id: String,
        payload: Box<serde_json::value::RawValue>,
    ) {
        let grant = self.grant.as_ref().expect("checked by the caller");
        if !grant.publish {
            telemetry::edge_auth_failure("forbidden_publish");
            self.fail(
                Code::Forbidden,
                "your token does not allow publishing",
                Some(topic),
            );
            return;
        }
        let raw_topic = self.edge.publisher.raw_topic();
        if topic != raw_topic {
            self.fail(
                Code::UnknownTopic,
                &format!("publish goes to the raw topic {raw_topic:?}, not {topic:?}"),
                Some(topic),
            );
            return;
        }
        let publisher = self.edge.publisher.clone();
        let user = grant.user.clone();
        let acks = self.acks.get_or_insert_with(Default::default).clone();
        let waker = self.waker.clone();
        self.edge.tasks.spawn(async move {
            let frame = match publisher
                .publish(&user, &message_id, payload.get().as_bytes())
                .await
            {
                Ok(status) => protocol::ack(&message_id, status.as_str()),
                Err(super::publish::PublishError::Invalid(why)) => protocol::error(
                    Code::BadRequest,
                    &format!("publish {message_id}: {why}"),
                    None,
                ),
                Err(e) => protocol::error(
                    Code::PublishFailed,
                    &format!("publish {message_id}: {e}"),
                    None,
                ),
            };
            acks.lock().expect("acks lock").push(frame);
            waker.notify_one();
        });
    }

    fn take_acks(&mut self) {
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
