//! TLS (I₇): with --tls-cert/--tls-key the edge speaks wss only; a client that trusts the
//! certificate gets the same protocol and prices, a plaintext client gets nothing.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ws::token;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_tungstenite::tungstenite::Message;

const PARTITIONS: i32 = 3;

fn config(prefix: &str) -> String {
    format!(
        "{}\n{}[channels.vip]\nmarkup = {{ unit = \"pips\", bid = \"0.1\", ask = \"0.1\" }}\n",
        kafka_table(prefix, PARTITIONS),
        instruments(&["EURUSD"])
    )
}

#[test]
fn the_edge_serves_wss_with_the_given_certificate() {
    let broker = Broker::start();
    let prefix = unique_prefix("edge-tls");
    let (dir, path) = write_config(&config(&prefix));
    let raw = format!("{prefix}.raw");
    create_topic(&broker, &raw, PARTITIONS);
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();

    // The transform (plain HTTP, for readiness), then a TLS-only edge.
    let transform = spawn_pricefeed(&broker, &path, &["transform"], dir.path());
    wait_ready(&transform, Duration::from_secs(60));
    let edge = spawn_pricefeed(
        &broker,
        &path,
        &[
            "edge",
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
        dir.path(),
    );
    produce(
        &broker,
        &raw,
        &[(
            0,
            Some("EURUSD"),
            r#"{"symbol":"EURUSD","bid":"1.08412","ask":"1.08431"}"#,
        )],
    );

    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.cert.der().to_vec()))
        .unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let client_config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(client_config));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let port = edge.http_port;
        // Retry until the edge has started (the upgrade answers 503 before).
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut ws = loop {
            let attempt = async {
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
                let tls = connector
                    .connect(ServerName::try_from("localhost").unwrap(), tcp)
                    .await
                    .ok()?;
                tokio_tungstenite::client_async(format!("wss://localhost:{port}/ws"), tls)
                    .await
                    .ok()
            };
            if let Some((ws, _)) = attempt.await {
                break ws;
            }
            assert!(Instant::now() < deadline, "no wss handshake with the edge");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let send = |v: Value| Message::text(v.to_string());
        ws.send(send(json!({"type": "setup", "token": token("tess", &["vip"], None, false, 600), "topics": ["vip"]})))
            .await
            .unwrap();
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !seen.iter().any(|v: &Value| v["type"] == "snapshot" && v["prices"].as_array().is_some_and(|p| !p.is_empty())) {
            assert!(Instant::now() < deadline, "no snapshot with the price over wss: {seen:?}");
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => seen.push(serde_json::from_str(&t).unwrap()),
                Ok(Some(Ok(_))) => {}
                other => {
                    // The snapshot came before the record was transformed: subscribe again.
                    assert!(other.is_err(), "wss stream ended: {other:?}");
                    ws.send(send(json!({"type": "subscribe", "topic": "vip"}))).await.unwrap();
                }
            }
            if seen.last().is_some_and(|v| v["type"] == "snapshot" && v["prices"].as_array().is_some_and(|p| p.is_empty())) {
                tokio::time::sleep(Duration::from_millis(300)).await;
                ws.send(send(json!({"type": "subscribe", "topic": "vip"}))).await.unwrap();
            }
        }
        assert!(seen.iter().any(|v| v["type"] == "ready"));
        let snap = seen.iter().rev().find(|v| v["type"] == "snapshot").unwrap();
        assert_eq!(snap["prices"][0]["data"]["bid"], "1.08411");
        assert_eq!(snap["prices"][0]["seqNo"], 0);

        // Plain HTTP on the TLS port gets no answer.
        let plain = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws")),
        )
        .await;
        assert!(!matches!(plain, Ok(Ok(_))), "a plaintext WebSocket got through");
    });
}
