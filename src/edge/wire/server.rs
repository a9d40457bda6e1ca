//! The server's frames of the Micro Socket protocol, typed: one variant per control frame,
//! serialized with `type` first. Price frames are built once per record in
//! [`crate::edge::log::entry`], snapshots here (they embed each price's data as it came from
//! Kafka).

use serde::Serialize;

use super::protocol::Code;

/// A control frame from the server (docs/protocol.md section 5).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ServerFrame<'a> {
    #[serde(rename_all = "camelCase")]
    Ready {
        session_id: &'a str,
        user: &'a str,
        expires_at: u64,
    },
    Subscribed {
        topic: &'a str,
        partitions: usize,
        symbols: Option<&'a [String]>,
        /// The Kafka topic id: seqNos are positions in this life of the topic.
        #[serde(skip_serializing_if = "str::is_empty")]
        epoch: &'a str,
        /// Throttled: at most this many updates per second per symbol.
        #[serde(rename = "maxRate", skip_serializing_if = "Option::is_none")]
        max_rate: Option<f64>,
    },
    Unsubscribed {
        topic: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
    },
    Resumed {
        topic: &'a str,
        replayed: u64,
    },
    Pong,
    #[serde(rename_all = "camelCase")]
    Ack {
        message_id: &'a str,
        status: &'a str,
    },
    Error {
        #[serde(serialize_with = "code_str")]
        code: Code,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        topic: Option<&'a str>,
    },
}

fn code_str<S: serde::Serializer>(c: &Code, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.as_str())
}

impl ServerFrame<'_> {
    /// The frame's JSON text.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("server frames serialize")
    }
}

pub fn ready(session_id: &str, user: &str, expires_at: u64) -> String {
    ServerFrame::Ready {
        session_id,
        user,
        expires_at,
    }
    .encode()
}

pub fn subscribed(
    topic: &str,
    partitions: usize,
    symbols: Option<&[String]>,
    epoch: &str,
    max_rate: Option<f64>,
) -> String {
    ServerFrame::Subscribed {
        topic,
        partitions,
        symbols,
        epoch,
        max_rate,
    }
    .encode()
}

pub fn unsubscribed(topic: &str, reason: Option<&str>) -> String {
    ServerFrame::Unsubscribed { topic, reason }.encode()
}

pub fn resumed(topic: &str, replayed: u64) -> String {
    ServerFrame::Resumed { topic, replayed }.encode()
}

pub fn pong() -> String {
    ServerFrame::Pong.encode()
}

pub fn ack(message_id: &str, status: &str) -> String {
    ServerFrame::Ack { message_id, status }.encode()
}

/// An `error` frame (counted by code in `pricefeed_edge_client_errors_total`).
pub fn error(code: Code, message: &str, topic: Option<&str>) -> String {
    crate::telemetry::edge_client_error(code.as_str());
    ServerFrame::Error {
        code,
        message,
        topic,
    }
    .encode()
}

/// `{"type":"snapshot","topic":…,"upTo":{"0":41,…},"prices":[{partition,seqNo,messageId,data},…]}`.
/// `upTo` is, per partition, the last seqNo the snapshot covers: pass it as `from` to resume.
pub fn snapshot<'a>(
    topic: &str,
    epoch: &str,
    up_to: &[(usize, i64)],
    prices: impl Iterator<Item = (usize, &'a crate::edge::log::entry::Entry)>,
) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(256);
    let _ = write!(s, "{{\"type\":\"snapshot\",\"topic\":\"{topic}\",");
    // Topic ids are base64 (letters, digits, +, / and =): nothing to escape in JSON.
    if !epoch.is_empty() {
        let _ = write!(s, "\"epoch\":\"{epoch}\",");
    }
    s.push_str("\"upTo\":{");
    for (i, (p, seq)) in up_to.iter().enumerate() {
        let _ = write!(s, "{}\"{p}\":{seq}", if i > 0 { "," } else { "" });
    }
    s.push_str("},\"prices\":[");
    for (i, (p, e)) in prices.enumerate() {
        let _ = write!(
            s,
            "{}{{\"partition\":{p},\"seqNo\":{o},\"messageId\":\"{p}-{o}\",\"data\":{d}}}",
            if i > 0 { "," } else { "" },
            o = e.offset,
            d = e.data()
        );
    }
    s.push_str("]}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_frames_say_their_type_first_and_leave_out_what_is_absent() {
        assert_eq!(
            ready("n-1", "ann", 7),
            r#"{"type":"ready","sessionId":"n-1","user":"ann","expiresAt":7}"#
        );
        assert_eq!(
            subscribed("vip", 3, None, "", None),
            r#"{"type":"subscribed","topic":"vip","partitions":3,"symbols":null}"#
        );
        assert_eq!(
            subscribed("vip", 3, None, "x5pHCw1hRp-4ya8DbM_mAQ", Some(0.5)),
            r#"{"type":"subscribed","topic":"vip","partitions":3,"symbols":null,"epoch":"x5pHCw1hRp-4ya8DbM_mAQ","maxRate":0.5}"#
        );
        assert_eq!(
            unsubscribed("vip", None),
            r#"{"type":"unsubscribed","topic":"vip"}"#
        );
        assert_eq!(pong(), r#"{"type":"pong"}"#);
        assert_eq!(
            ack("m1", "ok"),
            r#"{"type":"ack","messageId":"m1","status":"ok"}"#
        );
        assert_eq!(
            error(Code::Forbidden, "no \"quotes\"", Some("vip")),
            r#"{"type":"error","code":"forbidden","message":"no \"quotes\"","topic":"vip"}"#
        );
        assert_eq!(
            resumed("vip", 12),
            r#"{"type":"resumed","topic":"vip","replayed":12}"#
        );
        let v: serde_json::Value = serde_json::from_str(&ack("a\"b", "duplicate")).unwrap();
        assert_eq!(v["messageId"], "a\"b");
    }
}
