//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

/// OS threads of this process whose name starts with `prefix`, read from
/// /proc so the figure does not depend on the pool's own bookkeeping.
pub fn os_threads_named(prefix: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| name.trim_end().starts_with(prefix))
        .count()
}

/// Polls `condition` every 5 ms until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Async version of [`eventually`].
pub async fn eventually_async(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A gate a job waits on, opened from the test: lets tests hold jobs
/// "running" for exactly as long as they need, without sleeps.
#[derive(Clone)]
pub struct Gate {
    inner: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl Gate {
    pub fn new() -> Self {
        Gate {
            inner: Default::default(),
        }
    }

    pub fn open(&self) {
        let (lock, cv) = &*self.inner;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }

    /// Blocks until opened, or until `limit` passes (so a failing test
    /// cannot leave threads stuck forever).
    pub fn wait(&self, limit: Duration) {
        let (lock, cv) = &*self.inner;
        let guard = lock.lock().unwrap();
        let _ = cv.wait_timeout_while(guard, limit, |open| !*open).unwrap();
    }
}

/// Fills `pool` with `n` jobs that block until `gate` opens (at most 20 s),
/// returning their futures: the usual way to make a pool busy or full.
pub fn hold(pool: &colorseam::BlockingPool, n: usize, gate: &Gate) -> Vec<colorseam::Offload<()>> {
    (0..n)
        .map(|_| {
            let gate = gate.clone();
            pool.offload(move || gate.wait(Duration::from_secs(20)))
        })
        .collect()
}

/// Opens `gate` and waits for every job [`hold`] started; each must succeed.
pub async fn release(gate: &Gate, held: Vec<colorseam::Offload<()>>) {
    gate.open();
    for job in held {
        job.await.unwrap();
    }
}
