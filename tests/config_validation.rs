//! channels.toml validation: every error with its TOML path, from `check-config` and at
//! start-up, and the shipped example stays valid.

use std::process::Command;

use pricefeed::config::Rules;
use pricefeed::config::reload::{ReloadOutcome, reload_once};

fn pricefeed() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pricefeed"))
}

const BROKEN: &str = r#"
[kafka]
raw_topic = "bad topic"
colour = 1

[instruments.EURUSD]
tick = 0.00001
pip = "0.0001"
precision = 5

[instruments.ES]
tick = "-0.25"
pip = "0.25"
precision = 2

[instruments.GBPUSD]
tick = "0.00001"
pip = "0.0001"
precision = 3

[channels.retail]
symbols = ["EURUSD", "NOPE"]
markup = { unit = "pipz", bid = "-1", ask = "1" }

[channels.vip]
markup = { unit = "pips", bid = "-1", ask = "1", min_spread = "-2" }
overrides.AAPL = { unit = "abs", bid = "1", ask = "1" }
speed = "fast"
"#;

const EXPECTED_PATHS: &[&str] = &[
    "kafka.colour: unknown key",
    "kafka.raw_topic: \"bad topic\" is not a valid Kafka topic name",
    "instruments.EURUSD.tick: write decimals as strings",
    "instruments.ES.tick: must be positive",
    "instruments.GBPUSD.precision: 3 decimal places cannot show the tick 0.00001",
    "channels.retail.symbols[1]: unknown instrument \"NOPE\"",
    "channels.retail.markup.unit: \"pipz\" is not one of: pips, bps, percent, abs",
    "channels.retail.markup.bid: negative amount -1 (set allow_negative = true",
    "channels.vip.markup.bid: negative amount -1",
    "channels.vip.markup.min_spread: negative amount -2",
    "channels.vip.overrides.AAPL: unknown instrument \"AAPL\"",
    "channels.vip.speed: unknown key",
];

#[test]
fn the_shipped_example_is_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = pricefeed()
        .args(["check-config", &format!("{root}/channels.toml")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok (version"), "{stdout}");
    let rules = Rules::load(format!("{root}/channels.toml").as_ref()).unwrap();
    assert!(rules.channels.len() >= 3);
    for s in ["EURUSD", "USDJPY", "BTCUSD", "AAPL"] {
        assert!(rules.instrument_index(s).is_some(), "{s} in the example");
    }
}

#[test]
fn an_empty_kafka_options_variable_means_none_and_a_malformed_one_is_named() {
    let example = format!("{}/channels.toml", env!("CARGO_MANIFEST_DIR"));
    for empty in ["", " ", "linger.ms=5,"] {
        let out = pricefeed()
            .args(["check-config", &example])
            .env("PRICEFEED_KAFKA_OPTIONS", empty)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "PRICEFEED_KAFKA_OPTIONS={empty:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = pricefeed()
        .args(["check-config", &example])
        .env("PRICEFEED_KAFKA_OPTIONS", "linger.ms")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("expected KEY=VALUE"), "{stderr}");
}

#[test]
fn check_config_lists_every_error_with_its_path_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, BROKEN).unwrap();
    let out = pricefeed().arg("check-config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in EXPECTED_PATHS {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(
        stderr.contains(&format!("{} errors", EXPECTED_PATHS.len())),
        "{stderr}"
    );
}

#[test]
fn start_up_with_an_invalid_config_fails_before_binding_anything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, BROKEN).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // No subcommand means `run`.
    for role in [
        &[][..],
        &["run"],
        &["transform", "--channel", "vip"],
        &["simulate"],
    ] {
        let out = pricefeed()
            .arg("--config")
            .arg(&path)
            .args(["--brokers", "127.0.0.1:1"])
            .args(role)
            .env("PRICEFEED_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{role:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for expected in EXPECTED_PATHS {
            assert!(stderr.contains(expected), "{role:?}: missing {expected:?}");
        }
        // Nothing was bound: the port is still free.
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("port still free");
    }
}

#[test]
fn a_missing_file_and_bad_toml_syntax_are_reported_plainly() {
    let out = pricefeed()
        .args(["check-config", "/nonexistent/channels.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the file"));

    let errors = Rules::parse("[instruments\nx = 1", "bad.toml").unwrap_err();
    assert_eq!(errors.errors.len(), 1);
    assert!(
        errors.errors[0].message.starts_with("not valid TOML"),
        "{errors}"
    );
    assert!(errors.to_string().contains("line 1"), "{errors}");
}

