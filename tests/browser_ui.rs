//! The trading UI in a real browser: `tests/browser/ui.mjs` drives Debian's Chromium (through
//! playwright-core) against `pricefeed run --demo` with the simulator feeding it. It checks that
//! both channels show updating prices, that retail quotes wider than vip for the same source price
//! on every shared symbol, and that after the test cuts the sockets the UI resumes with no seqNo
//! gap, by the client library's own gap detection. Screenshot: target/browser/ui.png.
//!
//! Needs node, chromium and tests/browser/node_modules: `scripts/install-browser.sh` installs
//! them (scripts/test.sh runs it first).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn the_trading_ui_shows_live_channels_side_by_side_and_resumes_without_a_gap() {
    let root = env!("CARGO_MANIFEST_DIR");
    assert!(
        Path::new(root)
            .join("tests/browser/node_modules/playwright-core")
            .exists(),
        "playwright-core is not installed: run scripts/install-browser.sh"
    );
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let config = Path::new(root).join("channels.toml");
    // As scripts/demo.sh does: the feed (which creates the raw topic) and `run --demo` together.
    let _feed = spawn_pricefeed(&broker, &config, &["simulate", "--rate", "150"], dir.path());
    let node = spawn_pricefeed(&broker, &config, &["run", "--demo"], dir.path());
    wait_ready(&node, Duration::from_secs(90));
    let out = Command::new("node")
        .arg(Path::new(root).join("tests/browser/ui.mjs"))
        .env(
            "PRICEFEED_URL",
            format!("http://127.0.0.1:{}", node.http_port),
        )
        .env(
            "PRICEFEED_SCREENSHOT",
            Path::new(root).join("target/browser/ui.png"),
        )
        .current_dir(root)
        .output()
        .expect("node (Node.js) must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}\n--- pricefeed log (tail) ---\n{}",
        tail(&node.log_text(), 40)
    );
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
