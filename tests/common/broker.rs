//! A throwaway Tansu broker for one test, on a free port, with in-memory storage.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Broker {
    pub addr: String,
    child: Child,
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
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn tansu");
            let (tx, rx) = mpsc::channel();
            for stream in [
                Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
                Box::new(child.stderr.take().unwrap()),
            ] {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        if line.contains("ready") {
                            let _ = tx.send(());
                        }
                    }
                });
            }
            if rx.recv_timeout(Duration::from_secs(20)).is_ok() {
                return Broker {
                    addr: format!("127.0.0.1:{port}"),
                    child,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("the Tansu broker did not become ready");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
