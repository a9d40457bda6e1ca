//! `pricefeed watch`: a terminal WebSocket client of the edge, for demos and operations. It
//! sets up with a token, subscribes, and prints snapshots and prices as they arrive, with the
//! seqNo and the latency from the price's source timestamp. Given several edge nodes, it moves to
//! the next when its connection ends and resumes there; it counts gaps and duplicates and prints
//! the counts when it stops.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

pub struct WatchOptions {
    /// The edge nodes, e.g. `ws://127.0.0.1:8080/ws`: the first is used until it fails, then
    /// the next, and so on (resuming where the last one left off).
    pub urls: Vec<String>,
    pub token: String,
    pub topics: Vec<String>,
    pub symbols: Option<Vec<String>>,
    /// Stop after this many prices.
    pub count: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("connecting to {0}: {1}")]
    Connect(String, String),
    #[error("the edge refused: {0}")]
    Refused(String),
    #[error("connection lost: {0}")]
    Lost(String),
}

/// How long `watch` keeps trying the nodes after losing its connection.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One line per price: channel, symbol, bid/ask, stale flag, seqNo and latency; on a
/// size-tiered channel the ladder follows, `≤size bid/ask` per band (`-` for a side not quoted).
fn line(kind: &str, topic: &str, p: &Value) -> String {
    let d = &p["data"];
    let latency = d["ts"]
        .as_i64()
        .map(|ts| format!("{:>5} ms", now_ms() - ts))
        .unwrap_or_default();
    format!(
        "{kind:<9} {topic:<8} {:<8} {:>14} / {:<14} seq {:<10} {latency}{}",
        d["symbol"].as_str().unwrap_or("?"),
        d["bid"].as_str().unwrap_or("?"),
        d["ask"].as_str().unwrap_or("?"),
        p["messageId"].as_str().unwrap_or("?"),
        if d["stale"] == true { "  STALE" } else { "" }
    ) + &ladder(&d["ladder"])
}

fn ladder(l: &Value) -> String {
    let Some(bands) = l["bands"].as_array() else {
        return String::new();
    };
    let side = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let parts: Vec<String> = bands
        .iter()
        .map(|b| {
            let up_to = b["up_to"].as_str().unwrap_or("?");
            format!("≤{up_to} {}/{}", side(&b["bid"]), side(&b["ask"]))
        })
        .collect();
    format!(
        "  [{}: {}]",
        l["pricing"].as_str().unwrap_or("?"),
        parts.join(", ")
    )
}

/// What the client has taken in, kept across connections: the resume position of every topic,
/// and the sequence checks.
#[derive(Default)]
struct Seen {
    /// topic → partition → last seqNo.
    positions: BTreeMap<String, BTreeMap<String, i64>>,
    prices: u64,
    gaps: u64,
    duplicates: u64,
    failovers: u64,
    /// The current connection was made (the wait for a node starts again when it ends).
    connected: bool,
}

impl Seen {
    /// A `message`: a duplicate when its seqNo is not past the last one, a gap when its `prev`
    /// is past it (only without a symbol filter, where every record comes).
    fn take(&mut self, topic: &str, v: &Value, filtered: bool) -> bool {
        let (Some(p), Some(seq)) = (v["partition"].as_i64(), v["seqNo"].as_i64()) else {
            return true;
        };
        let last = self
            .positions
            .entry(topic.to_string())
            .or_default()
            .entry(p.to_string())
            .or_insert(-1);
        if seq <= *last {
            self.duplicates += 1;
            return false;
        }
        let conflated = v["conflated"] == true;
        if !filtered && !conflated && v["prev"].as_i64().is_some_and(|prev| prev > *last) {
            self.gaps += 1;
        }
        *last = seq;
        true
    }

    fn snapshot(&mut self, topic: &str, v: &Value) {
        let at = self.positions.entry(topic.to_string()).or_default();
        for (p, seq) in v["upTo"].as_object().into_iter().flatten() {
            at.insert(p.clone(), seq.as_i64().unwrap_or(-1));
        }
    }
}

