//! The README's demo command, then the pages in a real browser: `scripts/demo.sh` starts the
//! pinned broker, `pricefeed run --demo` and the simulator (with the binary this test run built,
//! on free ports), and `tests/browser/ui.mjs` drives Debian's Chromium (through playwright-core)
//! against it. It checks that both channels show updating prices, that retail quotes wider than
//! vip for the same source price on every shared symbol, that after the sockets are cut the UI
//! resumes with no seqNo gap (by the client library's own gap detection), that the /docs
//! playground's setup/subscribe flow logs ready, subscribed and prices, and that the dashboard's
//! charts fill. Then the client library runs in Node (tests/browser/node-client.mjs) against the
//! same demo, on /ws and on /ws/sub/{topic}, through a cut and a resume. Screenshots:
//! target/browser/.
//!
//! Needs node, chromium and tests/browser/node_modules: `scripts/install-browser.sh` installs
//! them (scripts/test.sh runs it first).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = write!(
        s,
        "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    r.starts_with("HTTP/1.1 200")
}

/// The demo script and everything it started, stopped (SIGTERM to its process group) on drop.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        // The script's own process group (process_group(0) at spawn): the script, pricefeed and
        // the simulator (the broker has a session of its own: the script stops it on SIGTERM,
        // and its watchdog when the script is gone).
        let pgid = self.0.id() as libc::pid_t;
        assert!(pgid > 1);
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && self.0.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

#[test]
fn the_demo_shows_live_channels_side_by_side_and_resumes_without_a_gap() {
    let root = env!("CARGO_MANIFEST_DIR");
    let run_dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let demo = Demo(
        Command::new("bash")
            .arg(Path::new(root).join("scripts/demo.sh"))
            .env("PRICEFEED_BIN", env!("CARGO_BIN_EXE_pricefeed"))
            .env("PRICEFEED_DEMO_RUN_DIR", run_dir.path())
            .env("PRICEFEED_DEMO_BROKER_PORT", free_port().to_string())
            .env("PRICEFEED_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("PRICEFEED_DEMO_RATE", "150")
            .env("RUST_LOG", "info,librdkafka=error,rdkafka=error")
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(run_dir.path().join("demo.out")).unwrap())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("bash"),
    );
    let log = |name: &str| std::fs::read_to_string(run_dir.path().join(name)).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready(http) {
        assert!(
            Instant::now() < deadline,
            "the demo did not become ready:\n{}\n{}",
            log("demo.out"),
            log("pricefeed.log")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let out = Command::new("node")
        .arg(Path::new(root).join("tests/browser/ui.mjs"))
        .env("PRICEFEED_URL", format!("http://127.0.0.1:{http}"))
        .env(
            "PRICEFEED_SCREENSHOT",
            Path::new(root).join("target/browser/ui.png"),
        )
        .current_dir(root)
        .output()
        .expect("node (Node.js) must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{}\n--- pricefeed log (tail) ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&log("pricefeed.log"), 40)
    );

    // The same client library in Node, against the same demo.
    let out = Command::new("node")
        .arg(Path::new(root).join("tests/browser/node-client.mjs"))
        .env("PRICEFEED_URL", format!("http://127.0.0.1:{http}"))
        .current_dir(root)
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the client library in Node failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(demo);
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