#[test]
fn cross_field_rules() {
    let base = r#"
[instruments.EURUSD]
tick = "0.00001"
pip = "0.0001"
precision = 5
[instruments.ES]
tick = "0.25"
pip = "0.25"
precision = 2
"#;
    let cases = [
        (
            "[channels.c]\nsymbols = [\"EURUSD\"]\nmarkup = { unit = \"pips\", bid = \"1\", ask = \"1\" }\noverrides.ES = { unit = \"abs\", bid = \"1\", ask = \"1\" }\n",
            "channels.c.overrides.ES: ES is not carried by this channel",
        ),
        (
            "[channels.c]\nmarkup = { unit = \"pips\", bid = \"1\", ask = \"1\" }\nstale_policy = \"withhold\"\n",
            "channels.c.stale_policy: has no effect without stale_after_ms",
        ),
        (
            "[channels.c]\nmarkup = { unit = \"bps\", bid = \"10000\", ask = \"1\" }\n",
            "channels.c.markup.bid: 10000 is out of range",
        ),
        (
            "[channels.c]\nsymbols = []\nmarkup = { unit = \"pips\", bid = \"1\", ask = \"1\" }\n",
            "channels.c.symbols: empty",
        ),
        (
            "[channels.c]\nmarkup = { unit = \"pips\", ask = \"1\" }\n",
            "channels.c.markup.bid: missing",
        ),
        (
            "[kafka]\nchannel_topic_prefix = \"\"\nraw_topic = \"c\"\n[channels.c]\nmarkup = { unit = \"pips\", bid = \"1\", ask = \"1\" }\n",
            "channels.c: its topic c collides with the raw or dead-letter topic",
        ),
        (
            "[channels.\"bad name\"]\nmarkup = { unit = \"pips\", bid = \"1\", ask = \"1\" }\n",
            "channels.\"bad name\": a channel name is 1 to 64",
        ),
        ("", "channels: missing"),
    ];
    for (extra, expected) in cases {
        let text = format!("{base}{extra}");
        let errors = Rules::parse(&text, "t").expect_err(expected).to_string();
        assert!(errors.contains(expected), "want {expected:?} in:\n{errors}");
    }
}

#[test]
fn reload_applies_valid_files_and_rejects_invalid_ones_and_kafka_changes() {
    let good =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/channels.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("channels.toml");
    std::fs::write(&path, &good).unwrap();
    let live = std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(Rules::load(&path).unwrap()));
    let v1 = live.load().version.clone();

    assert!(matches!(
        reload_once(&path, &live),
        ReloadOutcome::Unchanged
    ));

    std::fs::write(
        &path,
        good.replace(
            "bid = \"1.0\", ask = \"1.2\"",
            "bid = \"1.5\", ask = \"1.2\"",
        ),
    )
    .unwrap();
    let ReloadOutcome::Applied { version: v2 } = reload_once(&path, &live) else {
        panic!("expected the edit to apply");
    };
    assert_ne!(v1, v2);
    assert_eq!(live.load().version, v2);

    std::fs::write(&path, good.replace("tick = \"0.25\"", "tick = \"zero\"")).unwrap();
    let ReloadOutcome::Rejected(errors) = reload_once(&path, &live) else {
        panic!("expected a rejection");
    };
    assert!(
        errors.to_string().contains("instruments.ES.tick"),
        "{errors}"
    );
    assert_eq!(live.load().version, v2, "old rules stay live");

    std::fs::write(
        &path,
        good.replace("raw_topic = \"prices.raw\"", "raw_topic = \"other.raw\""),
    )
    .unwrap();
    let ReloadOutcome::Rejected(errors) = reload_once(&path, &live) else {
        panic!("expected a rejection");
    };
    assert!(errors.to_string().contains("restart"), "{errors}");
    assert_eq!(live.load().version, v2);
}

#[test]
fn auth_edge_and_slow_client_settings_are_checked_with_their_paths() {
    let text = r#"
[auth]
algorithm = "RS512"
leeway_s = -1
shoe_size = 44

[edge]
max_frame_bytes = 10
max_lag_records = 5000
history_per_partition = 1000
heartbeat = 5

[instruments.EURUSD]
tick = "0.00001"
pip = "0.0001"
precision = 5

[channels.vip]
markup = { unit = "pips", bid = "0.1", ask = "0.1" }
slow_client = "drop"
"#;
    let errors = Rules::parse(text, "test").unwrap_err().to_string();
    for expected in [
        "auth.algorithm: \"RS512\" is not one of: HS256, RS256, ES256",
        "auth.leeway_s:",
        "auth.shoe_size: unknown key",
        "edge.heartbeat: unknown key",
        "edge.max_frame_bytes:",
        "edge.max_lag_records: 5000 is more than edge.history_per_partition (1000)",
        "channels.vip.slow_client: \"drop\" is not one of: conflate, close",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in:\n{errors}"
        );
    }
    let rs = "[auth]\nalgorithm = \"ES256\"\n\n[instruments.EURUSD]\ntick = \"0.00001\"\npip = \"0.0001\"\nprecision = 5\n\n[channels.vip]\nmarkup = { unit = \"pips\", bid = \"0.1\", ask = \"0.1\" }\n";
    let errors = Rules::parse(rs, "test").unwrap_err().to_string();
    assert!(errors.contains("auth.public_key_file: missing"), "{errors}");
}
