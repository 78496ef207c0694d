//! The stall watchdog: an OS thread that watches a runtime's workers.

use std::collections::HashMap;
use std::fmt;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use super::instrument::{marks, task_info};
use crate::stamp::{from_stamp, stamp};
use crate::sync::lock_std;

/// Whether a reported stall is still going on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StallState {
    /// The worker is still stuck; `stalled_for` is the time so far.
    Ongoing,
    /// The worker came back; `stalled_for` is the stall's total length.
    Ended,
}

/// One report from a [`Watchdog`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StallReport {
    /// Identifies the stall: every report about one stall (the first, the
    /// follow-ups, the end) carries the same id.
    pub stall: u64,
    /// Ongoing (reported while it happens) or ended.
    pub state: StallState,
    /// The stuck worker thread's name, when known.
    pub worker: Option<String>,
    /// The stuck worker thread, when known.
    pub thread: Option<ThreadId>,
    /// How long so far (ongoing) or in total (ended).
    pub stalled_for: Duration,
    /// The instrumented task being polled there, if any.
    pub task: Option<String>,
    /// Where that task was instrumented.
    pub location: Option<&'static Location<'static>>,
}

impl fmt::Display for StallReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.worker {
            Some(name) => write!(f, "runtime worker {name:?}")?,
            None => write!(f, "runtime")?,
        }
        match self.state {
            StallState::Ongoing => write!(f, " stalled for {:.1?} so far", self.stalled_for)?,
            StallState::Ended => write!(f, " stall ended after {:.1?}", self.stalled_for)?,
        }
        match (&self.task, self.location) {
            (Some(task), Some(location)) => write!(f, " in task {task:?} at {location}"),
            (Some(task), None) => write!(f, " in task {task:?}"),
            _ => write!(f, " in an uninstrumented task"),
        }
    }
}

type Reporter = Arc<dyn Fn(&StallReport) + Send + Sync>;

/// Configures a [`Watchdog`].
pub struct WatchdogBuilder {
    threshold: Duration,
    reporter: Option<Reporter>,
}

impl fmt::Debug for WatchdogBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchdogBuilder")
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

impl WatchdogBuilder {
    /// How long a worker may stay in one poll before it is reported as
    /// stalled (default 100 ms; clamped to 1 ms ..= 1 hour).
    pub fn threshold(mut self, threshold: Duration) -> Self {
        self.threshold = threshold.clamp(Duration::from_millis(1), Duration::from_secs(3600));
        self
    }

    /// Where reports go (default: a `tracing` warning with that feature,
    /// else one line on stderr). A panicking callback is contained.
    pub fn on_report(mut self, report: impl Fn(&StallReport) + Send + Sync + 'static) -> Self {
        self.reporter = Some(Arc::new(report));
        self
    }

    /// Starts watching the runtime behind `handle`: spawns a heartbeat task
    /// on it and a watchdog thread named `colorseam-watchdog` beside it.
    ///
    /// The runtime must have timers enabled (the heartbeat sleeps).
    ///
    /// # Errors
    ///
    /// The OS error if the watchdog thread cannot be started.
    pub fn install(self, handle: &tokio::runtime::Handle) -> std::io::Result<Watchdog> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            reports: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            heartbeat: AtomicU64::new(stamp(Instant::now())),
            heartbeat_thread: std::sync::Mutex::new(None),
        });
        let tick = (self.threshold / 4).max(Duration::from_millis(1));
        let beat = shared.clone();
        let heartbeat = handle.spawn(async move {
            loop {
                beat.heartbeat
                    .store(stamp(Instant::now()), Ordering::Release);
                let current = std::thread::current();
                *lock_std(&beat.heartbeat_thread) =
                    Some((current.id(), current.name().map(str::to_owned)));
                tokio::time::sleep(tick).await;
            }
        });
        let heartbeat_abort = heartbeat.abort_handle();
        let watcher = Watcher {
            shared: shared.clone(),
            runtime: handle.id(),
            threshold: self.threshold,
            tick,
            reporter: self.reporter,
            heartbeat: heartbeat_abort.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("colorseam-watchdog".into())
            .spawn(move || watcher.run())?;
        Ok(Watchdog {
            shared,
            thread: thread.thread().clone(),
            heartbeat: heartbeat_abort,
        })
    }
}

