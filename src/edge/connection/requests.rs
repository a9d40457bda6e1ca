//! What each client request does: `setup` (and token refresh), `subscribe`, `unsubscribe`,
//! `resume`, `publish`, `ping`, with the checks (ACL, topic, symbols, limits) and the specific
//! error for each way a request can be refused. Requests change the [`Session`]; none waits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::session::{CLOSE_POLICY, Session};
use super::subscription::Subscription;
use super::throttle;
use crate::config::SlowClientPolicy;
use crate::edge::log::symbols::SymbolSet;
use crate::edge::log::topic::TopicLog;
use crate::edge::publish::PublishError;
use crate::edge::wire::protocol::{self, ClientFrame, Code};
use crate::edge::wire::server;
use crate::telemetry;

/// How long a resume waits for this edge to reach an offset another edge already delivered.
pub const RESUME_WAIT: Duration = Duration::from_secs(2);

/// A subscribe or resume that passed the checks.
pub struct Checked {
    pub topic: Arc<TopicLog>,
    pub filter: Option<SymbolSet>,
    /// The symbols as asked (or as the token allows), `None` for all.
    pub symbols: Option<Vec<String>>,
    pub policy: SlowClientPolicy,
    /// The shortest interval between two prices of a symbol: the longer of what the client
    /// asked (`maxRate`) and the token's ceiling. `None`: not throttled.
    pub interval: Option<Duration>,
}

impl Checked {
    /// The `subscribed` frame for this subscription.
    pub fn subscribed(&self, topic: &str) -> String {
        server::subscribed(
            topic,
            self.topic.partitions.len(),
            self.symbols.as_deref(),
            &self.topic.epoch,
            self.interval.map(throttle::rate),
        )
    }
}

/// A subscribe or resume refused: the error code and what to tell the client.
pub struct Refusal {
    pub code: Code,
    pub message: String,
}

fn refuse(code: Code, message: String) -> Refusal {
    Refusal { code, message }
}

/// One text message from the client.
pub fn on_text(s: &mut Session, text: String) {
    let settings = &s.node().settings;
    let (per_second, max_frame) = (settings.messages_per_second, settings.max_frame_bytes);
    s.node().stats.add_in(1);
    if !s.rate().allow() {
        if s.rate().should_report() {
            s.fail(
                Code::RateLimited,
                &format!("more than {per_second} frames per second; frames are being dropped"),
                None,
            );
        }
        // A client that keeps flooding long after being told is cut off.
        if s.rate().dropped() > per_second.saturating_mul(10).max(100) {
            s.close(CLOSE_POLICY, "rate limit");
        }
        return;
    }
    if text.len() > max_frame {
        let why = format!("frame of {} bytes; the limit is {max_frame}", text.len());
        s.fail(Code::FrameTooLarge, &why, None);
        return;
    }
    let frame = match protocol::parse(&text) {
        Ok(f) => f,
        Err(e) => {
            s.fail(e.code, &e.message, None);
            return;
        }
    };
    match frame {
        ClientFrame::Setup {
            token,
            topics,
            resume,
            epochs,
        } => on_setup(s, &token, topics, resume, epochs),
        _ if s.grant().is_none() => {
            s.fail(Code::NotSetup, "send setup with a token first", None);
        }
        ClientFrame::Subscribe {
            topic,
            symbols,
            max_rate,
        } => on_subscribe(s, &topic, symbols, max_rate),
        ClientFrame::Unsubscribe { topic } => {
            if s.subs_mut().remove(&topic) {
                s.send(server::unsubscribed(&topic, None));
            } else {
                let why = format!("not subscribed to {topic}");
                s.fail(Code::NotSubscribed, &why, Some(&topic));
            }
        }
        ClientFrame::Resume {
            topic,
            from,
            symbols,
            epoch,
            max_rate,
        } => on_resume(s, &topic, from, symbols, epoch.as_deref(), max_rate),
        ClientFrame::Publish {
            topic,
            message_id,
            payload,
        } => on_publish(s, &topic, message_id, payload),
        ClientFrame::Ping => s.send(server::pong()),
    }
}

