//! pricefeed in the test process: `pricefeed::run` on a port-0 listener, on a runtime of its own,
//! returned once its roles are ready (awaited, not polled). Subprocess tests (`spawn_pricefeed`)
//! remain for what needs a process: signals, kills, the command line, logs.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use pricefeed::config::Rules;
use pricefeed::edge::EdgeOptions;
use pricefeed::http::serve::HttpListener;
use pricefeed::ready::Readiness;
use pricefeed::transform::TransformOptions;
use pricefeed::{ConfigSource, Roles, ServiceError};
use tokio_util::sync::CancellationToken;

use super::{Broker, settings, ws};

/// The roles of an in-process service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Transform and edge, as `pricefeed run`.
    Run,
    Edge,
    Transform,
}

pub struct Service {
    pub http_port: u16,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<Result<(), ServiceError>>>,
}

/// One metrics recorder per test process (the recorder is global): every in-process service
/// of a test binary reports into it, so metric checks there are lower bounds.
fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| pricefeed::telemetry::install_metrics().expect("metrics recorder"))
        .clone()
}

impl Service {
    /// Starts `role` with `config` against `broker`; returns once it is ready (60 s at most).
    pub fn start(broker: &Broker, config: &Path, role: Role) -> Service {
        Service::start_with(broker, config, role, |_| {})
    }

    /// [`Service::start`], with the edge's options adjusted by `edge_options`.
    pub fn start_with(
        broker: &Broker,
        config: &Path,
        role: Role,
        edge_options: impl FnOnce(&mut EdgeOptions),
    ) -> Service {
        let rules = Rules::load(config).expect("the test's channels.toml");
        let kafka = settings(broker);
        let transform = matches!(role, Role::Run | Role::Transform).then(|| TransformOptions {
            kafka: kafka.clone(),
            // Tests share the broker: each test's workers form a group of their own.
            group_id: format!("{}.pricefeed-transform", rules.kafka.raw_topic),
            only_channel: None,
            commit_interval: None,
        });
        let edge = matches!(role, Role::Run | Role::Edge).then(|| EdgeOptions {
            kafka: kafka.clone(),
            config_dir: config.parent().unwrap().to_path_buf(),
            channels: None,
            node_id: None,
            demo: false,
            hs256_secret: Some(ws::SECRET.to_string()),
            api_keys: None,
            stall_fault: None,
        });
        let mut edge = edge;
        if let Some(e) = edge.as_mut() {
            edge_options(e);
        }
        let (waits_transform, waits_edge) = (transform.is_some(), edge.is_some());
        let roles = Roles { transform, edge };
        let source = ConfigSource {
            path: config.to_path_buf(),
            watch: false,
        };
        let shutdown = CancellationToken::new();
        let readiness = Readiness::default();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (token, ready) = (shutdown.clone(), readiness.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let port = tcp.local_addr().unwrap().port();
                let listener = HttpListener { tcp, tls: None };
                let service = pricefeed::run(
                    roles,
                    rules,
                    source,
                    listener,
                    Some(metrics()),
                    ready.clone(),
                    token,
                );
                tokio::pin!(service);
                tokio::select! {
                    r = &mut service => return r,
                    _ = ready.wait(waits_transform, waits_edge) => {}
                }
                let _ = started_tx.send(port);
                service.await
            })
        });
        let http_port = match started_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(port) => port,
            Err(_) => {
                shutdown.cancel();
                let outcome = thread.join();
                panic!("the service did not get ready within 60 s: {outcome:?}");
            }
        };
        Service {
            http_port,
            shutdown,
            thread: Some(thread),
        }
    }

    /// Shuts down as on SIGTERM and returns how `run` ended.
    pub fn stop(mut self) -> Result<(), ServiceError> {
        self.shutdown.cancel();
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("the service thread")
    }

    /// The Prometheus text of the test process.
    pub fn metrics(&self) -> String {
        metrics().render()
    }

    /// The value of one metric line (exact name with labels), if present.
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.metrics().lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