struct Shared {
    stop: AtomicBool,
    reports: AtomicU64,
    stalls: AtomicU64,
    heartbeat: AtomicU64,
    heartbeat_thread: std::sync::Mutex<Option<(ThreadId, Option<String>)>>,
}

/// Watches one tokio runtime from its own OS thread and reports stalls
/// while they happen. See the [module docs](super).
///
/// Dropping it stops the watching without waiting for the thread, so a
/// report already being made may still reach the callback just after.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use colorseam::detect::{Watchdog, instrument};
///
/// let rt = tokio::runtime::Runtime::new().unwrap();
/// let (tx, rx) = std::sync::mpsc::channel();
/// let _watchdog = Watchdog::builder()
///     .threshold(Duration::from_millis(50))
///     .on_report(move |report| { let _ = tx.send(report.to_string()); })
///     .install(rt.handle())
///     .unwrap();
/// rt.block_on(async {
///     tokio::spawn(instrument(async {
///         std::thread::sleep(Duration::from_millis(300)); // the bug
///     }, "export-csv")).await.unwrap();
/// });
/// let first = rx.recv_timeout(Duration::from_secs(5)).unwrap();
/// assert!(first.contains("so far in task \"export-csv\""), "{first}");
/// ```
pub struct Watchdog {
    shared: Arc<Shared>,
    thread: std::thread::Thread,
    heartbeat: tokio::task::AbortHandle,
}

impl Watchdog {
    /// Starts configuring a watchdog.
    pub fn builder() -> WatchdogBuilder {
        WatchdogBuilder {
            threshold: Duration::from_millis(100),
            reporter: None,
        }
    }

    /// How many reports it has made: first reports, follow-ups and ends
    /// (a counter).
    pub fn reports(&self) -> u64 {
        self.shared.reports.load(Ordering::Relaxed)
    }

    /// How many distinct stalls it has seen (a counter).
    pub fn stalls(&self) -> u64 {
        self.shared.stalls.load(Ordering::Relaxed)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.heartbeat.abort();
        self.thread.unpark();
    }
}

impl fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watchdog")
            .field("reports", &self.reports())
            .finish_non_exhaustive()
    }
}

/// A stall being followed.
struct Tracked {
    id: u64,
    since: u64,
    next_report: Duration,
    worker: Option<String>,
    thread: Option<ThreadId>,
    task: Option<String>,
    location: Option<&'static Location<'static>>,
}

struct Watcher {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Id,
    threshold: Duration,
    tick: Duration,
    reporter: Option<Reporter>,
    heartbeat: tokio::task::AbortHandle,
}

impl Watcher {
    fn run(self) {
        let mut polls: HashMap<ThreadId, Tracked> = HashMap::new();
        let mut runtime_stall: Option<Tracked> = None;
        while !self.shared.stop.load(Ordering::Acquire) {
            std::thread::park_timeout(self.tick);
            if self.shared.stop.load(Ordering::Acquire) {
                break;
            }
            let now = Instant::now();
            self.watch_polls(now, &mut polls);
            self.watch_heartbeat(now, &mut runtime_stall, !polls.is_empty());
        }
    }

