//! The state of one connection apart from its socket: who it is (the grant), what it is
//! subscribed to, the control frames waiting to be written, its timers (setup, token expiry,
//! heartbeat) and why it is closing. The socket loop ([`super::driver`]) asks it for the next
//! write ([`Session::fill`]); requests ([`super::requests`]) change it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::cursor::Limits;
use super::outbox::Outbox;
use super::rate::TokenBucket;
use super::subscriptions::Subscriptions;
use crate::edge::auth::Grant;
use crate::edge::log::partition::Budget;
use crate::edge::node::Edge;
use crate::edge::wire::protocol::Code;
use crate::edge::wire::server;
use crate::telemetry;

/// Most price frames (and bytes) written per flush.
const BATCH_FRAMES: usize = 512;
pub const BATCH_BYTES: usize = 64 * 1024;
/// Control frames queued for a client that is not reading before it is dropped.
pub const MAX_CONTROL_QUEUE: usize = 256;

/// WebSocket close codes.
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_TRY_LATER: u16 = 1013;

/// Publish results, filled by publish tasks.
pub type Acks = Arc<Mutex<Vec<String>>>;

/// Kept small: an idle connection is mostly this (docs/benchmarks.md, idle memory). The node,
/// the session id and the wake-up are the subscriptions' ([`Subscriptions`]).
pub struct Session {
    /// `Some(topic)` on `/ws/sub/{topic}`.
    only_topic: Option<Box<str>>,
    grant: Option<Grant>,
    /// Before setup: the setup deadline; after: when the token expires.
    deadline: Instant,
    subs: Subscriptions,
    control: Vec<String>,
    /// The payload of the client's last ping, to answer.
    pong: Option<Box<[u8]>>,
    /// Created on the first publish: most sessions never publish, and an idle connection
    /// should cost little.
    acks: Option<Acks>,
    rate: TokenBucket,
    /// Set when the session must end: the close code and reason.
    closing: Option<(u16, &'static str)>,
    last_heard: Instant,
    next_ping: Instant,
    ping_pending: bool,
    tally: Tally,
}

/// What a session counts and measures, added to the shared counters and histograms at most
/// every [`TALLY_EVERY`] (or [`TALLY_SAMPLES`] samples): a shared counter touched on every write
/// by every session is a cache line bouncing between cores.
struct Tally {
    frames_out: u64,
    /// Per write: source timestamp → socket write, and receipt by this edge → socket write, in
    /// seconds.
    latency: Vec<(f32, f32)>,
    since: Instant,
}

const TALLY_EVERY: Duration = Duration::from_secs(1);
const TALLY_SAMPLES: usize = 64;

impl Session {
    /// A session of `node`, registered so that shutdown reaches it.
    pub fn new(node: Arc<Edge>, id: u64, only_topic: Option<String>, now: Instant) -> Session {
        let waker = Arc::new(Notify::new());
        node.sessions.register(id, waker.clone());
        let settings = &node.settings;
        Session {
            only_topic: only_topic.map(String::into_boxed_str),
            grant: None,
            deadline: now + Duration::from_millis(settings.setup_timeout_ms),
            control: Vec::new(),
            pong: None,
            acks: None,
            rate: TokenBucket::new(settings.messages_per_second),
            closing: None,
            last_heard: now,
            next_ping: now + Duration::from_millis(settings.heartbeat_ms),
            ping_pending: false,
            tally: Tally {
                frames_out: 0,
                latency: Vec::new(),
                since: now,
            },
            subs: Subscriptions::new(node, id, waker),
        }
    }

    pub fn node(&self) -> &Arc<Edge> {
        self.subs.node()
    }

    /// `<node>-<id>`, as in `ready`.
    pub fn session_id(&self) -> String {
        format!("{}-{:x}", self.node().node_id, self.subs.session())
    }

    /// Notified when there is something to write (records, publish results, shutdown).
    pub fn waker(&self) -> &Arc<Notify> {
        self.subs.waker()
    }

    pub fn only_topic(&self) -> Option<&str> {
        self.only_topic.as_deref()
    }

    pub fn grant(&self) -> Option<&Grant> {
        self.grant.as_ref()
    }

    /// Sets up (or refreshes) the session with `grant`, valid until `expires`.
    pub fn set_grant(&mut self, grant: Grant, expires: Instant) {
        self.grant = Some(grant);
        self.deadline = expires;
    }

    pub fn subs(&self) -> &Subscriptions {
        &self.subs
    }

    pub fn subs_mut(&mut self) -> &mut Subscriptions {
        &mut self.subs
    }

    pub fn rate(&mut self) -> &mut TokenBucket {
        &mut self.rate
    }

    /// Where publish tasks put their results (then wake the session).
    pub fn acks(&mut self) -> Acks {
        self.acks.get_or_insert_with(Default::default).clone()
    }

    pub fn closing(&self) -> Option<(u16, &'static str)> {
        self.closing
    }

    /// Ends the session with a Close frame (`code`, `reason`) after what is queued.
    pub fn close(&mut self, code: u16, reason: &'static str) {
        self.closing = Some((code, reason));
    }

