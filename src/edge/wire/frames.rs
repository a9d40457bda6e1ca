//! WebSocket framing (RFC 6455), server side: the frames the edge writes. Each price goes
//! straight from the in-memory log into the connection's write buffer (one copy, no
//! per-subscriber reference counting, one socket write per batch), so the edge owns the framing
//! rather than going through a general-purpose WebSocket stream. No extension is negotiated.

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close codes we send.
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_PROTOCOL: u16 = 1002;
pub const CLOSE_NOT_UTF8: u16 = 1007;

/// Appends one unfragmented frame whose payload is the concatenation of `parts`.
pub fn put_frame(buf: &mut Vec<u8>, opcode: u8, parts: &[&[u8]]) {
    let n: usize = parts.iter().map(|p| p.len()).sum();
    buf.reserve(n + 10);
    buf.push(0x80 | opcode);
    if n < 126 {
        buf.push(n as u8);
    } else if n <= 0xFFFF {
        buf.push(126);
        buf.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        buf.push(127);
        buf.extend_from_slice(&(n as u64).to_be_bytes());
    }
    for p in parts {
        buf.extend_from_slice(p);
    }
}

pub fn put_text(buf: &mut Vec<u8>, text: &str) {
    put_frame(buf, OP_TEXT, &[text.as_bytes()]);
}

/// A Close frame; the reason is cut (at a character boundary) to fit a control frame.
pub fn put_close(buf: &mut Vec<u8>, code: u16, reason: &str) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    put_frame(
        buf,
        OP_CLOSE,
        &[&code.to_be_bytes(), &reason.as_bytes()[..end]],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_frames_use_the_shortest_length_form_and_no_mask() {
        for (n, head) in [
            (0usize, 2usize),
            (125, 2),
            (126, 4),
            (65_535, 4),
            (65_536, 10),
        ] {
            let mut b = Vec::new();
            put_text(&mut b, &"x".repeat(n));
            assert_eq!(b.len(), head + n, "payload {n}");
            assert_eq!(b[0], 0x81);
            assert_eq!(b[1] & 0x80, 0, "servers do not mask");
            let len = match b[1] {
                126 => u16::from_be_bytes([b[2], b[3]]) as usize,
                127 => u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                l => l as usize,
            };
            assert_eq!(len, n);
        }
        let mut c = Vec::new();
        put_close(&mut c, 1008, &"é".repeat(100));
        assert_eq!(c[0], 0x88);
        assert!(c[1] as usize <= 125, "a control frame fits 125 bytes");
        assert_eq!(u16::from_be_bytes([c[2], c[3]]), 1008);
        assert!(
            std::str::from_utf8(&c[4..]).is_ok(),
            "cut at a char boundary"
        );
    }
}
