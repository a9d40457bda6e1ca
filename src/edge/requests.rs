//! What each client request does: `setup` (and token refresh), `subscribe`, `unsubscribe`,
//! `resume`, `publish`, `ping`, with the checks (ACL, topic, symbols, limits) and the specific
//! error for each way a request can be refused. The connection loop is in [`super::session`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::auth::AuthError;
use super::hub::SymbolSet;
use super::protocol::{self, ClientFrame, Code};
use super::session::{CLOSE_POLICY, Session, unix_now};
use super::subscription::{PullContext, Start, Subscription, start_for};
use crate::telemetry;

/// How long a resume waits for this edge to reach an offset another edge already delivered.
const RESUME_WAIT: Duration = Duration::from_secs(2);

/// A subscribe or resume that passed the checks: the topic, the symbol filter, the symbols as
/// asked, and the channel's slow-client policy.
type Checked = (
    Arc<super::hub::TopicLog>,
    Option<SymbolSet>,
    Option<Vec<String>>,
    crate::config::SlowClientPolicy,
);

pub(super) struct TokenBucket {
    capacity: f64,
    tokens: f64,
    per_sec: f64,
    at: Instant,
    last_error: Option<Instant>,
    dropped: u32,
}

impl TokenBucket {
    pub(super) fn new(per_sec: u32) -> Self {
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

impl Session {
    /// One text message from the client.
    pub(super) async fn on_text(&mut self, text: String) {
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
                self.closing = Some((CLOSE_POLICY, "rate limit"));
            }
            return;
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
            return;
        }
        let frame = match protocol::parse(&text) {
            Ok(f) => f,
            Err(e) => {
                self.fail(e.code, &e.message, None);
                return;
            }
        };
        match frame {
            ClientFrame::Setup {
                token,
                topics,
                resume,
            } => self.on_setup(&token, topics, resume).await,
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
    }

    async fn on_setup(
        &mut self,
        token: &str,
        topics: Vec<String>,
        resume: std::collections::BTreeMap<String, std::collections::BTreeMap<i32, i64>>,
    ) {
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
                    self.closing = Some((CLOSE_POLICY, "unauthorized"));
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
            &self.session_id(),
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
            if !resume.contains_key(&t) {
                self.on_subscribe(&t, None);
            }
        }
        // A reconnecting client picks up where it was in the same round trip (on
        // `/ws/sub/{topic}` this is the only way to resume the path topic without a snapshot
        // and live prices arriving first).
        for (t, from) in resume {
            Box::pin(self.on_resume(&t, from, None)).await;
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
        let Some(log) = self.edge.hub.topic(topic) else {
            let topics = self.edge.hub.topics();
            let mut known: Vec<&str> = topics.keys().map(String::as_str).collect();
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
        let ctx = PullContext::new(&edge, &self.waker, false);
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
}
