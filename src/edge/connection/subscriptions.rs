//! The subscriptions of one session, at most one per channel. This is the one place that keeps
//! "a subscription is in the set ⇔ the session is registered with its topic (woken when records
//! arrive) and counted in `/stats`": every way in or out goes through here, including drop.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;

use super::cursor::Limits;
use super::outbox::Outbox;
use super::subscription::{PullContext, Subscription, Trouble};
use crate::edge::log::partition::Budget;
use crate::edge::node::Edge;
use crate::edge::wire::protocol::Code;
use crate::edge::wire::server;

pub struct Subscriptions {
    node: Arc<Edge>,
    session: u64,
    waker: Arc<Notify>,
    list: Vec<Subscription>,
}

impl Subscriptions {
    pub fn new(node: Arc<Edge>, session: u64, waker: Arc<Notify>) -> Subscriptions {
        Subscriptions {
            node,
            session,
            waker,
            list: Vec::new(),
        }
    }

    pub fn node(&self) -> &Arc<Edge> {
        &self.node
    }

    /// The session these subscriptions belong to.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// The session's wake-up, registered with every subscribed topic.
    pub fn waker(&self) -> &Arc<Notify> {
        &self.waker
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn contains(&self, channel: &str) -> bool {
        self.list.iter().any(|s| s.channel() == channel)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Subscription> {
        self.list.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Subscription> {
        self.list.iter_mut()
    }

    /// Adds `sub`, or replaces the subscription to the same channel.
    pub fn put(&mut self, sub: Subscription) {
        let topic = sub.topic().clone();
        let per_record = sub.per_record();
        match self.list.iter().position(|s| s.channel() == sub.channel()) {
            Some(i) => self.list[i] = sub,
            None => {
                // Most sessions hold one subscription: no room kept for more (a Vec's first
                // push would make room for four).
                self.list.reserve_exact(1);
                self.list.push(sub);
                self.node.stats.subscriptions(1);
            }
        }
        topic.add_subscriber(self.session, self.waker.clone(), per_record);
    }

    /// Removes the subscription to `channel`; false when there is none.
    pub fn remove(&mut self, channel: &str) -> bool {
        let Some(i) = self.list.iter().position(|s| s.channel() == channel) else {
            return false;
        };
        let sub = self.list.remove(i);
        self.left(sub);
        true
    }

    /// Keeps the subscriptions `keep` accepts; returns the channels of the others.
    pub fn retain(&mut self, mut keep: impl FnMut(&Subscription) -> bool) -> Vec<String> {
        let mut gone = Vec::new();
        let mut i = 0;
        while i < self.list.len() {
            if keep(&self.list[i]) {
                i += 1;
            } else {
                let sub = self.list.remove(i);
                gone.push(sub.channel().to_string());
                self.left(sub);
            }
        }
        gone
    }

    /// Adds what each subscription delivered to the shared counters.
    pub fn flush_counts(&mut self) {
        for sub in &mut self.list {
            sub.flush_count();
        }
    }

    fn left(&self, mut sub: Subscription) {
        sub.flush_count();
        sub.topic().remove_subscriber(self.session);
        self.node.stats.subscriptions(-1);
    }

    /// The earliest deadline of a resume waiting for this edge to catch up.
    pub fn deadline(&self) -> Option<Instant> {
        self.list.iter().filter_map(Subscription::deadline).min()
    }

    /// A subscription on a `close` channel whose live cursor is more than `max_lag` behind.
    pub fn lagging_on_close_policy(&self, max_lag: usize) -> bool {
        self.list
            .iter()
            .any(|s| s.policy() == crate::config::SlowClientPolicy::Close && s.lagging(max_lag))
    }

    /// Prices (and what a subscription has to say) from every subscription, within `budget`.
    /// A subscription that cannot go on without a gap says so and starts over from a fresh
    /// snapshot. Returns the channel of a subscription whose client fell behind on a `close`
    /// channel (the session must close).
    pub fn pull(
        &mut self,
        limits: Limits,
        budget: &mut Budget,
        out: &mut Outbox,
    ) -> Result<(), String> {
        let ctx = PullContext {
            hub: &self.node.hub,
            replay: &self.node.replay,
            waker: &self.waker,
            limits,
        };
        for sub in &mut self.list {
            if sub.topic().retired()
                && let Some(now) = self.node.hub.topic(sub.channel())
            {
                // The topic was deleted and created again: its offsets started over, and the
                // client's positions name nothing in it.
                let why = format!(
                    "cannot go on without a gap: the topic was deleted and created again (epoch \
                     {} → {}); a fresh snapshot follows",
                    sub.topic().epoch,
                    now.epoch
                );
                out.control(&server::error(Code::ResumeGap, &why, Some(sub.channel())));
                let (fresh, snap) = sub.restart_on(now.clone());
                out.control(&snap);
                sub.flush_count();
                sub.topic().remove_subscriber(self.session);
                now.add_subscriber(self.session, self.waker.clone(), fresh.per_record());
                *sub = fresh;
                continue;
            }
            match sub.pull(&ctx, budget, out) {
                Ok(()) => {}
                Err(Trouble::SlowConsumer) => return Err(sub.channel().to_string()),
                Err(Trouble::Gap(why)) => {
                    // Never silently wrong: say so, then start over from a fresh snapshot.
                    out.control(&server::error(
                        Code::ResumeGap,
                        &format!("cannot resume without a gap: {why}; a fresh snapshot follows"),
                        Some(sub.channel()),
                    ));
                    let (fresh, snap) = sub.restart();
                    out.control(&snap);
                    sub.flush_count();
                    *sub = fresh;
                }
            }
        }
        Ok(())
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        for sub in std::mem::take(&mut self.list) {
            self.left(sub);
        }
    }
}