/// Watches until `--count` prices, Ctrl-C, or no node answers for [`GIVE_UP_AFTER`]. When the
/// connection ends, it moves to the next node (backoff with jitter) and resumes there.
pub async fn run(opts: WatchOptions, shutdown: CancellationToken) -> Result<(), WatchError> {
    let mut seen = Seen::default();
    let mut node = 0usize;
    let mut attempt = 0u32;
    let mut lost_since: Option<std::time::Instant> = None;
    loop {
        let url = &opts.urls[node % opts.urls.len()];
        match session(url, &opts, &mut seen, &shutdown).await {
            Ok(()) => break,
            Err(WatchError::Refused(m)) => return Err(WatchError::Refused(m)),
            Err(e) => {
                if std::mem::take(&mut seen.connected) {
                    lost_since = None;
                    attempt = 0;
                }
                let since = *lost_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > GIVE_UP_AFTER || shutdown.is_cancelled() {
                    return Err(e);
                }
                eprintln!("lost      {url}: {e}");
                if seen.positions.values().any(|p| !p.is_empty()) && opts.urls.len() > 1 {
                    seen.failovers += 1;
                }
                node += 1;
                attempt += 1;
                // Every node once at 100 ms, then doubling to 5 s, each with up to 50 % jitter.
                let round = (attempt - 1) / opts.urls.len() as u32;
                let base = (100u64 << round.min(6)).min(5000);
                let wait = base + rand::random::<u64>() % (base / 2 + 1);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                }
                continue;
            }
        }
    }
    println!(
        "watched   {} prices, {} gaps, {} duplicates, {} failovers",
        seen.prices, seen.gaps, seen.duplicates, seen.failovers
    );
    Ok(())
}

/// One connection: setup, subscribe (or resume where `seen` says), and print until done (`Ok`)
/// or the connection ends (`Err`).
async fn session(
    url: &str,
    opts: &WatchOptions,
    seen: &mut Seen,
    shutdown: &CancellationToken,
) -> Result<(), WatchError> {
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .map_err(|_| WatchError::Connect(url.to_string(), "timed out".into()))?
    .map_err(|e| WatchError::Connect(url.to_string(), e.to_string()))?;
    println!("connected {url}");
    seen.connected = true;
    let send = |v: Value| Message::text(v.to_string());
    let lost = |e: tokio_tungstenite::tungstenite::Error| WatchError::Lost(e.to_string());
    ws.send(send(json!({"type": "setup", "token": opts.token})))
        .await
        .map_err(lost)?;
    for t in &opts.topics {
        let mut req = match seen.positions.get(t) {
            Some(from) if !from.is_empty() => json!({"type": "resume", "topic": t, "from": from}),
            _ => json!({"type": "subscribe", "topic": t}),
        };
        if let Some(s) = &opts.symbols {
            req["symbols"] = json!(s);
        }
        ws.send(send(req)).await.map_err(lost)?;
    }
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => break,
            f = ws.next() => f,
        };
        let text = match frame {
            None => return Err(WatchError::Lost("closed by the edge".into())),
            Some(Err(e)) => return Err(lost(e)),
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(c))) => {
                return Err(WatchError::Lost(
                    c.map_or("closed".into(), |c| c.reason.to_string()),
                ));
            }
            Some(Ok(_)) => continue,
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let topic = v["topic"].as_str().unwrap_or("");
        match v["type"].as_str() {
            Some("ready") => println!("ready     session {} for {}", v["sessionId"], v["user"]),
            Some("subscribed") => println!("subscribed {topic}"),
            Some("resumed") => println!("resumed   {topic}, {} replayed", v["replayed"]),
            Some("snapshot") => {
                seen.snapshot(topic, &v);
                for p in v["prices"].as_array().into_iter().flatten() {
                    println!("{}", line("snapshot", topic, p));
                }
            }
            Some("message") => {
                if !seen.take(topic, &v, opts.symbols.is_some()) {
                    continue;
                }
                let kind = if v["conflated"] == true {
                    "conflated"
                } else {
                    "price"
                };
                println!("{}", line(kind, topic, &v));
                seen.prices += 1;
                if opts.count.is_some_and(|c| seen.prices >= c) {
                    break;
                }
            }
            Some("error") => {
                let msg = format!("{}: {}", v["code"], v["message"]);
                if matches!(v["code"].as_str(), Some("unauthorized" | "forbidden")) {
                    return Err(WatchError::Refused(msg));
                }
                eprintln!("error     {msg}");
            }
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tiered_price_prints_its_ladder_after_the_quote() {
        let p: Value = serde_json::from_str(
            r#"{"messageId":"0-7","data":{"symbol":"EURUSD","bid":"1.08408","ask":"1.08415","ts":1,
               "ladder":{"pricing":"vwap","bands":[{"up_to":"1000000","bid":"1.08408","ask":"1.08417"},
               {"up_to":"6000000","bid":null,"ask":"1.08428"}]}}}"#,
        )
        .unwrap();
        let l = line("message", "pro", &p);
        assert!(l.contains("1.08408 / 1.08415"), "{l}");
        assert!(
            l.ends_with("[vwap: ≤1000000 1.08408/1.08417, ≤6000000 -/1.08428]"),
            "{l}"
        );
        let plain: Value =
            serde_json::from_str(r#"{"data":{"symbol":"X","bid":"1","ask":"2"}}"#).unwrap();
        assert!(!line("message", "vip", &plain).contains('['));
    }
}
