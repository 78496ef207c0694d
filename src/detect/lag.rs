//! Scheduler lag: how long a runtime takes to run a task that was woken.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;

use crate::metrics::{Histogram, Latency};
use crate::stamp::stamp_now;

/// Measures a runtime's scheduler lag: every `period`, a thread of its own
/// wakes a task on the runtime and the task records how long it took to be
/// polled. A healthy runtime runs it within microseconds. A current-thread
/// runtime that blocks is late by as long as it was blocked; a multi-thread
/// runtime with one blocked worker may not be late at all (the other
/// workers run the task), which is why stalls are the
/// [`Watchdog`](super::Watchdog)'s job, not this one's.
///
/// No tokio timer is involved, so it works on a runtime without timers and
/// with a paused clock, and measures real time either way. While the
/// runtime has not run the last wake, no new one is sent: a long block is
/// one long sample, not one per period.
///
/// Figures accumulate from the start; start a new monitor for a new window.
///
/// # Caveats
///
/// A current-thread runtime that nobody drives (between two `block_on`
/// calls) is late by the whole gap: tokio does not say whether anyone is
/// driving it. Start the monitor inside the `block_on` it measures.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use colorseam::detect::LagMonitor;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let lag = LagMonitor::start(&tokio::runtime::Handle::current(), Duration::from_millis(1))
///     .expect("the lag thread starts");
/// tokio::time::sleep(Duration::from_millis(30)).await;
/// let snapshot = lag.snapshot();
/// assert!(snapshot.count > 0);
/// # }
/// ```
pub struct LagMonitor {
    shared: Arc<Shared>,
    thread: std::thread::Thread,
    task: tokio::task::AbortHandle,
}

struct Shared {
    histogram: Histogram,
    waker: AtomicWaker,
    /// When the outstanding wake was sent (a stamp); 0 when none is.
    woken_at: AtomicU64,
    /// The monitor was dropped, or the task is gone (its runtime shut down).
    stop: AtomicBool,
}

impl LagMonitor {
    /// Starts measuring `handle`'s runtime every `period` (clamped to
    /// 100 µs ..= 1 hour), from a thread named `colorseam-lag`. Dropping
    /// the monitor stops the measuring; the thread exits at its next tick.
    ///
    /// # Errors
    ///
    /// The OS error if the thread cannot be started.
    pub fn start(handle: &tokio::runtime::Handle, period: Duration) -> std::io::Result<Self> {
        let period = period.clamp(Duration::from_micros(100), Duration::from_secs(3600));
        let shared = Arc::new(Shared {
            histogram: Histogram::new(),
            waker: AtomicWaker::new(),
            woken_at: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let task = handle
            .spawn(Tick {
                shared: shared.clone(),
            })
            .abort_handle();
        let ticker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("colorseam-lag".into())
            .spawn(move || tick(&ticker, period));
        match thread {
            Ok(thread) => Ok(LagMonitor {
                shared,
                thread: thread.thread().clone(),
                task,
            }),
            Err(error) => {
                task.abort();
                Err(error)
            }
        }
    }

    /// Lateness so far: count, p50, p90, p99 and max.
    pub fn snapshot(&self) -> Latency {
        self.shared.histogram.snapshot()
    }
}

/// The monitor's thread: a wake every `period`, unless the last one is
/// still waiting to be run.
fn tick(shared: &Shared, period: Duration) {
    while !shared.stop.load(Ordering::Acquire) {
        std::thread::park_timeout(period);
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        if shared.woken_at.load(Ordering::Acquire) == 0 {
            shared.woken_at.store(stamp_now(), Ordering::Release);
            shared.waker.wake();
        }
    }
}

/// The task on the measured runtime.
struct Tick {
    shared: Arc<Shared>,
}

impl Future for Tick {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let shared = &self.shared;
        shared.waker.register(cx.waker());
        let woken_at = shared.woken_at.load(Ordering::Acquire);
        if woken_at != 0 {
            let now = stamp_now();
            shared
                .histogram
                .record(Duration::from_nanos(now.saturating_sub(woken_at)));
            shared.woken_at.store(0, Ordering::Release);
        }
        Poll::Pending
    }
}

impl Drop for Tick {
    fn drop(&mut self) {
        // Its runtime shut down (or the monitor aborted it): the thread has
        // nothing left to wake.
        self.shared.stop.store(true, Ordering::Release);
    }
}

impl Drop for LagMonitor {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.task.abort();
        self.thread.unpark();
    }
}

impl fmt::Debug for LagMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LagMonitor")
            .field("lateness", &self.snapshot())
            .finish_non_exhaustive()
    }
}