    /// Stalls inside instrumented polls: exact worker and task.
    fn watch_polls(&self, now: Instant, polls: &mut HashMap<ThreadId, Tracked>) {
        let marks: Vec<_> = marks()
            .into_iter()
            .filter(|m| m.runtime == Some(self.runtime))
            .collect();
        for mark in &marks {
            let since = mark.polling_since.load(Ordering::Acquire);
            if let Some(tracked) = polls.get(&mark.thread) {
                if tracked.since != since {
                    let tracked = polls.remove(&mark.thread).expect("just looked it up");
                    let total = if mark.last_since.load(Ordering::Relaxed) == tracked.since {
                        Duration::from_nanos(mark.last_nanos.load(Ordering::Relaxed))
                    } else {
                        now.saturating_duration_since(from_stamp(tracked.since))
                    };
                    self.report(&tracked, StallState::Ended, total);
                }
            }
            if since == 0 {
                continue;
            }
            let so_far = now.saturating_duration_since(from_stamp(since));
            match polls.get_mut(&mark.thread) {
                Some(tracked) if so_far >= tracked.next_report => {
                    tracked.next_report = so_far.saturating_mul(2);
                    let tracked = &*tracked;
                    self.report(tracked, StallState::Ongoing, so_far);
                }
                Some(_) => {}
                None if so_far >= self.threshold => {
                    let info = task_info(mark.task.load(Ordering::Relaxed));
                    let tracked = Tracked {
                        id: self.shared.stalls.fetch_add(1, Ordering::Relaxed) + 1,
                        since,
                        next_report: so_far.saturating_mul(2),
                        worker: mark.name.clone(),
                        thread: Some(mark.thread),
                        task: info.as_ref().map(|i| i.name.clone()),
                        location: info.as_ref().map(|i| i.location),
                    };
                    self.report(&tracked, StallState::Ongoing, so_far);
                    polls.insert(mark.thread, tracked);
                }
                None => {}
            }
        }
        // Threads that went away mid-stall.
        polls.retain(|thread, _| marks.iter().any(|m| m.thread == *thread));
    }

    /// Stalls the heartbeat reveals: the runtime is not scheduling.
    fn watch_heartbeat(&self, now: Instant, stall: &mut Option<Tracked>, explained: bool) {
        if self.heartbeat.is_finished() {
            return; // no timer on this runtime: nothing to go by
        }
        let beat = self.shared.heartbeat.load(Ordering::Acquire);
        let late = now.saturating_duration_since(from_stamp(beat));
        let limit = self.threshold.saturating_add(self.tick);
        match stall {
            Some(tracked) if tracked.since != beat => {
                let total = from_stamp(beat).saturating_duration_since(from_stamp(tracked.since));
                self.report(tracked, StallState::Ended, total);
                *stall = None;
            }
            Some(tracked) if late >= tracked.next_report => {
                tracked.next_report = late.saturating_mul(2);
                let tracked = &*tracked;
                self.report(tracked, StallState::Ongoing, late);
            }
            Some(_) => {}
            None if late >= limit && !explained => {
                let (thread, worker) = lock_std(&self.shared.heartbeat_thread)
                    .clone()
                    .map_or((None, None), |(id, name)| (Some(id), name));
                let tracked = Tracked {
                    id: self.shared.stalls.fetch_add(1, Ordering::Relaxed) + 1,
                    since: beat,
                    next_report: late.saturating_mul(2),
                    worker,
                    thread,
                    task: None,
                    location: None,
                };
                self.report(&tracked, StallState::Ongoing, late);
                *stall = Some(tracked);
            }
            None => {}
        }
    }

    fn report(&self, tracked: &Tracked, state: StallState, stalled_for: Duration) {
        self.shared.reports.fetch_add(1, Ordering::Relaxed);
        let report = StallReport {
            stall: tracked.id,
            state,
            worker: tracked.worker.clone(),
            thread: tracked.thread,
            stalled_for,
            task: tracked.task.clone(),
            location: tracked.location,
        };
        #[cfg(feature = "tracing")]
        match state {
            StallState::Ongoing => tracing::warn!(
                worker = ?report.worker,
                task = ?report.task,
                ?stalled_for,
                "colorseam watchdog: {report}"
            ),
            StallState::Ended => tracing::info!(
                worker = ?report.worker,
                task = ?report.task,
                ?stalled_for,
                "colorseam watchdog: {report}"
            ),
        }
        match &self.reporter {
            Some(reporter) => {
                let _ =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reporter(&report)));
            }
            // With `tracing`, the event above is the default report.
            None if cfg!(not(feature = "tracing")) => eprintln!("colorseam watchdog: {report}"),
            None => {}
        }
    }
}
