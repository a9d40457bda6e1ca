//! WebSocket framing (RFC 6455), server side: parsing what clients send. No extension is
//! negotiated, so the reserved bits must be clear; client frames must be masked.

use super::frames::{
    CLOSE_NOT_UTF8, CLOSE_PROTOCOL, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT,
};

/// A complete message or control frame from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    /// A binary message (unused by the protocol), by length.
    Binary(usize),
    Ping(Vec<u8>),
    Pong,
    /// The client closes, with its code if it gave one.
    Close(Option<u16>),
}

/// Why the connection cannot go on; each maps to a close code.
#[derive(Debug, PartialEq, Eq)]
pub enum WireError {
    /// A frame or message longer than the hard limit (in bytes).
    TooBig(usize),
    /// A violation of RFC 6455.
    Protocol(&'static str),
    /// A text message (or close reason) that is not UTF-8.
    NotUtf8,
}

impl WireError {
    pub fn close_code(&self) -> u16 {
        match self {
            WireError::TooBig(_) => 1009,
            WireError::Protocol(_) => CLOSE_PROTOCOL,
            WireError::NotUtf8 => CLOSE_NOT_UTF8,
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::TooBig(limit) => write!(f, "message larger than {limit} bytes"),
            WireError::Protocol(why) => f.write_str(why),
            WireError::NotUtf8 => f.write_str("text is not valid UTF-8"),
        }
    }
}

/// Reassembles the client's frames into messages. Holds no allocation while idle.
pub struct FrameReader {
    /// Bytes read but not yet parsed.
    buf: Vec<u8>,
    /// The data message being assembled from fragments, and its opcode.
    message: Vec<u8>,
    fragmented: Option<u8>,
    /// Largest frame or message accepted, in bytes.
    limit: usize,
}

struct Header {
    fin: bool,
    opcode: u8,
    /// Header length including the mask key.
    len: usize,
    payload: usize,
    mask: [u8; 4],
}

fn parse_header(b: &[u8], limit: usize) -> Result<Option<Header>, WireError> {
    if b.len() < 2 {
        return Ok(None);
    }
    if b[0] & 0x70 != 0 {
        return Err(WireError::Protocol(
            "reserved bits set, but no extension was negotiated",
        ));
    }
    let fin = b[0] & 0x80 != 0;
    let opcode = b[0] & 0x0F;
    if b[1] & 0x80 == 0 {
        return Err(WireError::Protocol("client frames must be masked"));
    }
    let (payload, at) = match b[1] & 0x7F {
        126 => {
            let Some(x) = b.get(2..4) else {
                return Ok(None);
            };
            (u16::from_be_bytes([x[0], x[1]]) as u64, 4)
        }
        127 => {
            let Some(x) = b.get(2..10) else {
                return Ok(None);
            };
            let n = u64::from_be_bytes(x.try_into().expect("8 bytes"));
            if n >> 63 != 0 {
                return Err(WireError::Protocol("frame length has its top bit set"));
            }
            (n, 10)
        }
        n => (n as u64, 2),
    };
    let control = opcode & 0x8 != 0;
    if control && (!fin || payload > 125) {
        return Err(WireError::Protocol(
            "control frames must be unfragmented and at most 125 bytes",
        ));
    }
    if payload > limit as u64 {
        return Err(WireError::TooBig(limit));
    }
    let Some(m) = b.get(at..at + 4) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin,
        opcode,
        len: at + 4,
        payload: payload as usize,
        mask: [m[0], m[1], m[2], m[3]],
    }))
}

