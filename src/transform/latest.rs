//! The latest-price book of a worker: from the delivery reports of its channel records, the
//! newest record of each symbol per channel topic with the offset Kafka gave it; at every
//! checkpoint the symbols that changed are written to the channel's latest-price topic
//! (`crate::kafka::latest`), after their channel records are acknowledged and before the raw
//! offsets are committed, so a latest-price record never names an offset that is not in the
//! channel topic. In transactional mode they are in the same transaction as the channel records
//! they name: both become visible, or neither.
//!
//! A transaction that aborts takes its records' reports with it: every record is sent with the
//! book's generation, an abort moves to the next, and a report of an older generation is
//! ignored.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use crate::kafka::latest::{
    CHANNEL_EPOCH_HEADER, CHANNEL_OFFSET_HEADER, CHANNEL_PARTITION_HEADER, latest_topic,
};
use crate::kafka::{ADMIN_TIMEOUT, topic_ids};

/// See the module documentation.
#[derive(Default)]
pub struct LatestBook {
    inner: Mutex<Inner>,
    generation: AtomicUsize,
}

#[derive(Default)]
struct Inner {
    /// By channel topic.
    topics: HashMap<String, TopicBook>,
    /// Symbols changed since the last write.
    dirty: usize,
}

struct TopicBook {
    latest_topic: String,
    /// The channel topic's id ("" when not known).
    epoch: String,
    symbols: HashMap<Vec<u8>, Slot>,
}

struct Slot {
    partition: i32,
    offset: i64,
    value: Vec<u8>,
    dirty: bool,
}

/// A latest-price record to send.
pub struct Pending {
    pub topic: String,
    pub partition: i32,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    epoch: String,
    channel_offset: i64,
    offset: String,
    partition_text: String,
}

impl Pending {
    /// The record, with the channel partition and offset it names in its headers.
    pub fn record(&self, generation: usize) -> BaseRecord<'_, [u8], [u8], usize> {
        let mut headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: CHANNEL_PARTITION_HEADER,
                value: Some(&self.partition_text),
            })
            .insert(Header {
                key: CHANNEL_OFFSET_HEADER,
                value: Some(&self.offset),
            });
        if !self.epoch.is_empty() {
            headers = headers.insert(Header {
                key: CHANNEL_EPOCH_HEADER,
                value: Some(&self.epoch),
            });
        }
        BaseRecord::with_opaque_to(&self.topic, generation)
            .partition(self.partition)
            .key(self.key.as_slice())
            .payload(self.value.as_slice())
            .headers(headers)
    }
}

impl LatestBook {
    /// The generation records are sent with now.
    #[inline]
    pub fn generation(&self) -> usize {
        self.generation.load(Ordering::Acquire)
    }

    /// [`track`](Self::track) with each topic's id as Kafka gives it now (none when it cannot).
    pub fn track_topics<C: ConsumerContext>(&self, client: &BaseConsumer<C>, topics: &[String]) {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let ids = topic_ids(client, &names, ADMIN_TIMEOUT).unwrap_or_else(|e| {
            tracing::warn!("no topic ids for the latest-price records ({e})");
            Default::default()
        });
        let tracked: Vec<(String, String)> = topics
            .iter()
            .map(|t| (t.clone(), ids.get(t).cloned().unwrap_or_default()))
            .collect();
        self.track(&tracked);
    }

