//! Shutdown of an in-process service: every session gets its Close frame, and when `run` has
//! returned, no thread of it is left (the edge's reader and probe threads, the Kafka clients'
//! threads): the supervision tree joins what it starts.

mod common;

use common::service::{Role, Service};
use common::ws::{Ended, Ws, token};
use common::*;

/// The names of this process's threads.
fn threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn shutdown_closes_sessions_and_joins_every_thread() {
    let broker = Broker::start();
    let prefix = unique_prefix("service-shutdown");
    let (_dir, path) = write_config(&format!(
        "{}\n{}[channels.vip]\nmarkup = {{ unit = \"pips\", bid = \"0.1\", ask = \"0.1\" }}\n",
        kafka_table(&prefix, 1),
        instruments(&["EURUSD"])
    ));
    // The edge alone (the channel topic made here): nothing else in `run` takes long to stop,
    // so a thread that is not joined is still running when `run` returns.
    create_topic(&broker, &format!("{prefix}.vip"), 1);
    let service = Service::start(&broker, &path, Role::Edge);
    assert!(
        threads().iter().any(|t| t == "edge-reader") && threads().iter().any(|t| t == "edge-probe"),
        "{:?}",
        threads()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut client = rt.block_on(async {
        let mut c = Ws::connect(service.http_port, "/ws").await;
        c.setup(&token("sam", &["vip"], None, false, 600)).await;
        c
    });
    // The client reads (and answers the Close) while the service stops.
    let closed = rt.spawn(async move {
        let ended = client.until_closed(std::time::Duration::from_secs(5)).await;
        matches!(ended, Ended::Close(Some(1001), _))
    });
    service.stop().expect("a clean shutdown");
    let left: Vec<String> = threads()
        .into_iter()
        .filter(|t| t.starts_with("edge-") || t.starts_with("rdk:"))
        .collect();
    assert!(left.is_empty(), "threads left after run returned: {left:?}");
    assert!(
        rt.block_on(closed).unwrap(),
        "the session got a Close frame with 1001"
    );
}