fn on_setup(
    s: &mut Session,
    token: &str,
    topics: Vec<String>,
    resume: BTreeMap<String, BTreeMap<i32, i64>>,
    epochs: BTreeMap<String, String>,
) {
    let grant = match s.node().verifier.verify(token) {
        Ok(g) => g,
        Err(e) => {
            telemetry::edge_auth_failure(e.reason());
            s.fail(Code::Unauthorized, &e.to_string(), None);
            if s.grant().is_none() {
                s.close(CLOSE_POLICY, "unauthorized");
            }
            return;
        }
    };
    if let Some(old) = s.grant()
        && old.user != grant.user
    {
        let why = format!(
            "this connection belongs to {}; a token for {} needs a new connection",
            old.user, grant.user
        );
        s.fail(Code::Forbidden, &why, None);
        return;
    }
    let refresh = s.grant().is_some();
    let remaining = grant.expires_at + s.node().leeway_s;
    let secs = remaining.saturating_sub(unix_now());
    let ready = server::ready(&s.session_id(), &grant.user, grant.expires_at);
    s.send(ready);
    s.set_grant(grant, Instant::now() + Duration::from_secs(secs));
    if refresh {
        reapply_grant(s);
    }
    let mut topics = topics;
    if let Some(t) = s.only_topic()
        && !refresh
        && !topics.iter().any(|x| x == t)
    {
        topics.insert(0, t.to_string());
    }
    for t in topics {
        if !resume.contains_key(&t) {
            on_subscribe(s, &t, None, None);
        }
    }
    // A reconnecting client picks up where it was in the same round trip (on
    // `/ws/sub/{topic}` this is the only way to resume the path topic without a snapshot and
    // live prices arriving first).
    for (t, from) in resume {
        let epoch = epochs.get(&t).map(String::as_str);
        on_resume(s, &t, from, None, epoch, None);
    }
}

/// After a token refresh: drop what the new token no longer allows.
fn reapply_grant(s: &mut Session) {
    let grant = s.grant().cloned().expect("refresh has a grant");
    let gone = s.subs_mut().retain(|sub| {
        let symbols_ok = sub
            .symbols()
            .is_none_or(|syms| syms.iter().all(|x| grant.may_see_symbol(x)))
            && (grant.symbols.is_none() || sub.symbols().is_some());
        grant.may_see_channel(sub.channel()) && symbols_ok
    });
    for channel in gone {
        s.send(server::unsubscribed(
            &channel,
            Some("the new token does not allow it"),
        ));
    }
    // A lower ceiling applies at once; a higher one leaves subscriptions as they are (the
    // client subscribes again to go faster).
    if let Some(ceiling) = grant.min_interval {
        for sub in s.subs_mut().iter_mut() {
            sub.limit(ceiling);
        }
    }
}

/// Checks a subscribe or resume: the topic, the ACL, the symbols.
pub fn check_subscription(
    s: &Session,
    topic: &str,
    symbols: Option<Vec<String>>,
    max_rate: Option<f64>,
) -> Result<Checked, Refusal> {
    let grant = s.grant().cloned().expect("checked by the caller");
    let node = s.node().clone();
    if let Some(only) = s.only_topic()
        && only != topic
    {
        let why = format!("this endpoint serves only {only}; use /ws for several topics");
        return Err(refuse(Code::BadRequest, why));
    }
    let Some(log) = node.hub.topic(topic) else {
        let topics = node.hub.topics();
        let mut known: Vec<&str> = topics.keys().map(String::as_str).collect();
        known.sort_unstable();
        let why = format!(
            "no topic {topic:?} on this edge (topics: {})",
            known.join(", ")
        );
        return Err(refuse(Code::UnknownTopic, why));
    };
    if !grant.may_see_channel(topic) {
        telemetry::edge_auth_failure("forbidden_topic");
        let why = format!("your token does not allow {topic}");
        return Err(refuse(Code::Forbidden, why));
    }
    let max = node.settings.max_subscriptions;
    if !s.subs().contains(topic) && s.subs().len() >= max {
        let why = format!("at most {max} subscriptions per connection");
        return Err(refuse(Code::TooManySubscriptions, why));
    }
    let rules = node.rules.load();
    let channel = rules.channel(topic);
    let policy = channel.map_or(SlowClientPolicy::Conflate, |c| c.slow_client);
    let carried = |sym: &str| {
        rules
            .instrument_index(sym)
            .is_some_and(|i| channel.is_none_or(|c| c.carries(i)))
    };
    let wanted: Option<Vec<String>> = match (symbols, &grant.symbols) {
        (Some(syms), _) => Some(syms),
        // Everything the token allows that this channel carries.
        (None, Some(allowed)) => Some(allowed.iter().filter(|x| carried(x)).cloned().collect()),
        (None, None) => None,
    };
    let asked = max_rate.and_then(|r| throttle::interval(r).ok());
    let interval = asked.into_iter().chain(grant.min_interval).max();
    let Some(wanted) = wanted else {
        return Ok(Checked {
            topic: log,
            filter: None,
            symbols: None,
            policy,
            interval,
        });
    };
    let mut set = SymbolSet::default();
    for sym in &wanted {
        if !carried(sym) {
            let why = format!("{topic} does not carry {sym:?}");
            return Err(refuse(Code::UnknownSymbol, why));
        }
        if !grant.may_see_symbol(sym) {
            telemetry::edge_auth_failure("forbidden_symbol");
            let why = format!("your token does not allow {sym}");
            return Err(refuse(Code::Forbidden, why));
        }
        set.insert(node.hub.symbols.intern(sym));
    }
    Ok(Checked {
        topic: log,
        filter: Some(set),
        symbols: Some(wanted),
        policy,
        interval,
    })
}