impl FrameReader {
    pub fn new(limit: usize) -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            message: Vec::new(),
            fragmented: None,
            limit,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message or control frame, or `None` until more bytes arrive.
    pub fn next_message(&mut self) -> Result<Option<Incoming>, WireError> {
        loop {
            let Some(h) = parse_header(&self.buf, self.limit)? else {
                return Ok(None);
            };
            let total = h.len + h.payload;
            if self.buf.len() < total {
                return Ok(None);
            }
            let mut payload: Vec<u8> = self.buf[h.len..total].to_vec();
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= h.mask[i & 3];
            }
            self.buf.drain(..total);
            if self.buf.is_empty() {
                self.buf = Vec::new();
            }
            match h.opcode {
                OP_PING => return Ok(Some(Incoming::Ping(payload))),
                OP_PONG => return Ok(Some(Incoming::Pong)),
                OP_CLOSE => return close(&payload).map(Some),
                OP_TEXT | OP_BINARY => {
                    if self.fragmented.is_some() {
                        return Err(WireError::Protocol(
                            "a new message began before the fragmented one ended",
                        ));
                    }
                    if h.fin {
                        return message(h.opcode, payload).map(Some);
                    }
                    self.fragmented = Some(h.opcode);
                    self.message = payload;
                }
                OP_CONTINUATION => {
                    let Some(opcode) = self.fragmented else {
                        return Err(WireError::Protocol(
                            "a continuation frame with no message to continue",
                        ));
                    };
                    if self.message.len() + payload.len() > self.limit {
                        return Err(WireError::TooBig(self.limit));
                    }
                    self.message.extend_from_slice(&payload);
                    if h.fin {
                        self.fragmented = None;
                        return message(opcode, std::mem::take(&mut self.message)).map(Some);
                    }
                }
                _ => return Err(WireError::Protocol("unknown opcode")),
            }
        }
    }
}

fn message(opcode: u8, payload: Vec<u8>) -> Result<Incoming, WireError> {
    if opcode == OP_BINARY {
        return Ok(Incoming::Binary(payload.len()));
    }
    String::from_utf8(payload)
        .map(Incoming::Text)
        .map_err(|_| WireError::NotUtf8)
}

