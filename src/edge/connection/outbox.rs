//! The next write of one connection: frames go straight into its write buffer as WebSocket
//! frames, or as Server-Sent Events (copied once from the hub's encoded bytes), with what the
//! session needs to know about them (how many, how many prices, the oldest price's source time).

use super::cursor::Sink;
use super::event_id::EventId;
use crate::edge::log::entry::Entry;
use crate::edge::wire::frames as wire;

/// How frames are put on the wire.
#[derive(Default)]
pub enum Framing {
    #[default]
    WebSocket,
    /// `data: <frame>` events; prices and snapshots carry the stream's position as `id:`.
    Sse(EventId),
}

#[derive(Default)]
pub struct Outbox {
    pub framing: Framing,
    pub buf: Vec<u8>,
    /// Frames in `buf`.
    pub frames: usize,
    /// Of which prices (`message`, live or replayed, conflated or not).
    pub prices: usize,
    /// Source timestamp (ms) of the oldest price in `buf`, `i64::MAX` when none.
    pub oldest_ts: i64,
    /// Earliest receipt by this edge ([`crate::edge::log::entry::clock_us`]) of a price in `buf`.
    pub oldest_received_us: u64,
}

impl Outbox {
    pub fn new(buf: Vec<u8>) -> Outbox {
        Outbox::framed(buf, Framing::WebSocket)
    }

    pub fn framed(buf: Vec<u8>, framing: Framing) -> Outbox {
        Outbox {
            framing,
            buf,
            frames: 0,
            prices: 0,
            oldest_ts: i64::MAX,
            oldest_received_us: u64::MAX,
        }
    }

    pub fn control(&mut self, frame: &str) {
        match &mut self.framing {
            Framing::WebSocket => wire::put_text(&mut self.buf, frame),
            Framing::Sse(id) => {
                let snapshot = frame.starts_with("{\"type\":\"snapshot\"");
                if snapshot {
                    id.covered_by_snapshot(frame);
                }
                put_event(&mut self.buf, &[frame], snapshot.then_some(&*id));
            }
        }
        self.frames += 1;
    }

    /// A WebSocket ping; on an event stream, a comment (which keeps proxies from timing out).
    pub fn ping(&mut self) {
        match self.framing {
            Framing::WebSocket => wire::put_frame(&mut self.buf, wire::OP_PING, &[]),
            Framing::Sse(_) => self.buf.extend_from_slice(b": ping\n\n"),
        }
        self.frames += 1;
    }

    /// The answer to a client's WebSocket ping.
    pub fn pong(&mut self, payload: &[u8]) {
        if let Framing::WebSocket = self.framing {
            wire::put_frame(&mut self.buf, wire::OP_PONG, &[payload]);
            self.frames += 1;
        }
    }

    /// A price frame in parts.
    fn put_price(&mut self, e: &Entry, parts: &[&str]) {
        match &mut self.framing {
            Framing::WebSocket => {
                let mut bytes: [&[u8]; 3] = [b""; 3];
                for (b, p) in bytes.iter_mut().zip(parts) {
                    *b = p.as_bytes();
                }
                wire::put_frame(&mut self.buf, wire::OP_TEXT, &bytes);
            }
            Framing::Sse(id) => {
                id.delivered(e.partition as usize, e.offset);
                put_event(&mut self.buf, parts, Some(id));
            }
        }
        self.priced(e);
    }

    fn priced(&mut self, e: &Entry) {
        self.frames += 1;
        self.prices += 1;
        self.oldest_ts = self.oldest_ts.min(e.ts_ms);
        self.oldest_received_us = self.oldest_received_us.min(e.received_us);
    }
}

/// One event: `data:` with the frame's parts, then `id:` when given. A frame is one line of
/// JSON; a raw line break in it can only be whitespace between JSON tokens (strings escape
/// theirs), so it is written as a space and the event stays one `data:` line.
fn put_event(buf: &mut Vec<u8>, parts: &[&str], id: Option<&EventId>) {
    buf.extend_from_slice(b"data: ");
    for part in parts {
        let start = buf.len();
        buf.extend_from_slice(part.as_bytes());
        for b in &mut buf[start..] {
            if *b == b'\n' || *b == b'\r' {
                *b = b' ';
            }
        }
    }
    buf.push(b'\n');
    if let Some(id) = id {
        buf.extend_from_slice(b"id: ");
        id.write(buf);
        buf.push(b'\n');
    }
    buf.push(b'\n');
}

impl Sink for Outbox {
    fn price(&mut self, e: &Entry) {
        self.put_price(e, &[&e.frame]);
    }

    fn conflated(&mut self, e: &Entry) {
        self.put_price(e, &e.conflated_parts());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::log::entry::sample;

    #[test]
    fn event_stream_frames_are_data_lines_with_the_position_as_id() {
        let id = EventId {
            positions: vec![-1],
            epoch: "E1".into(),
        };
        let mut out = Outbox::framed(Vec::new(), Framing::Sse(id));
        out.control(
            r#"{"type":"snapshot","topic":"vip","epoch":"E1","upTo":{"0":40},"prices":[]}"#,
        );
        out.price(&sample(42, 1));
        out.conflated(&sample(44, 1));
        out.ping();
        out.pong(b"x");
        out.control("{\"type\":\"error\",\n\"code\":\"x\"}");
        let text = String::from_utf8(out.buf.clone()).unwrap();
        let events: Vec<&str> = text.split("\n\n").collect();
        assert_eq!(events.len(), 6, "{text}");
        assert!(events[0].ends_with("\nid: 40@E1"), "{}", events[0]);
        assert!(events[1].starts_with("data: {\"type\":\"message\",\"topic\":\"vip\""));
        assert!(events[1].ends_with("}\nid: 42@E1"), "{}", events[1]);
        assert!(events[2].starts_with("data: {\"type\":\"message\",\"conflated\":true,"));
        assert!(events[2].ends_with("\nid: 44@E1"));
        assert_eq!(events[3], ": ping");
        assert_eq!(events[4], "data: {\"type\":\"error\", \"code\":\"x\"}");
        assert_eq!((out.frames, out.prices), (5, 2));
    }
}
