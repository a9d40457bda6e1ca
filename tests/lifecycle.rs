//! Start-up and shutdown while Kafka cannot be reached: the process serves /healthz (and says
//! what /readyz waits for), and SIGTERM ends it promptly with status 0. A metadata request to an
//! unreachable broker blocks for up to its timeout; it must never hold the async workers (the
//! signal handler and HTTP run there) nor the exit.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut r = String::new();
    s.read_to_string(&mut r).ok()?;
    Some(r)
}

#[test]
fn without_kafka_health_answers_and_sigterm_ends_the_process_promptly() {
    let unreachable = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let broker = unreachable.local_addr().unwrap().port();
    drop(unreachable); // nothing listens there now
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pricefeed"))
        .arg("--config")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/channels.toml"))
        .args(["--brokers", &format!("127.0.0.1:{broker}"), "run"])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .env(
            "PRICEFEED_JWT_SECRET",
            "lifecycle-test-secret-0123456789abcdef",
        )
        .env("RUST_LOG", "warn,librdkafka=off,rdkafka=off")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if get(port, "/healthz").is_some_and(|r| r.contains("200 OK")) {
            break;
        }
        assert!(Instant::now() < deadline, "/healthz never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Long enough for both roles to be inside a blocking metadata request.
    std::thread::sleep(Duration::from_secs(2));
    for _ in 0..3 {
        let t = Instant::now();
        let r = get(port, "/readyz").expect("/readyz answers while Kafka is down");
        assert!(r.contains("503") && r.contains("not ready"), "{r}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "/readyz took {:?}",
            t.elapsed()
        );
    }
    let t = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(8) {
            let _ = child.kill();
            panic!("still running 8 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "exit status {status:?} (killed by the signal: no handler ran)"
    );
}
