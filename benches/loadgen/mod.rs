//! The lean load client the benchmarks share (not a test: it measures). It speaks just enough
//! WebSocket (RFC 6455 client framing, no JSON parsing) to hold thousands of connections and
//! read millions of frames per second from one process on a small machine, against three kinds of
//! server: pricefeed's edge (Micro Socket `setup`), a Socket.IO server (Engine.IO v4 over
//! WebSocket, `42["price",…]` events) and a plain `ws` broadcast. Every price frame carries the
//! generator's send time (`sent_us`, microseconds) and a `partition` / `seqNo`, so every server is
//! measured the same way: delivered frames, latency send → client read (an HDR histogram over
//! sampled frames), seqNo gaps per partition, conflated frames.
#![allow(dead_code)]

pub mod client;
pub mod counters;
pub mod failover;
pub mod failover_run;
pub mod fleet;
pub mod measure;
pub mod pricefeed;
pub mod seq;

use std::time::{SystemTime, UNIX_EPOCH};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// The value after `name` on the command line (`--minutes 30`), parsed; `default` without it.
pub fn flag<T: std::str::FromStr>(name: &str, default: T) -> T {
    let argv: Vec<String> = std::env::args().collect();
    match argv.iter().position(|a| a == name) {
        None => default,
        Some(i) => argv
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} needs a value")),
    }
}

/// `--rates 200,1000,…` as numbers; "" is no rate at all (skips the phase).
pub fn rates(v: &str) -> Vec<u64> {
    v.split(',')
        .filter(|r| !r.is_empty())
        .map(|r| r.parse().expect("--rates: numbers separated by commas"))
        .collect()
}

/// A plain HTTP GET on 127.0.0.1; the body, or "" when nothing answers.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// Raises the open-files limit (thousands of sockets on both ends): to 262,144 where allowed
/// (root), else to the hard limit. Children started afterwards inherit it.
pub fn raise_fd_limit() {
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return;
        }
        let want = libc::rlimit {
            rlim_cur: 262_144,
            rlim_max: l.rlim_max.max(262_144),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// How many connections one process here can hold: the open-files limit less room for the
/// process's other files. Prints why when it is below `wanted`.
pub fn connection_cap(wanted: usize) -> usize {
    // SAFETY: plain libc call on a local struct.
    let limit = unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur as usize
    };
    let cap = limit.saturating_sub(1000);
    if cap < wanted {
        println!(
            "note: the open-files limit is {limit} and cannot be raised here (ulimit -Hn), so \
             {cap} connections instead of {wanted}"
        );
    }
    cap.min(wanted)
}

/// A process's CPU time (user + system) in seconds, and its RSS in KiB.
pub fn proc_stats(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    let ticks = field(11).unwrap_or(0.0) + field(12).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (ticks / 100.0, rss)
}
