//! Secrets never reach the logs: with everything at debug level, in text and in JSON logs, a
//! process that verifies good, forged, expired and malformed tokens, takes publishes with right
//! and wrong API keys and a bearer token, hands out demo tokens and runs with a Kafka password
//! writes none of them (nor the token secret, nor a token's signature) to its log. Nor does the
//! command line show a Kafka password, in `--help` or in the error for a malformed option.

mod common;

use std::time::Duration;

use common::ws::{SECRET, Ws, token};
use common::*;
use serde_json::{Value, json};

const PARTITIONS: i32 = 2;
const API_KEY: &str = "ak-live-7f3c9e21b4d64a0f8e5d";
const WRONG_KEY: &str = "ak-wrong-0a1b2c3d4e5f6a7b8c9d";
const KAFKA_PASSWORD: &str = "kafka-pw-e9d8c7b6a5f4";

fn config(prefix: &str) -> String {
    format!(
        "{}\n{}[channels.vip]\nmarkup = {{ unit = \"pips\", bid = \"0.1\", ask = \"0.1\" }}\n",
        kafka_table(prefix, PARTITIONS),
        instruments(&["EURUSD", "GBPUSD"])
    )
}

/// The signature part of a JWT: enough on its own to matter.
fn signature(jwt: &str) -> &str {
    jwt.rsplit('.').next().unwrap()
}

#[test]
fn json_logs_hold_no_token_key_secret_or_password() {
    let lines = exercise_and_read_log(&["--log-format", "json"]);
    for line in &lines {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not a JSON log line: {line}"
        );
    }
}

#[test]
fn text_logs_hold_no_token_key_secret_or_password() {
    // The default format, chosen by the environment variable here.
    let lines = exercise_and_read_log(&[]);
    assert!(
        lines.iter().all(|l| !l.starts_with('{')),
        "JSON lines in a text log"
    );
}

