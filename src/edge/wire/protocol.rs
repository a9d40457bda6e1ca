//! The Micro Socket protocol on the wire: client frames parsed with a specific error for each
//! way they can be wrong, and the server's control frames. Price frames are built once per record
//! in [`crate::edge::log::entry`]; see docs/protocol.md for the reference.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

/// A request from a client.
#[derive(Debug)]
pub enum ClientFrame {
    Setup {
        token: String,
        topics: Vec<String>,
        /// Topics to resume rather than subscribe: topic → partition → last seqNo processed.
        resume: BTreeMap<String, BTreeMap<i32, i64>>,
        /// The epoch (Kafka topic id) the positions in `resume` are from, per topic.
        epochs: BTreeMap<String, String>,
    },
    Subscribe {
        topic: String,
        symbols: Option<Vec<String>>,
        /// Most updates per second per symbol the client wants.
        max_rate: Option<f64>,
    },
    Unsubscribe {
        topic: String,
    },
    Resume {
        topic: String,
        /// Partition → last seqNo processed.
        from: BTreeMap<i32, i64>,
        symbols: Option<Vec<String>>,
        /// The epoch (Kafka topic id) the positions are from, when the client knows it.
        epoch: Option<String>,
        max_rate: Option<f64>,
    },
    Publish {
        topic: String,
        message_id: String,
        payload: Box<RawValue>,
    },
    Ping,
}

/// Error codes sent in `error` frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Unauthorized,
    Forbidden,
    BadRequest,
    UnknownType,
    NotSetup,
    UnknownTopic,
    UnknownSymbol,
    NotSubscribed,
    TooManySubscriptions,
    RateLimited,
    FrameTooLarge,
    SlowConsumer,
    ResumeGap,
    PublishFailed,
    Unavailable,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unauthorized => "unauthorized",
            Code::Forbidden => "forbidden",
            Code::BadRequest => "bad_request",
            Code::UnknownType => "unknown_type",
            Code::NotSetup => "not_setup",
            Code::UnknownTopic => "unknown_topic",
            Code::UnknownSymbol => "unknown_symbol",
            Code::NotSubscribed => "not_subscribed",
            Code::TooManySubscriptions => "too_many_subscriptions",
            Code::RateLimited => "rate_limited",
            Code::FrameTooLarge => "frame_too_large",
            Code::SlowConsumer => "slow_consumer",
            Code::ResumeGap => "resume_gap",
            Code::PublishFailed => "publish_failed",
            Code::Unavailable => "unavailable",
        }
    }
}

/// A rejected frame: the code and a message for the client.
#[derive(Debug, PartialEq, Eq)]
pub struct FrameError {
    pub code: Code,
    pub message: String,
}

