//! Hot reload of `channels.toml`: a file watch and SIGHUP both trigger a re-read; a valid new file
//! replaces the live [`Rules`] atomically, an invalid one is rejected with every error logged and
//! the old rules stay live.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::errors::{ConfigError, ConfigErrors};
use super::rules::Rules;
use crate::telemetry;

/// How often the file is re-read when file events may not arrive.
const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// The live rules: one writer (the reloader), lock-free readers.
pub type LiveRules = Arc<ArcSwap<Rules>>;

/// What one reload attempt did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// New rules are live.
    Applied { version: String },
    /// The file's content hash equals the live version: nothing to do.
    Unchanged,
    /// The file was invalid (or changed settings that need a restart); the old rules stay live.
    Rejected(ConfigErrors),
}

/// Re-reads `path` once and swaps the rules in when the file is valid.
pub fn reload_once(path: &Path, live: &LiveRules) -> ReloadOutcome {
    let current = live.load();
    let outcome = match Rules::load(path) {
        Err(errors) => ReloadOutcome::Rejected(errors),
        Ok(new) if new.version == current.version => ReloadOutcome::Unchanged,
        Ok(new) if new.kafka != current.kafka => ReloadOutcome::Rejected(ConfigErrors {
            source_name: path.display().to_string(),
            errors: vec![ConfigError {
                path: "kafka".into(),
                message: "Kafka topic settings cannot change while running: restart to apply"
                    .into(),
            }],
        }),
        Ok(new) if new.auth != current.auth || new.edge != current.edge => {
            ReloadOutcome::Rejected(ConfigErrors {
                source_name: path.display().to_string(),
                errors: vec![ConfigError {
                    path: if new.auth != current.auth {
                        "auth"
                    } else {
                        "edge"
                    }
                    .into(),
                    message: "the [auth] and [edge] tables cannot change while running: \
                              restart to apply"
                        .into(),
                }],
            })
        }
        Ok(new) => {
            let version = new.version.clone();
            live.store(Arc::new(new));
            ReloadOutcome::Applied { version }
        }
    };
    match &outcome {
        ReloadOutcome::Applied { version } => {
            info!(from = %current.version, to = %version, "channels.toml reloaded");
            telemetry::config_reload("applied");
        }
        ReloadOutcome::Unchanged => {}
        ReloadOutcome::Rejected(errors) => {
            error!(
                version = %current.version,
                "channels.toml reload rejected; the previous rules stay live\n{errors}"
            );
            telemetry::config_reload("rejected");
        }
    }
    outcome
}

/// Reloads on SIGHUP and, when `watch_file`, on every change of `path`, until `shutdown`.
pub async fn watch(path: PathBuf, live: LiveRules, watch_file: bool, shutdown: CancellationToken) {
    let (tx, mut rx) = mpsc::channel::<()>(16);
    let file_name = path.file_name().map(|n| n.to_os_string());
    let notify_tx = tx.clone();
    // Watch the directory: editors and config managers replace files by rename.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res {
            let ours = event
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_os_string()) == file_name);
            if ours && !event.kind.is_access() {
                let _ = notify_tx.try_send(());
            }
        }
    });
    let _watcher = match watcher {
        Ok(_) if !watch_file => None,
        Ok(mut w) => match w.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                warn!(dir = %dir.display(), "cannot watch channels.toml ({e}); SIGHUP still reloads");
                None
            }
        },
        Err(e) => {
            warn!("cannot start a file watcher ({e}); SIGHUP still reloads");
            None
        }
    };

    #[cfg(unix)]
    {
        let hup_tx = tx.clone();
        let token = shutdown.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                warn!("cannot listen for SIGHUP");
                return;
            };
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    got = hup.recv() => {
                        if got.is_none() { return; }
                        info!("SIGHUP: reloading channels.toml");
                        let _ = hup_tx.send(()).await;
                    }
                }
            }
        });
    }
    let tx_poll = tx;

    // Some mounts never deliver file events (a single-file bind mount, a Kubernetes ConfigMap
    // swapping a symlink): a periodic check catches those. An unchanged file costs one read.
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.tick().await;
    let mut last_fingerprint = std::fs::read(&path).ok().map(|b| Sha256::digest(&b));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = poll.tick(), if watch_file => {
                // Only a file whose bytes changed since the last look is worth a reload (and a
                // rejected file is then reported once, not every few seconds).
                let fingerprint = std::fs::read(&path).ok().map(|b| Sha256::digest(&b));
                if fingerprint != last_fingerprint {
                    last_fingerprint = fingerprint;
                    let _ = tx_poll.try_send(());
                }
            }
            got = rx.recv() => {
                if got.is_none() { return; }
                // Debounce: an editor's save is several events; read once they settle.
                tokio::time::sleep(Duration::from_millis(200)).await;
                while rx.try_recv().is_ok() {}
                let path = path.clone();
                let live = live.clone();
                let _ = tokio::task::spawn_blocking(move || reload_once(&path, &live)).await;
            }
        }
    }
}
