//! A test helper that fails a test when the runtime's workers block.

use std::fmt;
use std::panic::Location;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::watchdog::{StallReport, StallState, Watchdog};
use crate::sync::lock_std;

/// Watches the current runtime for as long as it lives and fails the test
/// if any worker blocked longer than the threshold meanwhile. Returned by
/// [`deny_blocking`].
///
/// Dropped (at the end of the test's body), it panics with every stall it
/// saw, unless the thread is already panicking. [`finish`](Self::finish)
/// returns them instead, for a test that expects blocking, and
/// [`check`](Self::check) looks without stopping.
#[must_use = "blocking is denied only while the guard lives"]
pub struct DenyBlocking {
    watchdog: Option<Watchdog>,
    seen: Arc<Mutex<Vec<StallReport>>>,
    threshold: Duration,
    location: &'static Location<'static>,
}

/// Workers blocked while blocking was denied: one report per stall (the
/// most telling one seen: the latest that says what the thread waits on).
///
/// `Display` is one line naming each stall's worker, length, task and call
/// site, and system call with its socket's peer or file's path.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HiddenBlocking {
    /// One report per stall, in the order the stalls began.
    pub stalls: Vec<StallReport>,
    /// The threshold blocking was denied over.
    pub threshold: Duration,
    /// Where [`deny_blocking`] was called.
    pub location: &'static Location<'static>,
}

impl fmt::Display for HiddenBlocking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.stalls.len();
        write!(
            f,
            "{n} runtime stall{} over {:?} while blocking was denied (at {})",
            if n == 1 { "" } else { "s" },
            self.threshold,
            self.location
        )?;
        for (i, stall) in self.stalls.iter().enumerate() {
            write!(f, "{} {stall}", if i == 0 { ":" } else { ";" })?;
        }
        Ok(())
    }
}

impl std::error::Error for HiddenBlocking {}

/// Makes the current test fail if any worker of the current runtime blocks
/// longer than `threshold` (10 ms is a good value) while the returned guard
/// lives. For auditing libraries that "say async but block inside": run
/// their async API under it in your own tests.
///
/// It installs a [`Watchdog`] on the current runtime (either flavor) and
/// collects its reports of ongoing stalls; the failure names, per stall,
/// the worker, how long it was blocked, the instrumented task and its call
/// site if any, and (Linux) the system call the thread was blocked in,
/// with its socket's peer or file's path, or that it was spinning on a
/// CPU.
///
/// # Panics
///
/// Outside a tokio runtime, or if the watchdog's thread cannot start. The
/// guard panics when dropped if blocking was seen (see [`DenyBlocking`]).
///
/// # Caveats
///
/// The watchdog looks when a poll it saw running, or its unanswered
/// heartbeat, crosses the threshold, and otherwise once per threshold; so
/// a block is caught if it lasts past the threshold and is still going on
/// when the watchdog's thread gets a CPU. A block in a task nobody
/// instrumented, on a multi-thread runtime whose other workers are free,
/// is seen through tokio's per-worker counts, which the watchdog reads
/// once per threshold: there a block must last up to twice the threshold
/// to be caught for sure. On a machine loaded enough to hold a runnable
/// thread off its CPU for the threshold, a worker merely waiting for a CPU
/// reads as stalled (reported as running). On a multi-thread runtime, a worker
/// that runs polls averaging over 1/61 of the threshold without parking is
/// reported too (see the [module docs](super#caveats)). Drop the guard
/// before the test's body returns (as a local of an `async fn` test is):
/// a current-thread runtime left undriven reads as stalled.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let guard = colorseam::detect::deny_blocking(Duration::from_millis(10));
/// tokio::time::sleep(Duration::from_millis(30)).await; // fine: it yields
/// assert!(guard.finish().is_ok());
///
/// let guard = colorseam::detect::deny_blocking(Duration::from_millis(10));
/// std::thread::sleep(Duration::from_millis(200)); // hidden blocking
/// let blocked = guard.finish().unwrap_err();
/// assert!(blocked.to_string().contains("while blocking was denied"), "{blocked}");
/// # }
/// ```
#[track_caller]
pub fn deny_blocking(threshold: Duration) -> DenyBlocking {
    let location = Location::caller();
    let handle = tokio::runtime::Handle::try_current()
        .unwrap_or_else(|_| panic!("deny_blocking (at {location}) needs a tokio runtime"));
    let seen: Arc<Mutex<Vec<StallReport>>> = Arc::default();
    let sink = seen.clone();
    let watchdog = Watchdog::builder()
        .threshold(threshold)
        .on_report(move |report| {
            if report.state == StallState::Ongoing {
                lock_std(&sink).push(report.clone());
            }
        })
        .install(&handle)
        .unwrap_or_else(|e| panic!("deny_blocking (at {location}): no watchdog thread: {e}"));
    DenyBlocking {
        watchdog: Some(watchdog),
        seen,
        threshold,
        location,
    }
}

impl DenyBlocking {
    /// The stalls seen so far, without stopping the watching.
    ///
    /// # Errors
    ///
    /// [`HiddenBlocking`] if any worker blocked longer than the threshold.
    pub fn check(&self) -> Result<(), HiddenBlocking> {
        let reports = lock_std(&self.seen).clone();
        if reports.is_empty() {
            return Ok(());
        }
        // One per stall: the latest report that says what the thread
        // waits on, else the latest.
        let mut stalls: Vec<StallReport> = Vec::new();
        for report in reports {
            match stalls.iter_mut().find(|s| s.stall == report.stall) {
                Some(kept) if report.wait.is_some() || kept.wait.is_none() => *kept = report,
                Some(_) => {}
                None => stalls.push(report),
            }
        }
        Err(HiddenBlocking {
            stalls,
            threshold: self.threshold,
            location: self.location,
        })
    }

    /// Stops watching and returns what was seen; the guard then does not
    /// panic.
    ///
    /// # Errors
    ///
    /// [`HiddenBlocking`] if any worker blocked longer than the threshold.
    pub fn finish(mut self) -> Result<(), HiddenBlocking> {
        self.watchdog = None;
        let result = self.check();
        lock_std(&self.seen).clear();
        result
    }
}

impl Drop for DenyBlocking {
    fn drop(&mut self) {
        self.watchdog = None;
        if std::thread::panicking() {
            return; // the test already fails; a second panic would abort
        }
        if let Err(blocked) = self.check() {
            panic!("{blocked}");
        }
    }
}

impl fmt::Debug for DenyBlocking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DenyBlocking")
            .field("threshold", &self.threshold)
            .field("location", &format_args!("{}", self.location))
            .finish_non_exhaustive()
    }
}