    /// Keeps the latest price of these channel topics, each with its id (and of those tracked
    /// before). A topic whose id changed (deleted and created again) starts with nothing.
    pub fn track(&self, channel_topics: &[(String, String)]) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (t, epoch) in channel_topics {
            let fresh = || TopicBook {
                latest_topic: latest_topic(t),
                epoch: epoch.clone(),
                symbols: HashMap::new(),
            };
            match g.topics.get_mut(t) {
                Some(book) if book.epoch == *epoch => {}
                Some(book) => *book = fresh(),
                None => {
                    g.topics.insert(t.clone(), fresh());
                }
            }
        }
        g.dirty = g
            .topics
            .values()
            .flat_map(|b| b.symbols.values())
            .filter(|s| s.dirty)
            .count();
    }

    /// A delivery report of a record written at `offset`: kept when it is a channel record, of
    /// this generation, and newer than what the book holds for its symbol.
    pub fn delivered(
        &self,
        generation: usize,
        topic: &str,
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) {
        let (Some(key), Some(value)) = (key, value) else {
            return;
        };
        if generation != self.generation() {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Inner { topics, dirty } = &mut *g;
        let Some(book) = topics.get_mut(topic) else {
            return;
        };
        match book.symbols.get_mut(key) {
            Some(slot) => {
                if slot.partition == partition && slot.offset >= offset {
                    return;
                }
                slot.partition = partition;
                slot.offset = offset;
                slot.value.clear();
                slot.value.extend_from_slice(value);
                if !slot.dirty {
                    slot.dirty = true;
                    *dirty += 1;
                }
            }
            None => {
                book.symbols.insert(
                    key.to_vec(),
                    Slot {
                        partition,
                        offset,
                        value: value.to_vec(),
                        dirty: true,
                    },
                );
                *dirty += 1;
            }
        }
    }

    /// The symbols that changed since the last call, as records to send; they count as written.
    pub fn take_dirty(&self) -> Vec<Pending> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.dirty == 0 {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(g.dirty);
        for book in g.topics.values_mut() {
            for (key, slot) in book.symbols.iter_mut().filter(|(_, s)| s.dirty) {
                slot.dirty = false;
                out.push(Pending {
                    topic: book.latest_topic.clone(),
                    partition: slot.partition,
                    key: key.clone(),
                    value: slot.value.clone(),
                    epoch: book.epoch.clone(),
                    channel_offset: slot.offset,
                    offset: slot.offset.to_string(),
                    partition_text: slot.partition.to_string(),
                });
            }
        }
        g.dirty = 0;
        // In channel-offset order per partition: an edge that reads a partition while these are
        // being written sees a prefix, and reads the channel topic after the newest offset it
        // saw (src/edge/kafka/position.rs).
        out.sort_unstable_by_key(|p| (p.partition, p.channel_offset));
        out
    }

    /// The open transaction aborted: what it reported is not in Kafka. Reports still to come
    /// from it are ignored; the records priced again report anew.
    pub fn aborted(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for book in g.topics.values_mut() {
            // Their offsets name aborted records: forget them so that the next report of the
            // symbol wins whatever its offset.
            book.symbols.retain(|_, s| !s.dirty);
        }
        g.dirty = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(p: &[Pending]) -> Vec<(String, i32, String, String)> {
        let mut v: Vec<_> = p
            .iter()
            .map(|p| {
                (
                    p.topic.clone(),
                    p.partition,
                    String::from_utf8_lossy(&p.key).into_owned(),
                    p.offset.clone(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn keeps_the_newest_record_per_symbol_and_writes_each_change_once() {
        let book = LatestBook::default();
        book.track(&[("prices.vip".into(), "id1".into())]);
        let g = book.generation();
        book.delivered(g, "prices.vip", 0, 5, Some(b"EURUSD"), Some(b"{\"a\":1}"));
        book.delivered(g, "prices.vip", 0, 9, Some(b"EURUSD"), Some(b"{\"a\":2}"));
        // A late report of an older offset does not win.
        book.delivered(g, "prices.vip", 0, 7, Some(b"EURUSD"), Some(b"{\"a\":0}"));
        book.delivered(g, "prices.vip", 1, 3, Some(b"GBPUSD"), Some(b"{\"b\":1}"));
        // Not a tracked channel topic (a dead letter, a latest-price record).
        book.delivered(g, "prices.dlq", 0, 1, Some(b"X"), Some(b"{}"));
        let first = book.take_dirty();
        assert_eq!(
            keys(&first),
            vec![
                ("prices.vip.latest".into(), 0, "EURUSD".into(), "9".into()),
                ("prices.vip.latest".into(), 1, "GBPUSD".into(), "3".into()),
            ]
        );
        let eur = first.iter().find(|p| p.key == b"EURUSD").unwrap();
        assert_eq!(eur.value, b"{\"a\":2}");
        assert!(book.take_dirty().is_empty(), "nothing changed since");
        book.delivered(g, "prices.vip", 0, 10, Some(b"EURUSD"), Some(b"{\"a\":3}"));
        assert_eq!(keys(&book.take_dirty())[0].3, "10");
    }

    #[test]
    fn an_abort_forgets_its_reports_and_ignores_late_ones() {
        let book = LatestBook::default();
        book.track(&[("prices.vip".into(), "id1".into())]);
        let g = book.generation();
        book.delivered(g, "prices.vip", 0, 4, Some(b"EURUSD"), Some(b"{}"));
        assert_eq!(book.take_dirty().len(), 1);
        book.delivered(g, "prices.vip", 0, 8, Some(b"EURUSD"), Some(b"{}"));
        book.delivered(g, "prices.vip", 0, 9, Some(b"GBPUSD"), Some(b"{}"));
        book.aborted();
        // A report of the aborted transaction arriving after the abort.
        book.delivered(g, "prices.vip", 0, 10, Some(b"USDJPY"), Some(b"{}"));
        assert!(book.take_dirty().is_empty());
        // Priced again in the next transaction: its offsets are the ones written.
        let g2 = book.generation();
        book.delivered(g2, "prices.vip", 0, 12, Some(b"EURUSD"), Some(b"{}"));
        book.delivered(g2, "prices.vip", 0, 13, Some(b"GBPUSD"), Some(b"{}"));
        assert_eq!(
            keys(&book.take_dirty())
                .into_iter()
                .map(|k| k.3)
                .collect::<Vec<_>>(),
            vec!["12", "13"]
        );
    }
}
