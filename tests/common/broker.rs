//! The Apache Kafka broker under the tests and benchmarks, started by `scripts/kafka.sh` (the one
//! way the project starts a broker).
//!
//! - [`Broker::start`]: the broker shared by the whole run. `scripts/test.sh` starts one and hands
//!   it over in `PRICEFEED_TEST_BROKERS` (its directory in `PRICEFEED_TEST_BROKER_DIR`); a test
//!   binary run without it (`cargo test --test x`) starts one for itself, stopped when the
//!   binary exits. Tests keep apart by their own topic and group names.
//! - [`Broker::start_own`]: a broker for one test, in its own data dir, that the test may kill
//!   (SIGKILL) and start again on the same data.
#![allow(dead_code)] // the benchmarks include this file and use a part of it

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub struct Broker {
    /// The bootstrap address, `127.0.0.1:PORT`.
    pub addr: String,
    /// The broker's directory (server.properties, data/, broker.log), when known.
    dir: Option<PathBuf>,
    /// Set for a test's own broker: its directory, removed when the broker is dropped.
    own: Option<tempfile::TempDir>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh")
}

/// Starts the broker of `dir` (stopped when this process is gone) and returns its address.
fn run_start(dir: &Path, extra: &[&str]) -> String {
    let mut cmd = Command::new(script());
    cmd.arg("start").arg("--dir").arg(dir).args(extra);
    cmd.args(["--owner-pid", &std::process::id().to_string()]);
    let out = cmd.output().expect("run scripts/kafka.sh");
    assert!(
        out.status.success(),
        "starting Apache Kafka failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("address")
        .trim()
        .to_string()
}

impl Broker {
    /// The broker shared by every test of this run.
    pub fn start() -> Broker {
        static SHARED: OnceLock<(String, PathBuf)> = OnceLock::new();
        if let Ok(addr) = std::env::var("PRICEFEED_TEST_BROKERS") {
            return Broker {
                addr,
                dir: std::env::var_os("PRICEFEED_TEST_BROKER_DIR").map(PathBuf::from),
                own: None,
            };
        }
        let (addr, dir) = SHARED.get_or_init(|| {
            // Removed by the start script's watchdog once this binary has exited.
            let dir = tempfile::Builder::new()
                .prefix("pricefeed-kafka-")
                .tempdir()
                .expect("broker dir")
                .keep();
            (run_start(&dir, &["--ephemeral"]), dir)
        });
        Broker {
            addr: addr.clone(),
            dir: Some(dir.clone()),
            own: None,
        }
    }

    /// A broker for this test alone, which it may kill and restart.
    pub fn start_own() -> Broker {
        let dir = tempfile::Builder::new()
            .prefix("pricefeed-kafka-")
            .tempdir()
            .expect("broker dir");
        let addr = run_start(dir.path(), &[]);
        Broker {
            addr,
            dir: Some(dir.path().to_path_buf()),
            own: Some(dir),
        }
    }

    /// The broker's directory (server.properties, data/, broker.log, broker.pid).
    pub fn dir(&self) -> &Path {
        self.dir
            .as_deref()
            .expect("the broker's directory is not known")
    }

    fn own_dir(&self) -> &Path {
        self.own
            .as_ref()
            .expect("only a test's own broker (Broker::start_own) can be killed or restarted")
            .path()
    }

    /// The JVM's pid, from the pid file the start script wrote (when the directory is known).
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.as_ref()?.join("broker.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGKILL: the broker dies at once, as in a crash or an OOM kill; its data stays.
    pub fn kill(&self) {
        self.own_dir();
        let pid = self.pid().expect("broker pid");
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -KILL {pid}");
        // kill only sends the signal: wait until the process is gone (or a zombie).
        let stat = format!("/proc/{pid}/stat");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z ")) {
            assert!(
                std::time::Instant::now() < deadline,
                "broker {pid} still alive after SIGKILL"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Starts the broker again on the same data dir and port.
    pub fn restart(&self) {
        let addr = run_start(self.own_dir(), &[]);
        assert_eq!(addr, self.addr, "restarted on another address");
    }

    /// Copies what the broker printed so far to `path` (e.g. to keep it with a failed test's logs).
    #[allow(dead_code)]
    pub fn save_log(&self, path: &Path) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::copy(dir.join("broker.log"), path);
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(dir) = &self.own {
            let _ = Command::new(script())
                .args(["stop", "--timeout", "10", "--dir"])
                .arg(dir.path())
                .output();
        }
    }
}
