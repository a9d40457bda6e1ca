//! A curl-style Server-Sent Events client for the edge tests: a plain HTTP/1.1 GET on a TCP
//! socket, the chunked body decoded and split into events (`data:`, `id:`, comments) by hand,
//! as the event-stream format says.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One event: its `data` (lines joined), its `id` when it had one, or a comment.
#[derive(Debug, Clone)]
pub enum Event {
    Data { data: String, id: Option<String> },
    Comment(String),
}

pub struct Sse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    /// Decoded body bytes not yet split into events.
    pending: String,
    chunked: bool,
    /// The last `id:` seen, as a browser keeps it for `Last-Event-ID`.
    pub last_id: Option<String>,
}

impl Sse {
    /// `GET path` with `headers`; reads the status and the headers.
    pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Sse {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        Sse::request(s, path, headers)
    }

    /// [`Sse::get`] on a socket with a receive buffer of `rcvbuf` bytes (set before connecting,
    /// so that the window stays small): a client that stops reading pushes back at once.
    pub fn get_small_window(port: u16, path: &str, headers: &[(&str, &str)], rcvbuf: i32) -> Sse {
        use std::os::fd::FromRawFd;
        // SAFETY: a fresh socket this function owns until it hands it to TcpStream.
        let s = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let size = rcvbuf;
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            );
            let addr = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
                },
                sin_zero: [0; 8],
            };
            let r = libc::connect(
                fd,
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            assert_eq!(r, 0, "connect");
            TcpStream::from_raw_fd(fd)
        };
        Sse::request(s, path, headers)
    }

    fn request(mut s: TcpStream, path: &str, headers: &[(&str, &str)]) -> Sse {
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{extra}\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        reader
            .get_mut()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        reader.read_line(&mut line).expect("status line");
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status");
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').expect("header line");
            headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
        }
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        Sse {
            status,
            headers,
            reader,
            pending: String::new(),
            chunked,
            last_id: None,
        }
    }

    /// Reads raw bytes until the connection ends: `Ok` when the server closed or reset it,
    /// `Err` when it stayed open (nothing for `quiet`).
    pub fn until_closed(mut self, quiet: Duration) -> Result<(), String> {
        self.reader.get_mut().set_read_timeout(Some(quiet)).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(format!("the connection stayed open: nothing for {quiet:?}"));
                }
                Err(_) => return Ok(()), // reset
            }
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The whole body of a refusal (a JSON problem), as JSON.
    pub fn problem(mut self) -> serde_json::Value {
        let mut body = String::new();
        if let Some(n) = self.header("content-length").and_then(|n| n.parse().ok()) {
            let mut bytes = vec![0u8; n];
            self.reader.read_exact(&mut bytes).expect("body");
            body = String::from_utf8(bytes).expect("UTF-8 body");
        }
        while body.is_empty()
            && let Some(chunk) = self.chunk()
        {
            body.push_str(&chunk);
        }
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body:?}"))
    }

    /// The next body bytes; `None` at the end of the body or when nothing came within 10 s.
    fn chunk(&mut self) -> Option<String> {
        if !self.chunked {
            let mut buf = [0u8; 4096];
            let n = self.reader.read(&mut buf).ok()?;
            return (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let mut line = String::new();
        self.reader.read_line(&mut line).ok()?;
        let size = usize::from_str_radix(line.trim(), 16).ok()?;
        if size == 0 {
            return None;
        }
        let mut data = vec![0u8; size + 2];
        self.reader.read_exact(&mut data).ok()?;
        data.truncate(size);
        Some(String::from_utf8(data).expect("UTF-8 events"))
    }

    /// The next event, or `None` when the stream ended or nothing came within `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                if let Some(e) = self.parse(&block) {
                    return Some(e);
                }
                continue;
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let stream = self.reader.get_mut();
            stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let chunk = self.chunk()?;
            self.pending.push_str(&chunk);
        }
    }

    fn parse(&mut self, block: &str) -> Option<Event> {
        let (mut data, mut id, mut comment) = (Vec::new(), None, None);
        for line in block.lines() {
            if let Some(c) = line.strip_prefix(':') {
                comment = Some(c.trim().to_string());
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
            } else if let Some(i) = line.strip_prefix("id:") {
                id = Some(i.trim().to_string());
            }
        }
        if let Some(i) = &id {
            self.last_id = Some(i.clone());
        }
        if !data.is_empty() {
            return Some(Event::Data {
                data: data.join("\n"),
                id,
            });
        }
        comment.map(Event::Comment)
    }

    /// The next `data` event as JSON (comments skipped).
    pub fn next_json(&mut self, timeout: Duration) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.next(left)? {
                Event::Data { data, .. } => {
                    return Some(serde_json::from_str(&data).expect("JSON data"));
                }
                Event::Comment(_) => {}
            }
        }
    }

    /// Reads until a `data` frame of type `ty`, failing on any other frame type except prices.
    pub fn expect(&mut self, ty: &str) -> serde_json::Value {
        let v = self
            .next_json(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no {ty} event"));
        assert_eq!(v["type"], ty, "{v}");
        v
    }
}