fn bad(message: impl Into<String>) -> FrameError {
    FrameError {
        code: Code::BadRequest,
        message: message.into(),
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupMsg {
    #[serde(rename = "type")]
    _t: String,
    token: String,
    #[serde(default)]
    topics: Vec<String>,
    #[serde(default)]
    resume: BTreeMap<String, BTreeMap<String, i64>>,
    #[serde(default)]
    epochs: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeMsg {
    #[serde(rename = "type")]
    _t: String,
    topic: String,
    #[serde(default)]
    symbols: Option<Vec<String>>,
    #[serde(default, rename = "maxRate")]
    max_rate: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnsubscribeMsg {
    #[serde(rename = "type")]
    _t: String,
    topic: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeMsg {
    #[serde(rename = "type")]
    _t: String,
    topic: String,
    from: BTreeMap<String, i64>,
    #[serde(default)]
    symbols: Option<Vec<String>>,
    #[serde(default)]
    epoch: Option<String>,
    #[serde(default, rename = "maxRate")]
    max_rate: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishMsg {
    #[serde(rename = "type")]
    _t: String,
    topic: String,
    #[serde(rename = "messageId")]
    message_id: String,
    payload: Box<RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PingMsg {
    #[serde(rename = "type")]
    _t: String,
}

fn fields<'a, T: Deserialize<'a>>(kind: &str, text: &'a str) -> Result<T, FrameError> {
    serde_json::from_str(text).map_err(|e| {
        // serde_json's messages name the field ("missing field `topic`"); drop the position.
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg);
        bad(format!("{kind}: {msg}"))
    })
}

/// A `from` map: partition numbers (as strings) → last seqNo processed (−1: nothing yet).
fn positions(kind: &str, from: BTreeMap<String, i64>) -> Result<BTreeMap<i32, i64>, FrameError> {
    let mut out = BTreeMap::new();
    for (p, seq) in from {
        let part: i32 = p
            .parse()
            .ok()
            .filter(|p| *p >= 0)
            .ok_or_else(|| bad(format!("{kind}: partition {p:?} is not a number ≥ 0")))?;
        if seq < -1 {
            return Err(bad(format!(
                "{kind}: seqNo {seq} for partition {p} is below -1"
            )));
        }
        out.insert(part, seq);
    }
    Ok(out)
}

/// A `maxRate`: a number of updates per second per symbol within the limits.
fn checked_rate(kind: &str, rate: Option<f64>) -> Result<Option<f64>, FrameError> {
    match rate {
        Some(r) => crate::edge::connection::throttle::interval(r)
            .map(|_| Some(r))
            .map_err(|why| bad(format!("{kind}: {why}"))),
        None => Ok(None),
    }
}

/// Longest messageId accepted.
pub const MAX_MESSAGE_ID: usize = 128;

/// Parses one text frame.
pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
    let env: Envelope<'_> = serde_json::from_str(text).map_err(|e| {
        let msg = e.to_string();
        if e.is_data() {
            bad("a frame must be a JSON object with a \"type\"")
        } else {
            bad(format!(
                "not valid JSON: {}",
                msg.split(" at line ").next().unwrap_or(&msg)
            ))
        }
    })?;
    let Some(kind) = env.kind else {
        return Err(bad("missing \"type\""));
    };
    Ok(match kind.as_ref() {
        "setup" => {
            let m: SetupMsg = fields("setup", text)?;
            let mut resume = BTreeMap::new();
            for (topic, from) in m.resume {
                resume.insert(topic, positions("setup", from)?);
            }
            ClientFrame::Setup {
                token: m.token,
                topics: m.topics,
                resume,
                epochs: m.epochs,
            }
        }
        "subscribe" => {
            let m: SubscribeMsg = fields("subscribe", text)?;
            ClientFrame::Subscribe {
                topic: m.topic,
                symbols: m.symbols,
                max_rate: checked_rate("subscribe", m.max_rate)?,
            }
        }
        "unsubscribe" => {
            let m: UnsubscribeMsg = fields("unsubscribe", text)?;
            ClientFrame::Unsubscribe { topic: m.topic }
        }
        "resume" => {
            let m: ResumeMsg = fields("resume", text)?;
            ClientFrame::Resume {
                topic: m.topic,
                from: positions("resume", m.from)?,
                symbols: m.symbols,
                epoch: m.epoch,
                max_rate: checked_rate("resume", m.max_rate)?,
            }
        }
        "publish" => {
            let m: PublishMsg = fields("publish", text)?;
            if m.message_id.is_empty() || m.message_id.len() > MAX_MESSAGE_ID {
                return Err(bad(format!(
                    "publish: messageId must be 1 to {MAX_MESSAGE_ID} bytes"
                )));
            }
            ClientFrame::Publish {
                topic: m.topic,
                message_id: m.message_id,
                payload: m.payload,
            }
        }
        "ping" => {
            let _: PingMsg = fields("ping", text)?;
            ClientFrame::Ping
        }
        other => {
            return Err(FrameError {
                code: Code::UnknownType,
                message: format!(
                    "unknown type {:?}; expected setup, subscribe, unsubscribe, resume, \
                     publish or ping",
                    truncate(other, 40)
                ),
            });
        }
    })
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> Code {
        parse(text).unwrap_err().code
    }

    #[test]
    fn every_type_parses() {
        assert!(matches!(
            parse(r#"{"type":"setup","token":"t","topics":["vip"]}"#),
            Ok(ClientFrame::Setup { topics, .. }) if topics == ["vip"]
        ));
        assert!(matches!(
            parse(r#"{"type":"setup","token":"t","resume":{"vip":{"0":7,"1":-1}}}"#),
            Ok(ClientFrame::Setup { resume, .. })
                if resume == BTreeMap::from([("vip".to_string(), BTreeMap::from([(0, 7), (1, -1)]))])
        ));
        assert!(parse(r#"{"type":"setup","token":"t","resume":{"vip":{"x":7}}}"#).is_err());
        assert!(parse(r#"{"type":"setup","token":"t","resume":{"vip":{"0":-2}}}"#).is_err());
        assert!(matches!(
            parse(r#"{"type":"subscribe","topic":"vip","symbols":["EURUSD"]}"#),
            Ok(ClientFrame::Subscribe { symbols: Some(s), .. }) if s == ["EURUSD"]
        ));
        assert!(matches!(
            parse(r#"{"type":"resume","topic":"vip","from":{"0":12,"2":-1}}"#),
            Ok(ClientFrame::Resume { from, .. }) if from == BTreeMap::from([(0, 12), (2, -1)])
        ));
        assert!(matches!(
            parse(r#"{"type":"publish","topic":"prices.raw","messageId":"m1","payload":{"symbol":"EURUSD"}}"#),
            Ok(ClientFrame::Publish { message_id, .. }) if message_id == "m1"
        ));
        assert!(matches!(parse(r#"{"type":"ping"}"#), Ok(ClientFrame::Ping)));
        assert!(matches!(
            parse(r#"{"type":"unsubscribe","topic":"vip"}"#),
            Ok(ClientFrame::Unsubscribe { .. })
        ));
    }

    #[test]
    fn each_mistake_has_its_code_and_says_what_is_wrong() {
        assert_eq!(code("{nope"), Code::BadRequest);
        assert_eq!(code("[1,2]"), Code::BadRequest);
        assert_eq!(code(r#"{"topic":"vip"}"#), Code::BadRequest);
        assert_eq!(code(r#"{"type":"teleport"}"#), Code::UnknownType);
        let e = parse(r#"{"type":"subscribe"}"#).unwrap_err();
        assert_eq!(e.code, Code::BadRequest);
        assert!(e.message.contains("topic"), "{}", e.message);
        let e = parse(r#"{"type":"subscribe","topic":"vip","colour":"red"}"#).unwrap_err();
        assert!(e.message.contains("colour"), "{}", e.message);
        assert_eq!(
            code(r#"{"type":"resume","topic":"vip","from":{"x":1}}"#),
            Code::BadRequest
        );
        assert_eq!(
            code(r#"{"type":"resume","topic":"vip","from":{"0":-5}}"#),
            Code::BadRequest
        );
        assert_eq!(
            code(r#"{"type":"publish","topic":"t","messageId":"","payload":{}}"#),
            Code::BadRequest
        );
    }
}
