//! A load client that fails over: it holds one subscription across a list of edge nodes, moves to
//! the next node when its connection ends (backoff with jitter), and resumes there from the last
//! seqNo it took in per partition, as `/client.js` does. Every frame is checked against what came
//! before, across reconnects: a `prev` past the last seqNo is a gap, a seqNo at or below it a
//! duplicate. Shared by `tests/edge_failover.rs` (CI size) and `benches/failover.rs` (full size).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::{MAX_PARTITIONS, connect, frame_at, send_text, snapshot_up_to};
use super::seq::{find, partition_seq_prev};

/// What a fleet of failover clients saw.
#[derive(Default, Debug)]
pub struct Tally {
    /// Clients holding a live subscription now.
    pub live: AtomicU64,
    /// The same, per node (index in the list of ports).
    pub live_on: [AtomicU64; 8],
    /// Clients that have subscribed at least once.
    pub subscribed: AtomicU64,
    /// Connections that ended and were made again elsewhere.
    pub failovers: AtomicU64,
    /// Failovers completed: the client was resumed on another node.
    pub resumed: AtomicU64,
    /// The longest time from losing a connection to being resumed, in ms.
    pub max_failover_ms: AtomicU64,
    pub frames: AtomicU64,
    pub gaps: AtomicU64,
    pub duplicates: AtomicU64,
    /// `resume_gap` errors (a resume the edge could not serve without a gap).
    pub resume_gaps: AtomicU64,
    /// Conflated frames (records skipped on purpose for a slow client).
    pub conflated: AtomicU64,
    pub stop: AtomicBool,
}

/// The positions each client ends with, for checking against the topic.
pub type Positions = [i64; MAX_PARTITIONS];

/// Runs one client over `ports` (starting with `ports[first]`) until `tally.stop`; returns the
/// last seqNo it took in per partition.
pub async fn run(
    ports: Arc<Vec<u16>>,
    first: usize,
    token: String,
    topic: String,
    tally: Arc<Tally>,
) -> Positions {
    let mut last: Positions = [-1; MAX_PARTITIONS];
    let mut subscribed = false;
    let mut parts = 0usize;
    let mut node = first;
    let mut lost_at: Option<Instant> = None;
    let mut attempt = 0u32;
    while !tally.stop.load(Ordering::Relaxed) {
        let k = node % ports.len();
        let port = ports[k];
        let Ok((mut s, mut buf)) = connect(port, "/ws").await else {
            node += 1;
            attempt += 1;
            backoff(attempt).await;
            continue;
        };
        let setup = if subscribed {
            let from: Vec<String> = (0..parts).map(|p| format!("\"{p}\":{}", last[p])).collect();
            format!(
                r#"{{"type":"setup","token":"{token}","resume":{{"{topic}":{{{}}}}}}}"#,
                from.join(",")
            )
        } else {
            format!(r#"{{"type":"setup","token":"{token}","topics":["{topic}"]}}"#)
        };
        if send_text(&mut s, &setup).await.is_err() {
            node += 1;
            continue;
        }
        let mut live = false;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        'read: loop {
            let mut at = 0;
            while let Some((op, head, len)) = frame_at(&buf[at..]) {
                let payload = &buf[at + head..at + head + len];
                match op {
                    0x1 => {
                        if payload.starts_with(b"{\"type\":\"message\"") {
                            take(payload, &mut last, &tally);
                        } else if payload.starts_with(b"{\"type\":\"snapshot\"") && !subscribed {
                            for (p, seq) in snapshot_up_to(payload) {
                                if (p as usize) < MAX_PARTITIONS {
                                    last[p as usize] = seq;
                                    parts = parts.max(p as usize + 1);
                                }
                            }
                            subscribed = true;
                            live = true;
                            tally.subscribed.fetch_add(1, Ordering::Relaxed);
                            tally.live.fetch_add(1, Ordering::Relaxed);
                            tally.live_on[k].fetch_add(1, Ordering::Relaxed);
                        } else if payload.starts_with(b"{\"type\":\"resumed\"") {
                            live = true;
                            attempt = 0;
                            tally.live.fetch_add(1, Ordering::Relaxed);
                            tally.live_on[k].fetch_add(1, Ordering::Relaxed);
                            tally.resumed.fetch_add(1, Ordering::Relaxed);
                            if let Some(t) = lost_at.take() {
                                let ms = t.elapsed().as_millis() as u64;
                                tally.max_failover_ms.fetch_max(ms, Ordering::Relaxed);
                            }
                        } else if payload.starts_with(b"{\"type\":\"error\"")
                            && find(payload, b"\"resume_gap\"").is_some()
                        {
                            tally.resume_gaps.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    0x9 => {
                        let mut f = vec![0x8Au8, 0x80 | len as u8, 0, 0, 0, 0];
                        f.extend_from_slice(payload);
                        let _ = s.write_all(&f).await;
                    }
                    0x8 => break 'read,
                    _ => {}
                }
                at += head + len;
            }
            buf.drain(..at);
            if tally.stop.load(Ordering::Relaxed) {
                return last;
            }
            if buf.capacity() - buf.len() < 16 * 1024 {
                buf.reserve(64 * 1024);
            }
            tokio::select! {
                r = s.read_buf(&mut buf) => match r {
                    Ok(0) | Err(_) => break 'read,
                    Ok(_) => {}
                },
                _ = tick.tick() => {}
            }
        }
        // The connection ended: on to the next node.
        if live {
            tally.live.fetch_sub(1, Ordering::Relaxed);
            tally.live_on[k].fetch_sub(1, Ordering::Relaxed);
        }
        if lost_at.is_none() && subscribed {
            lost_at = Some(Instant::now());
            tally.failovers.fetch_add(1, Ordering::Relaxed);
        }
        node += 1;
        attempt += 1;
        backoff(attempt).await;
    }
    last
}

/// Takes in one `message` frame: a gap when its `prev` is past the last seqNo (a conflated frame
/// skips on purpose), a duplicate when its seqNo is not past it.
fn take(frame: &[u8], last: &mut Positions, tally: &Tally) {
    let Some((p, seq, prev)) = partition_seq_prev(frame) else {
        return;
    };
    let p = p as usize;
    if p >= MAX_PARTITIONS {
        return;
    }
    tally.frames.fetch_add(1, Ordering::Relaxed);
    let conflated = frame.starts_with(b"{\"type\":\"message\",\"conflated\"");
    if conflated {
        tally.conflated.fetch_add(1, Ordering::Relaxed);
    }
    if seq as i64 <= last[p] {
        tally.duplicates.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if !conflated && prev.is_some_and(|prev| prev > last[p]) {
        tally.gaps.fetch_add(1, Ordering::Relaxed);
    }
    last[p] = seq as i64;
}

/// 100 ms doubling to 2 s, each with up to 50 % jitter, so that the clients of a node that died
/// do not all arrive at the next one at once.
async fn backoff(attempt: u32) {
    let base = 100u64 << attempt.saturating_sub(1).min(5);
    let base = base.min(2000);
    let jitter = rand::random::<u64>() % (base / 2 + 1);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}
