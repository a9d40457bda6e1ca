//! The k6 load tests at smoke size, the way a user runs them on a fresh clone:
//! `loadtest/run.sh --demo --smoke all` starts the demo stack (`scripts/demo.sh`, with the binary
//! this test run built, on free ports), runs the real k6 (pinned, installed into .tools/) with
//! `fanout`, `connect-storm` and `resume-storm`, and stops the stack. The scripts' thresholds are
//! the assertions: no protocol error, no seqNo gap or duplicate, every client set up, subscribed
//! and receiving, every client of the resume storm resumed (with what the edge read meanwhile
//! replayed, and no snapshot in its place). No
//! latency threshold at smoke size: timings belong to benchmarks (docs/benchmarks.md).

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;

#[test]
fn k6_smoke_runs_of_fanout_connect_storm_and_resume_storm_hold_their_thresholds() {
    k6_smoke(None);
}

/// The same with `[kafka] delivery = "transactional"`: commit markers take offsets between the
/// records, and k6's gap check (by `prev`) must not count them, nor miss a real gap.
#[test]
fn k6_smoke_runs_hold_their_thresholds_across_commit_markers() {
    k6_smoke(Some("transactional"));
}

/// One demo stack at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn k6_smoke(delivery: Option<&str>) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run_dir = tempfile::tempdir().unwrap();
    let config = run_dir.path().join("channels.toml");
    let rules = std::fs::read_to_string(root.join("channels.toml")).unwrap();
    let rules = match delivery {
        Some(d) => {
            let changed =
                rules.replace("delivery = \"idempotent\"", &format!("delivery = \"{d}\""));
            assert_ne!(changed, rules, "channels.toml names its delivery mode");
            changed
        }
        None => rules,
    };
    std::fs::write(&config, rules).unwrap();
    let out_dir = root.join("target/loadtest");
    for name in ["fanout", "connect-storm", "resume-storm"] {
        let _ = std::fs::remove_file(out_dir.join(format!("{name}.json")));
    }
    let log_path = run_dir.path().join("run.out");
    let mut child = Command::new("bash")
        .arg(root.join("loadtest/run.sh"))
        .args(["--demo", "--smoke", "all"])
        .env("PRICEFEED_BIN", env!("CARGO_BIN_EXE_pricefeed"))
        .env("PRICEFEED_DEMO_RUN_DIR", run_dir.path())
        .env("PRICEFEED_DEMO_BROKER_PORT", free_port().to_string())
        .env("PRICEFEED_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("PRICEFEED_DEMO_RATE", "200")
        .env("PRICEFEED_CONFIG", &config)
        .env("RUST_LOG", "info,librdkafka=error,rdkafka=error")
        .env_remove("PRICEFEED_URL")
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log_path).unwrap())
        .stderr(std::process::Stdio::from(
            std::fs::File::options()
                .append(true)
                .open(&log_path)
                .unwrap(),
        ))
        .process_group(0)
        .spawn()
        .expect("bash");
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            // run.sh stops the demo it started on SIGTERM (within 10 s).
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGTERM) };
            std::thread::sleep(Duration::from_secs(15));
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    println!("{log}");
    let pricefeed_log =
        std::fs::read_to_string(run_dir.path().join("pricefeed.log")).unwrap_or_default();
    let tail: Vec<&str> = pricefeed_log.lines().rev().take(30).collect();
    assert!(
        status.is_some_and(|s| s.success()),
        "loadtest/run.sh --demo --smoke all failed (status {status:?}); its output is above.\n\
         --- pricefeed log (tail, newest first) ---\n{}",
        tail.join("\n")
    );

    // Each run left its summary, and it counted real traffic.
    for name in ["fanout", "connect-storm", "resume-storm"] {
        let text = std::fs::read_to_string(out_dir.join(format!("{name}.json")))
            .unwrap_or_else(|e| panic!("no summary from {name}: {e}"));
        let summary: serde_json::Value = serde_json::from_str(&text).unwrap();
        let prices = summary["metrics"]["prices_received"]["count"]
            .as_f64()
            .unwrap_or(0.0);
        assert!(prices > 0.0, "{name} received no price: {text}");
        let gaps = summary["metrics"]["seq_gaps"]["count"].as_f64();
        assert!(
            gaps.is_none_or(|g| g == 0.0),
            "{name} saw seqNo gaps: {text}"
        );
    }
}