    pub fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// Answers the client's ping with this payload on the next write.
    pub fn pong(&mut self, payload: Vec<u8>) {
        self.pong = Some(payload.into_boxed_slice());
    }

    /// Queues an error frame.
    pub fn fail(&mut self, code: Code, message: &str, topic: Option<&str>) {
        self.send(server::error(code, message, topic));
    }

    /// Queues a control frame; a client that lets too many pile up is dropped.
    pub fn send(&mut self, frame: String) {
        self.control.push(frame);
        if self.control.len() > MAX_CONTROL_QUEUE {
            telemetry::edge_slow_close("control_queue");
            self.close(CLOSE_POLICY, "slow consumer");
        }
    }

    /// The next time [`Session::housekeeping`] has something to check.
    pub fn next_deadline(&self) -> Instant {
        let mut d = self.next_ping;
        d = d.min(self.deadline);
        if let Some(w) = self.subs.deadline() {
            d = d.min(w);
        }
        if self.tally.frames_out > 0 || !self.tally.latency.is_empty() {
            d = d.min(self.tally.since + TALLY_EVERY);
        }
        d
    }

    /// Setup timeout, token expiry, heartbeat, and the counts kept since the last second.
    pub fn housekeeping(&mut self, now: Instant) {
        if now.duration_since(self.tally.since) >= TALLY_EVERY {
            self.flush_tally(now);
        }
        let settings = &self.subs.node().settings;
        if self.grant.is_none() && now >= self.deadline {
            let why = format!("no setup within {} ms", settings.setup_timeout_ms);
            self.fail(Code::NotSetup, &why, None);
            self.close(CLOSE_POLICY, "no setup");
            return;
        }
        if self.grant.is_some() && now >= self.deadline {
            telemetry::edge_auth_failure("expired_on_open_connection");
            self.fail(
                Code::Unauthorized,
                "token expired; send setup with a fresh token before expiry to stay connected",
                None,
            );
            self.close(CLOSE_POLICY, "token expired");
            return;
        }
        let heartbeat = Duration::from_millis(settings.heartbeat_ms);
        if now >= self.next_ping {
            if now.duration_since(self.last_heard) > heartbeat * 2 {
                tracing::debug!(session = %self.session_id(), "peer silent for two heartbeats; dropping");
                self.close(CLOSE_GOING_AWAY, "heartbeat timeout");
                return;
            }
            self.ping_pending = true;
            self.next_ping = now + heartbeat;
        }
    }

    /// Puts queued control frames, then prices, into `out`. `blocked`: the last write waited on
    /// the client (see [`Limits::blocked`]).
    pub fn fill(&mut self, out: &mut Outbox, blocked: bool, now: Instant) {
        self.take_acks();
        if let Some(payload) = self.pong.take() {
            out.pong(&payload);
        }
        self.write_control(out);
        if self.ping_pending {
            self.ping_pending = false;
            out.ping();
        }
        if self.subs.is_empty() {
            return;
        }
        let frames_before = out.frames;
        let mut budget = Budget {
            frames: BATCH_FRAMES,
            bytes: BATCH_BYTES,
        };
        let max_lag = self.node().settings.max_lag_records;
        let limits = Limits {
            max_lag,
            blocked,
            now,
        };
        if let Err(channel) = self.subs.pull(limits, &mut budget, out) {
            telemetry::edge_slow_close("lag");
            out.control(&server::error(
                Code::SlowConsumer,
                &format!(
                    "fell more than {max_lag} records behind on {channel}, whose policy is to close"
                ),
                Some(&channel),
            ));
            self.close(CLOSE_POLICY, "slow consumer");
        }
        self.tally.frames_out += (out.frames - frames_before) as u64;
        if now.duration_since(self.tally.since) >= TALLY_EVERY {
            self.flush_tally(now);
        }
    }

    /// A completed write: its oldest price was `age_s` old from its source and `held_s` in this
    /// edge.
    pub fn record_latency(&mut self, age_s: f64, held_s: f64) {
        self.tally.latency.push((age_s as f32, held_s as f32));
        if self.tally.latency.len() >= TALLY_SAMPLES {
            self.flush_tally(Instant::now());
        }
    }

    fn flush_tally(&mut self, now: Instant) {
        let t = &mut self.tally;
        let node = self.subs.node();
        node.stats.add_out(std::mem::take(&mut t.frames_out));
        // Taken, not drained: an idle session keeps no sample buffer.
        for (age, held) in std::mem::take(&mut t.latency) {
            node.latency.record(f64::from(age));
            node.internal_latency.record(f64::from(held));
        }
        t.since = now;
        self.subs.flush_counts();
    }

    /// Control frames queued so far (an idle connection should not keep the queue's allocation).
    pub fn write_control(&mut self, out: &mut Outbox) {
        for f in std::mem::take(&mut self.control) {
            out.control(&f);
        }
    }

    fn take_acks(&mut self) {
        if let Some(acks) = &self.acks {
            let done: Vec<String> = std::mem::take(&mut *acks.lock().expect("acks lock"));
            for frame in done {
                self.send(frame);
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.flush_tally(Instant::now());
        self.node().sessions.unregister(self.subs.session());
    }
}
