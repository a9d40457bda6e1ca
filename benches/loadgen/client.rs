//! One load-client connection: handshake, the server's way of subscribing, then reading frames
//! until told to stop. Also the publisher that feeds the two Node.js servers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::now_us;

/// The server a client talks to.
#[derive(Clone, Debug)]
pub enum Target {
    /// pricefeed's edge: `/ws`, `setup` with a token subscribing to `topic`.
    Pricefeed { token: String, topic: String },
    /// A Socket.IO server (Engine.IO v4, WebSocket transport): every client joins the room.
    SocketIo,
    /// A plain `ws` broadcast server: every connection on `/sub` gets everything.
    Ws,
}

impl Target {
    fn path(&self) -> &'static str {
        match self {
            Target::Pricefeed { .. } => "/ws",
            Target::SocketIo => "/socket.io/?EIO=4&transport=websocket",
            Target::Ws => "/sub",
        }
    }
}

pub use super::counters::Counters;

/// Partitions a price frame can name (pricefeed's bench topic has 3; the publisher uses 3 too).
pub const MAX_PARTITIONS: usize = 16;

/// Connects, subscribes and reads until `counters.stop`. Returns sampled latencies (µs), one in
/// every `sample_every` price frames.
pub async fn run(
    port: u16,
    target: Target,
    counters: Arc<Counters>,
    sample_every: u64,
) -> Vec<u32> {
    let mut samples = Vec::new();
    let Ok((mut s, mut buf)) = connect(port, target.path()).await else {
        return samples;
    };
    counters.connected.fetch_add(1, Ordering::Relaxed);
    if let Target::Pricefeed { token, topic } = &target {
        let setup = format!(r#"{{"type":"setup","token":"{token}","topics":["{topic}"]}}"#);
        if send_text(&mut s, &setup).await.is_err() {
            return samples;
        }
    }
    buf.reserve(64 * 1024);
    // One timer for the whole run (a timeout per read would insert and remove a timer entry on
    // every read): it only lets the loop see `stop` when nothing arrives.
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_seq = [-1i64; MAX_PARTITIONS];
    let (mut seen, mut frames) = (0u64, 0u64);
    while !counters.stop.load(Ordering::Relaxed) {
        let mut at = 0;
        while let Some((op, head, len)) = frame_at(&buf[at..]) {
            let payload = &buf[at + head..at + head + len];
            match op {
                0x1 => match classify(&target, payload) {
                    Frame::Price(price) => {
                        if !counters.seen.load(Ordering::Relaxed) {
                            counters.seen.store(true, Ordering::Relaxed);
                        }
                        if counters.recording.load(Ordering::Relaxed) {
                            // A conflated frame skips records on purpose: not a gap.
                            let conflated =
                                price.starts_with(b"{\"type\":\"message\",\"conflated\"");
                            if conflated {
                                counters.conflated.fetch_add(1, Ordering::Relaxed);
                            }
                            if let Some((p, seq, prev)) = partition_seq_prev(price) {
                                let p = p as usize % MAX_PARTITIONS;
                                if !conflated && last_seq[p] >= 0 && is_gap(seq, prev, last_seq[p])
                                {
                                    counters.gaps.fetch_add(1, Ordering::Relaxed);
                                }
                                last_seq[p] = seq as i64;
                            }
                            frames += 1;
                            seen += 1;
                            if seen.is_multiple_of(sample_every)
                                && let Some(sent) = sent_us(price)
                            {
                                samples.push(now_us().saturating_sub(sent).min(u32::MAX as u64) as u32);
                            }
                        } else if let Some((p, seq)) = partition_and_seq(price) {
                            last_seq[p as usize % MAX_PARTITIONS] = seq as i64;
                        }
                    }
                    Frame::Subscribed => {
                        counters.subscribed.fetch_add(1, Ordering::Relaxed);
                    }
                    Frame::Snapshot(snapshot) => {
                        counters.subscribed.fetch_add(1, Ordering::Relaxed);
                        // The first message of each partition must follow what the snapshot
                        // covers: a record lost in between is a gap too.
                        for (p, up_to) in snapshot_up_to(snapshot) {
                            let p = p as usize % MAX_PARTITIONS;
                            last_seq[p] = last_seq[p].max(up_to);
                        }
                    }
                    Frame::EngineOpen => {
                        // Engine.IO open: join the default namespace.
                        let _ = send_text(&mut s, "40").await;
                    }
                    Frame::EnginePing => {
                        let _ = send_text(&mut s, "3").await;
                    }
                    Frame::Other => {}
                },
                0x9 => {
                    // A WebSocket ping: pong with the same payload (masked with zeros).
                    let mut f = vec![0x8Au8, 0x80 | len as u8, 0, 0, 0, 0];
                    f.extend_from_slice(payload);
                    let _ = s.write_all(&f).await;
                }
                0x8 => {
                    counters.frames.add(frames);
                    return samples;
                }
                _ => {}
            }
            at += head + len;
        }
        buf.drain(..at);
        // Once per read: a count held back until some threshold would make every client's
        // residue land at the same moment (they all read the same frames) and skew a window.
        if frames > 0 {
            counters.frames.add(frames);
            frames = 0;
        }
        // Read straight into the frame buffer (no second copy).
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        tokio::select! {
            biased;
            r = s.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            _ = tick.tick() => continue,
        }
    }
    counters.frames.add(frames);
    samples
}

enum Frame<'a> {
    /// A price: the JSON object `{"type":"message",…}` (unwrapped from a Socket.IO event).
    Price(&'a [u8]),
    Subscribed,
    /// pricefeed's snapshot, which follows `subscribed`.
    Snapshot(&'a [u8]),
    EngineOpen,
    EnginePing,
    Other,
}

fn classify<'a>(target: &Target, payload: &'a [u8]) -> Frame<'a> {
    match target {
        Target::Pricefeed { .. } | Target::Ws => {
            if payload.starts_with(b"{\"type\":\"message\"") {
                Frame::Price(payload)
            } else if payload.starts_with(b"{\"type\":\"snapshot\"") {
                Frame::Snapshot(payload)
            } else if payload.starts_with(b"{\"type\":\"subscribed\"}") {
                Frame::Subscribed
            } else {
                Frame::Other
            }
        }
        Target::SocketIo => {
            if let Some(p) = payload.strip_prefix(b"42[\"price\",") {
                Frame::Price(p)
            } else if payload.starts_with(b"40") {
                Frame::Subscribed
            } else if payload.starts_with(b"0{") {
                Frame::EngineOpen
            } else if payload == b"2" {
                Frame::EnginePing
            } else {
                Frame::Other
            }
        }
    }
}

