//! The client library's gap check (`/client.js`) in Node, against a stand-in WebSocket that plays
//! the edge's frames: no false gap across the offsets commit markers take, a real gap reported
//! (tests/browser/client-gaps.mjs).

use std::path::Path;
use std::process::Command;

#[test]
fn client_js_tells_commit_markers_from_missed_records() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .arg(root.join("tests/browser/client-gaps.mjs"))
        .output()
        .expect("node (Node.js 20+) runs the client library's checks");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("client gap checks: all passed"), "{text}");
}