/// Starts a node with `log_args`, does everything that handles a secret, stops it, checks that
/// no secret is in its log, and returns the log's lines.
fn exercise_and_read_log(log_args: &[&str]) -> Vec<String> {
    let broker = Broker::start();
    let prefix = unique_prefix("secrets");
    let (dir, path) = write_config(&config(&prefix));
    let raw = format!("{prefix}.raw");
    create_topic(&broker, &raw, PARTITIONS);
    let keys = format!("backend:{API_KEY}");
    let node = spawn_pricefeed_env(
        &broker,
        &path,
        // A SASL password is not used on a plaintext listener, but it is configured like any.
        &[
            log_args,
            &[
                "--kafka-option",
                &format!("sasl.password={KAFKA_PASSWORD}"),
                // librdkafka's own debug output, its configuration dump included.
                "--kafka-option",
                "debug=conf,generic,security",
                "run",
                "--demo",
            ],
        ]
        .concat(),
        dir.path(),
        &[
            ("RUST_LOG", "debug,librdkafka=debug,rdkafka=debug"),
            ("PRICEFEED_LOG_FORMAT", "text"),
            ("PRICEFEED_API_KEYS", &keys),
        ],
    );
    wait_ready(&node, Duration::from_secs(60));
    let port = node.http_port;
    let good = token("sam", &["vip"], None, true, 600);
    let expired = token("sam", &["vip"], None, false, -600);
    let forged = {
        let mut t = token("sam", &["vip"], None, false, 600);
        t.truncate(t.len() - 4);
        t.push_str("AAAA");
        t
    };
    let mut secrets: Vec<String> = vec![
        SECRET.into(),
        API_KEY.into(),
        WRONG_KEY.into(),
        KAFKA_PASSWORD.into(),
    ];
    for t in [&good, &expired, &forged] {
        secrets.push(t.clone());
        secrets.push(signature(t).to_string());
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = Ws::connect(port, "/ws").await;
        c.setup(&good).await;
        c.send(json!({"type": "subscribe", "topic": "vip"})).await;
        c.expect("subscribed").await;
        // A refresh with the same token, and a publish.
        c.setup(&good).await;
        c.send(
            json!({"type": "publish", "topic": format!("{prefix}.raw"), "messageId": "s1",
            "payload": {"symbol": "EURUSD", "bid": "1.1", "ask": "1.2"}}),
        )
        .await;
        c.expect("ack").await;
        for bad in [&expired, &forged] {
            let mut x = Ws::connect(port, "/ws").await;
            x.send(json!({"type": "setup", "token": bad})).await;
            x.expect_error("unauthorized").await;
        }
        // A token where a string is expected, and in an unknown field: parse errors.
        let mut y = Ws::connect(port, "/ws").await;
        y.send(json!({"type": "setup", "token": [good.clone()]}))
            .await;
        y.expect_error("bad_request").await;
        y.send(json!({"type": "setup", "token": good.clone(), "tokne": good.clone()}))
            .await;
        y.expect_error("bad_request").await;
        y.send_text(&format!("{{\"type\":\"setup\",\"token\":\"{good}"))
            .await;
        y.expect_error("bad_request").await;
    });
    let body =
        json!({"messageId": "h1", "payload": {"symbol": "EURUSD", "bid": "1.1", "ask": "1.2"}})
            .to_string();
    for headers in [
        vec![("X-Api-Key", API_KEY.to_string())],
        vec![("X-Api-Key", WRONG_KEY.to_string())],
        vec![("Authorization", format!("Bearer {API_KEY}"))],
        vec![("Authorization", format!("Bearer {good}"))],
        vec![("Authorization", format!("Bearer {forged}"))],
    ] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _) = http_post(port, "/publish", &h, &body);
        assert!(status < 500, "{headers:?}: {status}");
    }
    let demo: Value = serde_json::from_str(&http_get(port, "/demo/session").unwrap()).unwrap();
    for c in demo["channels"].as_array().unwrap() {
        let t = c["token"].as_str().unwrap();
        secrets.push(t.to_string());
        secrets.push(signature(t).to_string());
    }
    node.signal("TERM");
    std::thread::sleep(Duration::from_secs(2));

    let lines: Vec<String> = node.log_text().lines().map(String::from).collect();
    // librdkafka's configuration dump lists the password property (with its value hidden).
    assert!(
        lines.iter().any(|l| l.contains("sasl.password")),
        "no configuration dump in the log ({} lines)",
        lines.len()
    );
    for s in &secrets {
        if let Some(line) = lines.iter().find(|l| l.contains(s.as_str())) {
            panic!("a secret ({}…) is in the log: {line}", &s[..6]);
        }
    }
    lines
}

#[test]
fn the_command_line_never_shows_a_kafka_option_value() {
    let run = |args: &[&str], env_options: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pricefeed"));
        cmd.args(args).env_remove("PRICEFEED_KAFKA_OPTIONS");
        if let Some(v) = env_options {
            cmd.env("PRICEFEED_KAFKA_OPTIONS", v);
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !text.contains(KAFKA_PASSWORD),
            "{args:?} shows the password:\n{text}"
        );
        (out.status.code(), text)
    };
    let good = format!("sasl.password={KAFKA_PASSWORD}");
    // --help lists the variable, not its value.
    let (code, text) = run(&["--help"], Some(&good));
    assert_eq!(code, Some(0));
    assert!(text.contains("PRICEFEED_KAFKA_OPTIONS"), "{text}");
    // A typo (':' for '=') before the password, on the flag and in the variable: a usage error
    // that names the flag and quotes nothing.
    let typo = format!("security.protocol:SASL_SSL,sasl.password={KAFKA_PASSWORD}");
    for (args, env) in [
        (vec!["--kafka-option", typo.as_str(), "check-config"], None),
        (vec!["check-config"], Some(typo.as_str())),
    ] {
        let (code, text) = run(&args, env);
        assert_eq!(code, Some(2), "{text}");
        assert!(text.contains("--kafka-option"), "{text}");
    }
    // The same typo after a valid option glues the password onto that option's value, which
    // Kafka's client refuses, quoting it: the error names the option only.
    let glued = format!("security.protocol=SASL_SSL,sasl.password:{KAFKA_PASSWORD}");
    let (code, text) = run(
        &[
            "--brokers",
            "127.0.0.1:1",
            "--kafka-option",
            &glued,
            "tail",
            "prices.vip",
        ],
        None,
    );
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("security.protocol"), "{text}");
}
