//! A throwaway Tansu broker for one test, on a free port, with in-memory storage.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Broker {
    pub addr: String,
    child: Child,
    /// The broker's stdout and stderr; the file is deleted with the broker. (The benchmarks include this file but keep no logs.)
    #[allow(dead_code)]
    log: tempfile::NamedTempFile,
}

/// The pinned broker binary: `$PRICEFEED_TANSU`, or installed by scripts/install-broker.sh.
fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("PRICEFEED_TANSU") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/install-broker.sh"))
        .output()
        .expect("run scripts/install-broker.sh");
    assert!(
        out.status.success(),
        "installing the broker failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

impl Broker {
    pub fn start() -> Broker {
        let bin = binary();
        for _attempt in 0..5 {
            let port = super::free_port();
            let url = format!("tcp://127.0.0.1:{port}");
            let mut child = Command::new(&bin)
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                .args(["--storage-engine", "memory://tansu/"])
                // Warnings and errors are kept in the log; PRICEFEED_TEST_BROKER_LOG=debug for more.
                .env(
                    "RUST_LOG",
                    std::env::var("PRICEFEED_TEST_BROKER_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn tansu");
            let log = tempfile::Builder::new()
                .prefix("tansu-")
                .suffix(".log")
                .tempfile()
                .expect("broker log file");
            let (tx, rx) = mpsc::channel();
            for stream in [
                Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
                Box::new(child.stderr.take().unwrap()),
            ] {
                let tx = tx.clone();
                let mut out = std::fs::OpenOptions::new()
                    .append(true)
                    .open(log.path())
                    .expect("broker log file");
                std::thread::spawn(move || {
                    // Byte lines, not `lines()`: one line that is not UTF-8 must not stop the
                    // reading (the broker would then block on a full pipe).
                    let mut reader = BufReader::new(stream);
                    let mut line = Vec::new();
                    while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                        if !line.ends_with(b"\n") {
                            line.push(b'\n');
                        }
                        // One write per line, so the two streams' lines never interleave.
                        let _ = out.write_all(&line);
                        if String::from_utf8_lossy(&line)
                            .trim_start()
                            .starts_with("ready in")
                        {
                            let _ = tx.send(());
                        }
                        line.clear();
                    }
                });
            }
            if rx.recv_timeout(Duration::from_secs(20)).is_ok() {
                return Broker {
                    addr: format!("127.0.0.1:{port}"),
                    child,
                    log,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("the Tansu broker did not become ready");
    }
}

impl Broker {
    /// Copies what the broker printed so far to `path` (e.g. to keep it with a failed test's logs).
    #[allow(dead_code)]
    pub fn save_log(&self, path: &Path) {
        let _ = std::fs::copy(self.log.path(), path);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