/// TCP connect and the WebSocket handshake on `path`; the stream and any bytes read past the
/// response headers.
pub async fn connect(port: u16, path: &str) -> std::io::Result<(TcpStream, Vec<u8>)> {
    // One client address has about 28k ephemeral ports towards one server port: spread the
    // connections over 127.0.0.1–4 to hold 50,000 and more.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from((
        [127, 0, 0, 1 + (n % 4) as u8],
        0,
    )))?;
    let mut s = socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await?;
    s.set_nodelay(true)?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                return Err(std::io::Error::other(
                    String::from_utf8_lossy(&buf[..end]).into_owned(),
                ));
            }
            buf.drain(..end + 4);
            return Ok((s, buf));
        }
    }
}

/// The opcode, header length and payload length of the complete frame at the start of `buf`.
pub fn frame_at(buf: &[u8]) -> Option<(u8, usize, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (len, head) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    (buf.len() >= head + len).then_some((buf[0] & 0x0f, head, len))
}

/// Sends one masked text frame (clients must mask).
pub async fn send_text(s: &mut TcpStream, text: &str) -> std::io::Result<()> {
    s.write_all(&text_frame(text)).await
}

pub fn text_frame(text: &str) -> Vec<u8> {
    let payload = text.as_bytes();
    let mut f = Vec::with_capacity(payload.len() + 8);
    f.push(0x81u8);
    if payload.len() < 126 {
        f.push(0x80 | payload.len() as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

pub use super::seq::{digits, find, is_gap, partition_and_seq, partition_seq_prev};

/// The `upTo` of a snapshot frame: `(partition, last seqNo covered)` for each partition that has
/// one (`"upTo":{"0":41,"1":-1}`; -1 when the partition held nothing).
pub fn snapshot_up_to(frame: &[u8]) -> Vec<(u64, i64)> {
    let Some(at) = find(frame, b"\"upTo\":{") else {
        return Vec::new();
    };
    let body = &frame[at + 8..];
    let body = &body[..body.iter().position(|&b| b == b'}').unwrap_or(body.len())];
    std::str::from_utf8(body)
        .unwrap_or_default()
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once(':')?;
            Some((k.trim_matches('"').parse().ok()?, v.parse().ok()?))
        })
        .collect()
}

/// The generator's `sent_us`, the price's last field: found from the end.
pub fn sent_us(frame: &[u8]) -> Option<u64> {
    // `"sent_us":N` as the generator writes it, or `"id":"sent_us:N"` after the transform (which
    // keeps a raw record's `id`).
    let tail = &frame[frame.len().saturating_sub(64)..];
    let at = tail.windows(7).rposition(|w| w == b"sent_us")? + 7;
    let skip = tail[at..]
        .iter()
        .take(3)
        .take_while(|c| !c.is_ascii_digit())
        .count();
    let number = &tail[at + skip..];
    let (v, rest) = digits(number);
    (rest.len() < number.len()).then_some(v)
}

/// The data of the `i`-th price (a channel record as the transform writes it), with the
/// generator's send time as its last field.
pub fn price_data(i: u64, symbol: &str) -> String {
    let us = now_us();
    format!(
        r#"{{"symbol":"{symbol}","bid":"1.{:05}","ask":"1.{:05}","ts":{},"stale":false,"sent_us":{us}}}"#,
        10_000 + i % 50_000,
        10_003 + i % 50_000,
        us / 1000
    )
}

/// The `i`-th raw price, as a feed writes it to the raw topic; its `id` carries the send time
/// through the transform.
pub fn raw_price(i: u64, symbol: &str) -> String {
    let us = now_us();
    format!(
        r#"{{"symbol":"{symbol}","bid":"1.{:05}","ask":"1.{:05}","ts":{},"id":"sent_us:{us}"}}"#,
        10_000 + i % 50_000,
        10_003 + i % 50_000,
        us / 1000
    )
}

/// A price in the shape of pricefeed's `message` frame, for the publisher of the Node.js
/// servers: the same fields and about the same size as what the edge sends.
pub fn price_frame(topic: &str, partition: u64, seq: u64, data: &str) -> String {
    format!(
        r#"{{"type":"message","topic":"{topic}","partition":{partition},"seqNo":{seq},"messageId":"{partition}-{seq}","data":{data}}}"#
    )
}

/// Feeds a Node.js server at `rate` prices per second until `stop`: one WebSocket connection,
/// text frames (`ws`: the price as is on /pub; Socket.IO: a `publish` event). Returns the count.
pub async fn publish(
    port: u16,
    target: Target,
    rate: u64,
    partitions: u64,
    symbols: &'static [&'static str],
    stop: Arc<AtomicBool>,
) -> u64 {
    let path = match target {
        Target::SocketIo => "/socket.io/?EIO=4&transport=websocket&role=pub",
        Target::Ws => "/pub",
        Target::Pricefeed { .. } => unreachable!("pricefeed is fed through Kafka"),
    };
    // A server busy with a thousand handshakes can refuse or drop the first try.
    let mut tries = 0;
    let (mut s, mut buf) = loop {
        match connect(port, path).await {
            Ok(c) => break c,
            Err(e) if tries >= 50 => {
                eprintln!("the publisher could not connect: {e}");
                return 0;
            }
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    if let Target::SocketIo = target {
        send_text(&mut s, "40").await.unwrap();
    }
    let mut next_seq = vec![0u64; partitions as usize];
    let start = Instant::now();
    let mut sent = 0u64;
    let mut out = Vec::with_capacity(64 * 1024);
    let mut chunk = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due && out.len() < 60 * 1024 {
            // As the Kafka generator does: a symbol keeps its partition; seqNos count per partition.
            let sym = symbols[sent as usize % symbols.len()];
            let p = (sent as usize % symbols.len()) as u64 % partitions;
            let seq = next_seq[p as usize];
            next_seq[p as usize] += 1;
            let price = price_frame("bench", p, seq, &price_data(sent, sym));
            let text = match target {
                Target::SocketIo => format!("42[\"publish\",{price}]"),
                _ => price,
            };
            out.extend_from_slice(&text_frame(&text));
            sent += 1;
        }
        // A saturated server stops reading: write what it takes, and still notice `stop`.
        while !out.is_empty() {
            match tokio::time::timeout(Duration::from_millis(200), s.write(&out)).await {
                Ok(Ok(n)) if n > 0 => drop(out.drain(..n)),
                Ok(_) => return sent,
                Err(_) if stop.load(Ordering::Relaxed) => return sent,
                Err(_) => {}
            }
        }
        // Answer Engine.IO pings so the server keeps the publisher.
        if let Ok(n) = s.try_read(&mut chunk) {
            buf.extend_from_slice(&chunk[..n]);
            let mut at = 0;
            while let Some((_, head, len)) = frame_at(&buf[at..]) {
                if &buf[at + head..at + head + len] == b"2" {
                    let _ = send_text(&mut s, "3").await;
                }
                at += head + len;
            }
            buf.drain(..at);
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    sent
}
