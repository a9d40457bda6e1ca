//! `pricefeed watch`: a terminal WebSocket client of the edge, for demos and operations. It
//! sets up with a token, subscribes, and prints snapshots and prices as they arrive, with the
//! seqNo and the latency from the price's source timestamp.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

pub struct WatchOptions {
    /// e.g. `ws://127.0.0.1:8080/ws`
    pub url: String,
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One line per price: channel, symbol, bid/ask, stale flag, seqNo and latency.
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
    )
}

pub async fn run(opts: WatchOptions, shutdown: CancellationToken) -> Result<(), WatchError> {
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(opts.url.as_str()),
    )
    .await
    .map_err(|_| WatchError::Connect(opts.url.clone(), "timed out".into()))?
    .map_err(|e| WatchError::Connect(opts.url.clone(), e.to_string()))?;
    let send = |v: Value| Message::text(v.to_string());
    let lost = |e: tokio_tungstenite::tungstenite::Error| WatchError::Lost(e.to_string());
    ws.send(send(json!({"type": "setup", "token": opts.token})))
        .await
        .map_err(lost)?;
    for t in &opts.topics {
        let mut sub = json!({"type": "subscribe", "topic": t});
        if let Some(s) = &opts.symbols {
            sub["symbols"] = json!(s);
        }
        ws.send(send(sub)).await.map_err(lost)?;
    }
    let mut prices = 0u64;
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
            Some("snapshot") => {
                for p in v["prices"].as_array().into_iter().flatten() {
                    println!("{}", line("snapshot", topic, p));
                }
            }
            Some("message") => {
                let kind = if v["conflated"] == true {
                    "conflated"
                } else {
                    "price"
                };
                println!("{}", line(kind, topic, &v));
                prices += 1;
                if opts.count.is_some_and(|c| prices >= c) {
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