fn close(payload: &[u8]) -> Result<Incoming, WireError> {
    match payload {
        [] => Ok(Incoming::Close(None)),
        [_] => Err(WireError::Protocol("a close payload of one byte")),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !valid {
                return Err(WireError::Protocol("invalid close code"));
            }
            std::str::from_utf8(reason).map_err(|_| WireError::NotUtf8)?;
            Ok(Incoming::Close(Some(code)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::wire::frames::{put_frame, put_text};

    /// A frame as a client sends it: masked with `key`.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
        let mut f = Vec::new();
        put_frame(&mut f, opcode, &[payload]);
        if !fin {
            f[0] &= 0x7F;
        }
        f[1] |= 0x80;
        let head = f.len() - payload.len();
        let masked: Vec<u8> = payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        f.truncate(head);
        f.extend_from_slice(&key);
        f.extend_from_slice(&masked);
        f
    }

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn read_all(bytes: &[u8], limit: usize) -> Vec<Result<Incoming, WireError>> {
        let mut r = FrameReader::new(limit);
        r.push(bytes);
        let mut out = Vec::new();
        loop {
            match r.next_message() {
                Ok(Some(m)) => out.push(Ok(m)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn reads_masked_messages_across_any_split() {
        let mut bytes = client_frame(true, OP_TEXT, b"{\"type\":\"ping\"}", KEY);
        bytes.extend(client_frame(true, OP_TEXT, "é".repeat(200).as_bytes(), KEY));
        bytes.extend(client_frame(true, OP_PING, b"hb", KEY));
        for split in 0..bytes.len() {
            let mut r = FrameReader::new(1 << 20);
            let mut got = Vec::new();
            for chunk in [&bytes[..split], &bytes[split..]] {
                r.push(chunk);
                while let Some(m) = r.next_message().unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(
                got,
                vec![
                    Incoming::Text("{\"type\":\"ping\"}".into()),
                    Incoming::Text("é".repeat(200)),
                    Incoming::Ping(b"hb".to_vec()),
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn fragments_are_joined_and_control_frames_may_come_between_them() {
        let mut b = client_frame(false, OP_TEXT, b"{\"type\":", KEY);
        b.extend(client_frame(true, OP_PING, b"", KEY));
        b.extend(client_frame(false, OP_CONTINUATION, b"\"pi", KEY));
        b.extend(client_frame(true, OP_CONTINUATION, b"ng\"}", KEY));
        b.extend(client_frame(true, OP_BINARY, &[1, 2, 3], KEY));
        b.extend(client_frame(true, OP_PONG, b"", KEY));
        b.extend(client_frame(true, OP_CLOSE, &1000u16.to_be_bytes(), KEY));
        let got: Vec<Incoming> = read_all(&b, 1024).into_iter().map(Result::unwrap).collect();
        assert_eq!(
            got,
            vec![
                Incoming::Ping(vec![]),
                Incoming::Text("{\"type\":\"ping\"}".into()),
                Incoming::Binary(3),
                Incoming::Pong,
                Incoming::Close(Some(1000)),
            ]
        );
        assert_eq!(
            read_all(&client_frame(true, OP_CLOSE, b"", KEY), 10),
            vec![Ok(Incoming::Close(None))]
        );
    }

    #[test]
    fn every_protocol_violation_is_an_error_with_its_close_code() {
        let unmasked = {
            let mut b = Vec::new();
            put_text(&mut b, "hi");
            b
        };
        let mut rsv = client_frame(true, OP_TEXT, b"hi", KEY);
        rsv[0] |= 0x40;
        let mut top_bit = client_frame(true, OP_TEXT, b"", KEY);
        top_bit[1] = 0x80 | 127;
        top_bit.splice(2..2, [0x80, 0, 0, 0, 0, 0, 0, 1]);
        let mut interleaved = client_frame(false, OP_TEXT, b"a", KEY);
        interleaved.extend(client_frame(true, OP_TEXT, b"b", KEY));
        let cases: Vec<(&str, Vec<u8>, u16)> = vec![
            ("unmasked", unmasked, 1002),
            ("reserved bit", rsv, 1002),
            ("64-bit length with the top bit", top_bit, 1002),
            ("unknown opcode", client_frame(true, 0x3, b"", KEY), 1002),
            (
                "fragmented ping",
                client_frame(false, OP_PING, b"", KEY),
                1002,
            ),
            (
                "long ping",
                client_frame(true, OP_PING, &[0; 126], KEY),
                1002,
            ),
            (
                "continuation first",
                client_frame(true, OP_CONTINUATION, b"x", KEY),
                1002,
            ),
            ("new message inside a fragmented one", interleaved, 1002),
            (
                "one-byte close",
                client_frame(true, OP_CLOSE, &[3], KEY),
                1002,
            ),
            (
                "reserved close code",
                client_frame(true, OP_CLOSE, &1005u16.to_be_bytes(), KEY),
                1002,
            ),
            (
                "invalid UTF-8",
                client_frame(true, OP_TEXT, &[0xff, 0xfe], KEY),
                1007,
            ),
            (
                "too big",
                client_frame(true, OP_TEXT, &[b'a'; 65], KEY),
                1009,
            ),
        ];
        for (what, bytes, code) in cases {
            let got = read_all(&bytes, 64);
            let Some(Err(e)) = got.last() else {
                panic!("{what}: no error in {got:?}");
            };
            assert_eq!(e.close_code(), code, "{what}: {e}");
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_header_and_fragments_count_together() {
        // Only the header has arrived: the payload is never buffered.
        let mut r = FrameReader::new(1000);
        r.push(&[0x81, 0x80 | 127, 0, 0, 0, 0, 0x10, 0, 0, 0]);
        assert_eq!(r.next_message(), Err(WireError::TooBig(1000)));
        let mut b = client_frame(false, OP_TEXT, &[b'a'; 600], KEY);
        b.extend(client_frame(true, OP_CONTINUATION, &[b'a'; 600], KEY));
        assert_eq!(read_all(&b, 1000), vec![Err(WireError::TooBig(1000))]);
    }

    #[test]
    fn holds_no_buffer_between_messages() {
        let mut r = FrameReader::new(1 << 16);
        r.push(&client_frame(true, OP_TEXT, &[b'a'; 3000], KEY));
        assert!(matches!(r.next_message(), Ok(Some(Incoming::Text(_)))));
        assert_eq!(r.buf.capacity(), 0);
        assert_eq!(r.message.capacity(), 0);
    }
}
