//! Scheduler lag: how late a periodic tick runs.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::{Histogram, Latency};

/// Measures a runtime's scheduler lag: a task wakes every `period` and
/// records how late it woke. A healthy runtime is late by timer resolution
/// (about a millisecond). A current-thread runtime that blocks is late by as
/// long as it was blocked; a multi-thread runtime with one blocked worker
/// may not be late at all (the other workers run the tick), which is why
/// stalls are the [`Watchdog`](super::Watchdog)'s job, not this one's.
///
/// Figures accumulate from the start; start a new monitor for a new window.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use colorseam::detect::LagMonitor;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let lag = LagMonitor::start(&tokio::runtime::Handle::current(), Duration::from_millis(1));
/// tokio::time::sleep(Duration::from_millis(30)).await;
/// let snapshot = lag.snapshot();
/// assert!(snapshot.count > 0);
/// # }
/// ```
pub struct LagMonitor {
    histogram: Arc<Histogram>,
    task: tokio::task::AbortHandle,
}

impl LagMonitor {
    /// Starts ticking every `period` (clamped to 100 µs ..= 1 hour) on `handle`'s
    /// runtime, which must have timers enabled. Dropping the monitor stops
    /// the ticking.
    pub fn start(handle: &tokio::runtime::Handle, period: Duration) -> Self {
        let period = period.clamp(Duration::from_micros(100), Duration::from_secs(3600));
        let histogram = Arc::new(Histogram::new());
        let record = histogram.clone();
        let task = handle.spawn(async move {
            let mut due = tokio::time::Instant::now() + period;
            loop {
                tokio::time::sleep_until(due).await;
                let now = tokio::time::Instant::now();
                record.record(now.saturating_duration_since(due));
                due = now + period;
            }
        });
        LagMonitor {
            histogram,
            task: task.abort_handle(),
        }
    }

    /// Lateness so far: count, p50, p90, p99 and max.
    pub fn snapshot(&self) -> Latency {
        self.histogram.snapshot()
    }
}

impl Drop for LagMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for LagMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LagMonitor")
            .field("lateness", &self.snapshot())
            .finish()
    }
}
