//! The position a Server-Sent Events stream resumes from: per partition the last seqNo
//! delivered, and the topic's epoch. It is every price event's `id:`, so a browser's
//! `EventSource` sends it back as `Last-Event-ID` when it reconnects. Written
//! `<seq of partition 0>,<seq of partition 1>,…@<epoch>`, e.g. `41,-1,17@x5pHCw1hRp-4ya8DbM_mAQ`.

use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventId {
    /// Per partition, the last seqNo delivered or covered by a snapshot (−1: none yet).
    pub positions: Vec<i64>,
    /// The Kafka topic id the seqNos belong to (empty when the broker did not say).
    pub epoch: String,
}

impl EventId {
    /// Moves partition `p` to `seq` (never back: a throttled stream may send an older seqNo of
    /// one symbol after a newer one of another).
    pub fn delivered(&mut self, p: usize, seq: i64) {
        if let Some(at) = self.positions.get_mut(p) {
            *at = (*at).max(seq);
        }
    }

    /// Takes the positions and epoch of a `snapshot` frame: its `upTo` is what it covers.
    pub fn covered_by_snapshot(&mut self, frame: &str) {
        #[derive(serde::Deserialize)]
        struct Snap {
            #[serde(default)]
            epoch: String,
            #[serde(rename = "upTo")]
            up_to: BTreeMap<usize, i64>,
        }
        if let Ok(snap) = serde_json::from_str::<Snap>(frame) {
            let n = snap.up_to.keys().max().map_or(0, |p| p + 1);
            if self.positions.len() < n {
                self.positions.resize(n, -1);
            }
            for (p, seq) in snap.up_to {
                self.positions[p] = seq;
            }
            self.epoch = snap.epoch;
        }
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        let mut b = itoa::Buffer::new();
        for (i, seq) in self.positions.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b.format(*seq).as_bytes());
        }
        out.push(b'@');
        out.extend_from_slice(self.epoch.as_bytes());
    }

    /// The `from` of a resume: partition → last seqNo.
    pub fn from(&self) -> BTreeMap<i32, i64> {
        (0..)
            .zip(self.positions.iter().copied())
            .collect::<BTreeMap<i32, i64>>()
    }

    /// Reads a `Last-Event-ID`, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<EventId, String> {
        let (seqs, epoch) = text.split_once('@').ok_or_else(|| {
            format!("Last-Event-ID {text:?} is not <seqNo>,<seqNo>,…@<epoch> as sent in id:")
        })?;
        let positions = seqs
            .split(',')
            .map(|s| s.trim().parse::<i64>().ok().filter(|n| *n >= -1))
            .collect::<Option<Vec<i64>>>()
            .ok_or_else(|| {
                format!("Last-Event-ID {text:?}: each position must be a seqNo of -1 or more")
            })?;
        // A topic id is base64; a `+` that came through a query string unescaped reads as a
        // space, which no topic id holds.
        let epoch = epoch.replace(' ', "+");
        if !epoch
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=-_".contains(&b))
        {
            return Err(format!(
                "Last-Event-ID {text:?}: the epoch is not a topic id"
            ));
        }
        Ok(EventId { positions, epoch })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_bad_ones_say_why() {
        let mut id = EventId {
            positions: vec![-1, -1, -1],
            epoch: String::new(),
        };
        id.covered_by_snapshot(
            r#"{"type":"snapshot","topic":"vip","epoch":"x5pH+/A","upTo":{"0":4,"1":-1,"2":9},"prices":[]}"#,
        );
        id.delivered(1, 7);
        id.delivered(2, 3); // never back
        let mut text = Vec::new();
        id.write(&mut text);
        let text = String::from_utf8(text).unwrap();
        assert_eq!(text, "4,7,9@x5pH+/A");
        assert_eq!(EventId::parse(&text), Ok(id.clone()));
        assert_eq!(EventId::parse("4,7,9@x5pH /A"), Ok(id.clone()));
        assert_eq!(id.from(), BTreeMap::from([(0, 4), (1, 7), (2, 9)]));
        assert_eq!(EventId::parse("3@").unwrap().positions, [3]);
        for bad in ["", "4,7", "4,x@e", "4,-2@e", "1@e;e"] {
            assert!(
                EventId::parse(bad).unwrap_err().contains("Last-Event-ID"),
                "{bad}"
            );
        }
    }
}