/// [`check_subscription`], telling the client when it is refused.
fn checked(
    s: &mut Session,
    topic: &str,
    symbols: Option<Vec<String>>,
    max_rate: Option<f64>,
) -> Option<Checked> {
    match check_subscription(s, topic, symbols, max_rate) {
        Ok(c) => Some(c),
        Err(r) => {
            s.fail(r.code, &r.message, Some(topic));
            None
        }
    }
}

fn on_subscribe(s: &mut Session, topic: &str, symbols: Option<Vec<String>>, rate: Option<f64>) {
    let Some(c) = checked(s, topic, symbols, rate) else {
        return;
    };
    subscribe_checked(s, topic, c);
}

/// Sends `subscribed` and the snapshot, and starts the subscription.
pub fn subscribe_checked(s: &mut Session, topic: &str, c: Checked) {
    s.send(c.subscribed(topic));
    let interval = c.interval;
    let (sub, snap) = Subscription::subscribe(c.topic, c.filter, c.symbols, c.policy);
    s.send(snap);
    s.subs_mut().put(sub.throttled(interval));
}

fn on_resume(
    s: &mut Session,
    topic: &str,
    from: BTreeMap<i32, i64>,
    symbols: Option<Vec<String>>,
    epoch: Option<&str>,
    rate: Option<f64>,
) {
    let Some(c) = checked(s, topic, symbols, rate) else {
        return;
    };
    resume_checked(s, topic, c, from, epoch);
}

/// Resumes a subscription that passed the checks from `from` (partition → last seqNo).
pub fn resume_checked(
    s: &mut Session,
    topic: &str,
    c: Checked,
    from: BTreeMap<i32, i64>,
    epoch: Option<&str>,
) {
    if c.interval.is_some() {
        // A throttled stream skips prices by design, and a held price goes out after later
        // prices of other symbols: its seqNos are no complete position to resume from. The
        // latest prices are what it stands for, so it starts from a fresh snapshot.
        subscribe_checked(s, topic, c);
        return;
    }
    if let Some(e) = epoch
        && !c.topic.epoch.is_empty()
        && e != c.topic.epoch
    {
        // Positions in a topic that was deleted and created again: its offsets started over,
        // so they name other records now.
        let why = format!(
            "cannot resume without a gap: the positions are from an earlier life of {topic} \
             (epoch {e}; the topic was deleted and created again, epoch {}); a fresh snapshot follows",
            c.topic.epoch
        );
        s.fail(Code::ResumeGap, &why, Some(topic));
        subscribe_checked(s, topic, c);
        return;
    }
    let partitions = c.topic.partitions.len();
    if let Some(p) = from.keys().find(|p| **p < 0 || **p as usize >= partitions) {
        let why = format!("{topic} has no partition {p} (it has {partitions})");
        s.fail(Code::BadRequest, &why, Some(topic));
        return;
    }
    s.send(c.subscribed(topic));
    // A client may come from an edge that is a little ahead of this one: its cursors wait for
    // this edge to get there, up to RESUME_WAIT.
    let until = Instant::now() + RESUME_WAIT;
    let (sub, snap) = Subscription::resume(c.topic, c.filter, c.symbols, c.policy, &from, until);
    if let Some(snap) = snap {
        s.send(snap);
    }
    s.subs_mut().put(sub);
    s.waker().notify_one();
}

fn on_publish(
    s: &mut Session,
    topic: &str,
    message_id: String,
    payload: Box<serde_json::value::RawValue>,
) {
    let grant = s.grant().expect("checked by the caller");
    if !grant.publish {
        telemetry::edge_auth_failure("forbidden_publish");
        s.fail(
            Code::Forbidden,
            "your token does not allow publishing",
            Some(topic),
        );
        return;
    }
    let user = grant.user.clone();
    let node = s.node().clone();
    let raw_topic = node.publisher.raw_topic();
    if topic != raw_topic {
        let why = format!("publish goes to the raw topic {raw_topic:?}, not {topic:?}");
        s.fail(Code::UnknownTopic, &why, Some(topic));
        return;
    }
    let publisher = node.publisher.clone();
    let acks = s.acks();
    let waker = s.waker().clone();
    node.tasks.spawn(async move {
        let frame = match publisher
            .publish(&user, &message_id, payload.get().as_bytes())
            .await
        {
            Ok(status) => server::ack(&message_id, status.as_str()),
            Err(PublishError::Invalid(why)) => server::error(
                Code::BadRequest,
                &format!("publish {message_id}: {why}"),
                None,
            ),
            Err(e) => server::error(
                Code::PublishFailed,
                &format!("publish {message_id}: {e}"),
                None,
            ),
        };
        acks.lock().expect("acks lock").push(frame);
        waker.notify_one();
    });
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
