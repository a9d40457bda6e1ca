//! Readiness that can be awaited: `/readyz` reads the flags, and whoever starts the service (a
//! test, an embedding program) can wait for them instead of polling.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// A flag that wakes those waiting on it when it changes.
#[derive(Default)]
pub struct ReadyFlag {
    set: AtomicBool,
    changed: Notify,
}

impl ReadyFlag {
    pub fn set(&self, ready: bool) {
        if self.set.swap(ready, Ordering::AcqRel) != ready {
            self.changed.notify_waiters();
        }
    }

    pub fn get(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Returns once the flag is set.
    pub async fn wait(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a change in between is not missed.
            changed.as_mut().enable();
            if self.get() {
                return;
            }
            changed.await;
        }
    }
}

/// The readiness of a process's roles: the transform has its partitions; the edge has read
/// every channel topic up to its end.
#[derive(Clone, Default)]
pub struct Readiness {
    pub transform: Arc<ReadyFlag>,
    pub edge: Arc<ReadyFlag>,
}

impl Readiness {
    /// Returns once each role asked for is ready.
    pub async fn wait(&self, transform: bool, edge: bool) {
        if transform {
            self.transform.wait().await;
        }
        if edge {
            self.edge.wait().await;
        }
    }
}
