//! The stall watchdog: an OS thread that watches a runtime's workers.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;

use super::instrument::{marks, runtime_key, task_info};
use crate::procfs::ThreadWait;
use crate::stamp::{from_stamp, stamp_now};
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
    /// The stuck worker's index in its runtime (as tokio's
    /// `worker_index` and per-worker metrics count them), when known.
    pub worker_index: Option<usize>,
    /// How long so far (ongoing) or in total (ended).
    pub stalled_for: Duration,
    /// The instrumented task being polled there, if any.
    pub task: Option<String>,
    /// Where that task was instrumented.
    pub location: Option<&'static Location<'static>>,
    /// What the stuck thread is waiting on, read from `/proc` when the
    /// report was made: a system call with its socket's peer or its file's
    /// path, or running on a CPU. Only in reports of an ongoing stall, and
    /// only where the OS says (Linux with a readable `/proc`); otherwise,
    /// or when the thread is not known, `None`.
    pub wait: Option<ThreadWait>,
}

impl fmt::Display for StallReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.worker, self.worker_index) {
            (Some(name), _) => write!(f, "runtime worker {name:?}")?,
            (None, Some(index)) => write!(f, "runtime worker #{index}")?,
            (None, None) => write!(f, "runtime")?,
        }
        match self.state {
            StallState::Ongoing => write!(f, " stalled for {:.1?} so far", self.stalled_for)?,
            StallState::Ended => write!(f, " stall ended after {:.1?}", self.stalled_for)?,
        }
        match (&self.task, self.location) {
            (Some(task), Some(location)) => write!(f, " in task {task:?} at {location}")?,
            (Some(task), None) => write!(f, " in task {task:?}")?,
            _ => write!(f, " in an uninstrumented task")?,
        }
        match &self.wait {
            Some(wait) => write!(f, ", {wait}"),
            None => Ok(()),
        }
    }
}

type Reporter = Arc<dyn Fn(&StallReport) + Send + Sync>;

/// Configures a [`Watchdog`].
#[must_use = "a builder does nothing until `install` is called"]
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
    /// else one line on stderr).
    ///
    /// The callback runs on the watchdog's thread with no lock of the
    /// crate held: it may read or drop the [`Watchdog`] itself. A panic in
    /// it is contained (that report is lost, the next ones are made). A
    /// slow callback delays the reports after it, not their figures:
    /// lengths are measured by the watched threads, not by when the
    /// watchdog gets round to looking.
    pub fn on_report(mut self, report: impl Fn(&StallReport) + Send + Sync + 'static) -> Self {
        self.reporter = Some(Arc::new(report));
        self
    }

    /// Starts watching the runtime behind `handle`: spawns a heartbeat task
    /// on it and a watchdog thread named `colorseam-watchdog` beside it.
    ///
    /// The runtime needs no timers and its clock may be paused: the
    /// heartbeat is woken by the watchdog thread, not by a tokio timer.
    ///
    /// # Errors
    ///
    /// The OS error if the watchdog thread cannot be started.
    pub fn install(self, handle: &tokio::runtime::Handle) -> std::io::Result<Watchdog> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            reports: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            heartbeat: Heartbeat::default(),
            workers: Mutex::new(Vec::new()),
        });
        // The first request is made before the task exists, so its first
        // poll answers it: made by the watchdog thread, it could come after
        // that poll and wait for the runtime's next turn.
        shared.heartbeat.requested.store(1, Ordering::Release);
        let asked_at = Instant::now();
        let heartbeat = handle
            .spawn(HeartbeatTask {
                shared: shared.clone(),
                thread: None,
                worker: None,
            })
            .abort_handle();
        // Installed from inside the runtime: it is being driven right now,
        // so a freeze from here on is a stall even before the heartbeat's
        // first answer. From outside, wait for that answer (see `Beat`).
        let driven = tokio::runtime::Handle::try_current().is_ok_and(|h| h.id() == handle.id());
        // (Not a let-chain: the crate's MSRV, 1.85, predates them.)
        if let Some(index) = tokio::runtime::worker_index().filter(|_| driven) {
            // Installed on one of its workers (or in a current-thread
            // runtime's `block_on`): this thread runs it now, so a stall
            // before the heartbeat's first poll is still on a known thread.
            let current = std::thread::current();
            let seen = Seen {
                thread: current.id(),
                name: current.name().map(str::to_owned),
                tid: crate::procfs::current_tid(),
            };
            saw_worker(&shared.workers, index, seen.clone());
            *lock_std(&shared.heartbeat.thread) = Some(seen);
        }
        let tick = (self.threshold / 4).max(Duration::from_millis(1));
        let interval = self.threshold;
        let watcher = Watcher {
            shared: shared.clone(),
            handle: handle.clone(),
            runtime: runtime_key(handle.id()),
            current_thread: handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread,
            threshold: self.threshold,
            tick,
            interval,
            reporter: self.reporter,
        };
        let thread = std::thread::Builder::new()
            .name("colorseam-watchdog".into())
            .spawn(move || watcher.run(driven, asked_at));
        match thread {
            Ok(thread) => Ok(Watchdog {
                shared,
                thread: thread.thread().clone(),
                heartbeat,
            }),
            Err(error) => {
                heartbeat.abort();
                Err(error)
            }
        }
    }
}

struct Shared {
    stop: AtomicBool,
    reports: AtomicU64,
    stalls: AtomicU64,
    heartbeat: Heartbeat,
    /// The thread last seen running each worker of the runtime (by worker
    /// index), from the heartbeat's polls and instrumented polls: which
    /// thread to read `/proc` for when tokio's counts say a worker is
    /// stuck in a task nobody instrumented.
    workers: Mutex<Vec<Option<Seen>>>,
}

/// Records that `seen` runs worker `index`, and no longer any other.
fn saw_worker(workers: &Mutex<Vec<Option<Seen>>>, index: usize, seen: Seen) {
    let mut workers = lock_std(workers);
    for (i, slot) in workers.iter_mut().enumerate() {
        if i != index && slot.as_ref().is_some_and(|s| s.thread == seen.thread) {
            *slot = None;
        }
    }
    if workers.len() <= index {
        workers.resize(index + 1, None);
    }
    workers[index] = Some(seen);
}

/// The heartbeat's side of the conversation: the watchdog asks (bumps
/// `requested` and wakes the task), the task answers when it is polled.
/// How long an answer takes is how long the runtime takes to run a woken
/// task, with no timer involved.
#[derive(Default)]
struct Heartbeat {
    waker: AtomicWaker,
    requested: AtomicU64,
    answered: AtomicU64,
    /// When the last answer was given (a stamp).
    answered_at: AtomicU64,
    /// The thread that gave it, for reports of uninstrumented stalls.
    thread: Mutex<Option<Seen>>,
    /// The task is gone: its runtime shut down, or the watchdog dropped.
    gone: AtomicBool,
}

/// A thread the heartbeat ran on.
#[derive(Clone)]
struct Seen {
    thread: ThreadId,
    name: Option<String>,
    /// Its kernel id, to read what it waits on if it stalls.
    tid: Option<u32>,
}

struct HeartbeatTask {
    shared: Arc<Shared>,
    thread: Option<ThreadId>,
    worker: Option<usize>,
}

impl Future for HeartbeatTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let beat = &self.shared.heartbeat;
        beat.waker.register(cx.waker());
        let requested = beat.requested.load(Ordering::Acquire);
        if beat.answered.load(Ordering::Relaxed) != requested {
            beat.answered_at.store(stamp_now(), Ordering::Relaxed);
            let current = std::thread::current();
            let worker = tokio::runtime::worker_index();
            let changed = self.thread != Some(current.id());
            let moved = changed || self.worker != worker;
            if moved {
                let seen = Seen {
                    thread: current.id(),
                    name: current.name().map(str::to_owned),
                    tid: crate::procfs::current_tid(),
                };
                if let Some(index) = worker {
                    saw_worker(&self.shared.workers, index, seen.clone());
                }
                *lock_std(&beat.thread) = Some(seen);
            }
            // Release: the stamp and thread above are visible with it.
            beat.answered.store(requested, Ordering::Release);
            if moved {
                self.thread = Some(current.id());
                self.worker = worker;
            }
        }
        Poll::Pending
    }
}

impl Drop for HeartbeatTask {
    fn drop(&mut self) {
        self.shared.heartbeat.gone.store(true, Ordering::Release);
    }
}

/// Watches one tokio runtime from its own OS thread and reports stalls
/// while they happen. See the [module docs](super).
///
/// Dropping it stops the watching without waiting for the thread, so a
/// report already being made may still reach the callback just after.
/// When the watched runtime shuts down, the watchdog's thread finishes
/// the stalls it is following and exits.
///
/// # Stalls
///
/// A stall opens when an instrumented poll of the watched runtime has run
/// for the threshold, or when the runtime has not run the woken heartbeat
/// for the threshold and no instrumented poll accounts for it. It is
/// reported at once, again each time its length doubles, and once as
/// ended. A freeze the heartbeat saw first and an instrumented poll named
/// later (or the other way round: a named stall whose worker stays stuck
/// in uninstrumented code) is one stall: one id, one end, whose total runs
/// from the first sign to the runtime's next answer.
///
/// # Caveats
///
/// On a current-thread runtime that nobody is driving (between two
/// `block_on` calls), the heartbeat goes unanswered exactly as if the
/// thread were blocked inside the runtime, and tokio does not say which
/// it is: that gap is reported as an uninstrumented stall. A runtime that
/// has not run at all since the watchdog was installed from outside it,
/// and one whose workers tokio reports parked, are never reported. See the
/// [module docs](super#caveats).
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
    /// (a counter). A report is counted before the callback sees it.
    pub fn reports(&self) -> u64 {
        self.shared.reports.load(Ordering::Relaxed)
    }

    /// How many distinct stalls it has seen (a counter). One freeze is one
    /// stall, even when it is first seen through the heartbeat and then in
    /// an instrumented task, or the other way round.
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
    since: Instant,
    next_report: Duration,
    worker: Option<String>,
    thread: Option<ThreadId>,
    worker_index: Option<usize>,
    /// The stuck thread's kernel id, if known: what it waits on is read
    /// from `/proc` for each ongoing report.
    tid: Option<u32>,
    task: Option<String>,
    location: Option<&'static Location<'static>>,
}

/// A stall seen in an instrumented poll.
struct PollStall {
    /// The poll's start stamp, as its thread's mark showed it.
    polling_since: u64,
    stall: Tracked,
    /// It continues the heartbeat's open stall (same id): see `merge`.
    merged: bool,
}

/// One worker of a multi-thread runtime, as tokio's stable per-worker
/// counts show it.
struct WorkerWatch {
    /// Its park/unpark count and total busy time, as last published.
    counts: (u64, Duration),
    /// When the watchdog first saw those counts.
    since: Instant,
    /// The stall those unmoving counts revealed, if one is open.
    stall: Option<Tracked>,
}

/// The worker index in a mark, if its poll runs on a worker.
fn worker_of(mark: &crate::detect::instrument::ThreadMark) -> Option<usize> {
    match mark.worker.load(Ordering::Relaxed) {
        0 => None,
        w => usize::try_from(w - 1).ok(),
    }
}

/// What the watchdog knows from the heartbeat.
struct Beat {
    /// The last request made, and when.
    requested: u64,
    requested_at: Instant,
    /// Whether the runtime has answered at least once. A runtime installed
    /// on from outside and not driven yet is idle, not stalled.
    answered_ever: bool,
    /// Until when an instrumented poll accounted for the runtime's silence:
    /// the heartbeat counts lateness only from here, so the length of an
    /// instrumented stall (already reported) is not reported again.
    explained_until: Instant,
    /// The stall the heartbeat revealed, if one is open.
    stall: Option<Tracked>,
}

struct Watcher {
    shared: Arc<Shared>,
    handle: tokio::runtime::Handle,
    runtime: u64,
    current_thread: bool,
    threshold: Duration,
    /// How often it looks while a stall is followed (a quarter of the
    /// threshold): follow-ups and ends are reported promptly.
    tick: Duration,
    /// The longest it sleeps while nothing is followed (the threshold):
    /// it wakes earlier when something it saw would cross the threshold
    /// sooner (see `next_look`).
    interval: Duration,
    reporter: Option<Reporter>,
}

/// What one look at the marks found, for the next steps of the look.
struct Looked {
    /// Workers of the runtime on which an instrumented poll is running.
    named: Vec<usize>,
    /// When the earliest running poll not yet a stall will have run for
    /// the threshold.
    crossing: Option<Instant>,
}

impl Watcher {
    fn run(self, driven: bool, asked_at: Instant) {
        let mut beat = Beat {
            requested: 1,
            requested_at: asked_at,
            answered_ever: driven,
            explained_until: asked_at,
            stall: None,
        };
        let mut polls: HashMap<ThreadId, PollStall> = HashMap::new();
        let mut workers: Vec<WorkerWatch> = Vec::new();
        let mut next_look = Instant::now() + self.tick;
        while !self.shared.stop.load(Ordering::Acquire) {
            std::thread::park_timeout(next_look.saturating_duration_since(Instant::now()));
            if self.shared.stop.load(Ordering::Acquire) {
                break;
            }
            let looked = self.watch_polls(&mut polls, &mut beat);
            if self.shared.stop.load(Ordering::Acquire) {
                break; // dropped from a report hook
            }
            let gone = self.shared.heartbeat.gone.load(Ordering::Acquire);
            if gone {
                // The runtime shut down: nothing will answer again, so an
                // open heartbeat stall has no end to report.
                beat.stall = None;
                workers.clear();
                if polls.is_empty() {
                    break;
                }
            }
            let mut crossings = vec![looked.crossing];
            if !gone {
                crossings.push(self.watch_workers(&mut workers, &looked.named, &polls, &beat));
                let workers_stalled = workers.iter().any(|w| w.stall.is_some());
                self.watch_heartbeat(&mut polls, &mut beat, workers_stalled);
                if self.answered(&beat).is_none() && beat.stall.is_none() {
                    let since = beat.requested_at.max(beat.explained_until);
                    crossings.push(Some(since + self.threshold));
                }
            }
            next_look = self.next_look(&polls, &beat, &workers, &crossings);
        }
    }

    /// When to look next. Looking costs a thread wake-up, which on a
    /// virtual machine costs more than the look (35 µs here: 40 a second
    /// alone were 0.14% of a core). So while nothing is followed it sleeps
    /// a whole threshold, unless something it saw (a running instrumented
    /// poll, an unanswered heartbeat, a worker whose counts stopped) would
    /// cross the threshold sooner: then it wakes right then, so a stall
    /// is reported when it crosses the threshold, not a tick later. While
    /// a stall is followed it looks every quarter threshold, for prompt
    /// follow-ups and ends.
    fn next_look(
        &self,
        polls: &HashMap<ThreadId, PollStall>,
        beat: &Beat,
        workers: &[WorkerWatch],
        crossings: &[Option<Instant>],
    ) -> Instant {
        let now = Instant::now();
        let following =
            !polls.is_empty() || beat.stall.is_some() || workers.iter().any(|w| w.stall.is_some());
        let mut next = now + if following { self.tick } else { self.interval };
        for crossing in crossings.iter().flatten() {
            next = next.min(*crossing);
        }
        // Never a busy loop, whatever the clocks say.
        next.max(now + Duration::from_millis(1))
    }

    /// Asks the heartbeat for a new answer.
    fn ask(&self, beat: &mut Beat, now: Instant) {
        beat.requested += 1;
        beat.requested_at = now;
        self.shared
            .heartbeat
            .requested
            .store(beat.requested, Ordering::Release);
        self.shared.heartbeat.waker.wake();
    }

    /// When the runtime answered the last request, if it has.
    fn answered(&self, beat: &Beat) -> Option<Instant> {
        let heartbeat = &self.shared.heartbeat;
        (heartbeat.answered.load(Ordering::Acquire) == beat.requested)
            .then(|| from_stamp(heartbeat.answered_at.load(Ordering::Relaxed)))
    }

    /// Stalls inside instrumented polls: exact worker and task.
    fn watch_polls(&self, polls: &mut HashMap<ThreadId, PollStall>, beat: &mut Beat) -> Looked {
        let marks = marks();
        let mut looked = Looked {
            named: Vec::new(),
            crossing: None,
        };
        // Whether an instrumented poll of this runtime was running, or a
        // stalled one just returned: either answers for the runtime's
        // silence until the end of this look (reports may have been slow).
        let mut explaining = false;
        for mark in &marks {
            let since = mark.polling_since.load(Ordering::Acquire);
            let runtime = mark.runtime.load(Ordering::Relaxed);
            // Each mark's figures are taken after the report before it,
            // which a slow callback may have delayed.
            let now = Instant::now();
            if polls
                .get(&mark.thread)
                .is_some_and(|p| p.polling_since != since)
            {
                let ended = polls.remove(&mark.thread).expect("just looked it up");
                let ended_at = if mark.last_since.load(Ordering::Relaxed) == ended.polling_since {
                    from_stamp(ended.polling_since)
                        + Duration::from_nanos(mark.last_nanos.load(Ordering::Relaxed))
                } else {
                    now
                };
                self.poll_ended(ended, ended_at, beat);
                explaining = true;
            }
            if since == 0 || runtime != self.runtime {
                continue;
            }
            // An instrumented poll of this runtime is running: if the
            // runtime is silent, this poll answers for it (and is reported
            // by name if it goes on).
            explaining = true;
            if let Some(index) = worker_of(mark) {
                self.saw_mark_on_worker(mark, index);
                looked.named.push(index);
            }
            match polls.get_mut(&mark.thread) {
                Some(poll) => {
                    let so_far = now.saturating_duration_since(poll.stall.since);
                    if so_far >= poll.stall.next_report {
                        poll.stall.next_report = so_far.saturating_mul(2);
                        self.report(&poll.stall, StallState::Ongoing, so_far);
                    }
                }
                None => {
                    let started = from_stamp(since);
                    let so_far = now.saturating_duration_since(started);
                    if so_far < self.threshold {
                        let crossing = started + self.threshold;
                        looked.crossing =
                            Some(looked.crossing.map_or(crossing, |c| c.min(crossing)));
                        continue;
                    }
                    let info = task_info(mark.task.load(Ordering::Relaxed));
                    let mut stall = Tracked {
                        id: 0,
                        since: started,
                        next_report: Duration::ZERO,
                        worker: mark.name.clone(),
                        thread: Some(mark.thread),
                        worker_index: worker_of(mark),
                        tid: mark.tid,
                        task: info.as_ref().map(|i| i.name.clone()),
                        location: info.as_ref().map(|i| i.location),
                    };
                    let merged = self.merge(&mut stall, beat);
                    if !merged {
                        stall.id = self.new_stall();
                    }
                    let so_far = now.saturating_duration_since(stall.since);
                    stall.next_report = so_far.saturating_mul(2);
                    self.report(&stall, StallState::Ongoing, so_far);
                    polls.insert(
                        mark.thread,
                        PollStall {
                            polling_since: since,
                            stall,
                            merged,
                        },
                    );
                }
            }
        }
        // Threads that went away mid-stall: the stall ended with them.
        let gone: Vec<ThreadId> = polls
            .keys()
            .filter(|thread| !marks.iter().any(|m| m.thread == **thread))
            .copied()
            .collect();
        for thread in gone {
            let ended = polls.remove(&thread).expect("just listed");
            self.poll_ended(ended, Instant::now(), beat);
            explaining = true;
        }
        if explaining {
            beat.explained_until = Instant::now();
        }
        looked
    }

    /// A poll stall seen while the heartbeat's stall is open is the same
    /// freeze (the runtime has not answered in between: on a multi-thread
    /// runtime, no worker was free to): it takes that stall's id and start,
    /// and the heartbeat stops reporting it.
    fn merge(&self, stall: &mut Tracked, beat: &mut Beat) -> bool {
        let Some(open) = beat.stall.take() else {
            return false;
        };
        stall.id = open.id;
        stall.since = open.since.min(stall.since);
        true
    }

    /// An instrumented poll that stalled has returned at `ended_at`.
    ///
    /// If the runtime has not answered the heartbeat since, the freeze goes
    /// on in uninstrumented code: on a current-thread runtime (or when the
    /// stall was the heartbeat's to begin with) it is the same freeze, so
    /// the heartbeat carries the stall on, and reports its one end.
    fn poll_ended(&self, ended: PollStall, ended_at: Instant, beat: &mut Beat) {
        // (At most one stall is carried: a second one, which only several
        // threads driving one current-thread runtime in turn could make,
        // ends here rather than overwrite the first.)
        let carry_on = (self.current_thread || ended.merged)
            && beat.stall.is_none()
            && self.answered(beat).is_none()
            && !self.shared.heartbeat.gone.load(Ordering::Acquire);
        if carry_on {
            beat.stall = Some(ended.stall);
            return;
        }
        let total = ended_at.saturating_duration_since(ended.stall.since);
        self.report(&ended.stall, StallState::Ended, total);
    }

    /// Stalls the heartbeat reveals: the runtime does not run a woken task.
    fn watch_heartbeat(
        &self,
        polls: &mut HashMap<ThreadId, PollStall>,
        beat: &mut Beat,
        workers_stalled: bool,
    ) {
        let now = Instant::now();
        if let Some(answered_at) = self.answered(beat) {
            beat.answered_ever = true;
            if let Some(stall) = beat.stall.take() {
                let total = answered_at.saturating_duration_since(stall.since);
                self.report(&stall, StallState::Ended, total);
            }
            // A merged poll stall whose runtime answered (another worker
            // ran the heartbeat): the poll stall goes on alone.
            for poll in polls.values_mut() {
                poll.merged = false;
            }
            self.ask(beat, now);
            return;
        }
        if let Some(stall) = &mut beat.stall {
            let so_far = now.saturating_duration_since(stall.since);
            if so_far >= stall.next_report {
                stall.next_report = so_far.saturating_mul(2);
                self.report(stall, StallState::Ongoing, so_far);
            }
            return;
        }
        if !polls.is_empty() || workers_stalled {
            // A stall of this runtime is being followed in an instrumented
            // poll or a worker's counts: the heartbeat is waiting for that
            // worker, or for others while that one is stuck; either way it
            // is not a new stall.
            return;
        }
        let since = beat.requested_at.max(beat.explained_until);
        let late = now.saturating_duration_since(since);
        if late < self.threshold || !beat.answered_ever || self.parked() {
            return;
        }
        let seen = lock_std(&self.shared.heartbeat.thread).clone();
        let (thread, worker, tid) =
            seen.map_or((None, None, None), |s| (Some(s.thread), s.name, s.tid));
        let stall = Tracked {
            id: self.new_stall(),
            since,
            next_report: late.saturating_mul(2),
            worker,
            thread,
            worker_index: None,
            // The heartbeat's last thread is the stuck one only on a
            // current-thread runtime; on a multi-thread one, any worker
            // may be the one that no longer runs it.
            tid: tid.filter(|_| self.current_thread),
            task: None,
            location: None,
        };
        self.report(&stall, StallState::Ongoing, late);
        beat.stall = Some(stall);
    }

    /// Learns from a running instrumented poll which thread runs worker
    /// `index` (see `Shared::workers`), if that is news.
    fn saw_mark_on_worker(&self, mark: &crate::detect::instrument::ThreadMark, index: usize) {
        let known = lock_std(&self.shared.workers)
            .get(index)
            .is_some_and(|s| s.as_ref().is_some_and(|s| s.thread == mark.thread));
        if !known {
            let seen = Seen {
                thread: mark.thread,
                name: mark.name.clone(),
                tid: mark.tid,
            };
            saw_worker(&self.shared.workers, index, seen);
        }
    }

    /// Stalls in tasks nobody instrumented, on a multi-thread runtime whose
    /// other workers still run the heartbeat: tokio publishes each worker's
    /// park/unpark count and busy time when it parks and every 61 polls
    /// (its event interval). A worker that is not parked (even count) and
    /// whose counts have not moved for the threshold has been inside one
    /// poll (or a handful adding up to it) all that time.
    ///
    /// Returns when the earliest active worker not yet a stall will have
    /// had still counts for the threshold.
    #[cfg(target_has_atomic = "64")]
    fn watch_workers(
        &self,
        workers: &mut Vec<WorkerWatch>,
        named: &[usize],
        polls: &HashMap<ThreadId, PollStall>,
        beat: &Beat,
    ) -> Option<Instant> {
        if self.current_thread {
            // Its one thread is watched by the heartbeat.
            return None;
        }
        let mut crossing: Option<Instant> = None;
        let metrics = self.handle.metrics();
        let count = metrics.num_workers();
        let started = Instant::now();
        workers.resize_with(count, || WorkerWatch {
            counts: (u64::MAX, Duration::MAX),
            since: started,
            stall: None,
        });
        // `named`: workers on which an instrumented poll is running now:
        // that poll is reported by name if it goes on, so no second stall
        // is opened.
        for (index, watch) in workers.iter_mut().enumerate() {
            let counts = (
                metrics.worker_park_unpark_count(index),
                metrics.worker_total_busy_duration(index),
            );
            let now = Instant::now();
            if counts != watch.counts {
                watch.counts = counts;
                watch.since = now;
                if let Some(stall) = watch.stall.take() {
                    let total = now.saturating_duration_since(stall.since);
                    self.report(&stall, StallState::Ended, total);
                }
                continue;
            }
            if counts.0 % 2 == 1 {
                continue; // parked: idle, not blocked
            }
            if let Some(stall) = &mut watch.stall {
                if stall.tid.is_none() {
                    // Not known yet which thread it is: the healthy
                    // workers are learned a few more each tick (probes and
                    // the heartbeat), until the stuck one is the only
                    // thread left with the workers' name.
                    self.probe_workers(count);
                    let (worker, thread, tid) = self.worker_thread(index);
                    if tid.is_some() {
                        (stall.worker, stall.thread, stall.tid) = (worker, thread, tid);
                    }
                }
                let so_far = now.saturating_duration_since(stall.since);
                if so_far >= stall.next_report {
                    stall.next_report = so_far.saturating_mul(2);
                    self.report(stall, StallState::Ongoing, so_far);
                }
                continue;
            }
            let followed = beat.stall.is_some()
                || named.contains(&index)
                || polls.values().any(|p| p.stall.worker_index == Some(index));
            if followed {
                // Its silence is accounted for until now (and tokio
                // publishes its counts only at its next park or 61st poll
                // after that poll returns): count from here.
                watch.since = now;
                continue;
            }
            let so_far = now.saturating_duration_since(watch.since);
            if so_far < self.threshold {
                let at = watch.since + self.threshold;
                crossing = Some(crossing.map_or(at, |c| c.min(at)));
                continue;
            }
            let (worker, thread, tid) = self.worker_thread(index);
            if tid.is_none() {
                self.probe_workers(count);
            }
            let stall = Tracked {
                id: self.new_stall(),
                since: watch.since,
                next_report: so_far.saturating_mul(2),
                worker,
                thread,
                worker_index: Some(index),
                tid,
                task: None,
                location: None,
            };
            self.report(&stall, StallState::Ongoing, so_far);
            watch.stall = Some(stall);
        }
        crossing
    }

    /// Spawns a tiny task per free worker that records which thread runs
    /// it: only while a stalled worker's thread is not known.
    fn probe_workers(&self, count: usize) {
        for _ in 1..count {
            let shared = self.shared.clone();
            drop(self.handle.spawn(async move {
                if let Some(index) = tokio::runtime::worker_index() {
                    let current = std::thread::current();
                    let seen = Seen {
                        thread: current.id(),
                        name: current.name().map(str::to_owned),
                        tid: crate::procfs::current_tid(),
                    };
                    saw_worker(&shared.workers, index, seen);
                }
            }));
        }
    }

    /// Without 64-bit atomics tokio keeps no per-worker counts.
    #[cfg(not(target_has_atomic = "64"))]
    fn watch_workers(
        &self,
        _: &mut Vec<WorkerWatch>,
        _: &[usize],
        _: &HashMap<ThreadId, PollStall>,
        _: &Beat,
    ) -> Option<Instant> {
        None
    }

    /// The thread running worker `index`: the one last seen running it;
    /// else, from `/proc`, the only thread with the name this runtime's
    /// workers were seen with that is not known to run another worker.
    /// Nothing when that is not one thread: nothing is guessed.
    fn worker_thread(&self, index: usize) -> (Option<String>, Option<ThreadId>, Option<u32>) {
        let workers = lock_std(&self.shared.workers);
        if let Some(Some(seen)) = workers.get(index) {
            return (seen.name.clone(), Some(seen.thread), seen.tid);
        }
        let mut names = workers.iter().flatten().filter_map(|s| s.name.clone());
        let Some(name) = names.next() else {
            return (None, None, None);
        };
        if names.any(|other| other != name) {
            // Named one by one (`thread_name_fn`): no name to look for.
            return (None, None, None);
        }
        let others: Vec<u32> = workers.iter().flatten().filter_map(|s| s.tid).collect();
        drop(workers);
        let tid = crate::procfs::only_thread_named(&name, &others);
        (tid.map(|_| name), None, tid)
    }

    /// Whether tokio says every worker of the runtime is parked: waiting
    /// for events, so idle, not blocked (it will run the heartbeat as soon
    /// as the wake reaches it). tokio publishes this as the parity of each
    /// worker's park/unpark count.
    #[cfg(target_has_atomic = "64")]
    fn parked(&self) -> bool {
        let metrics = self.handle.metrics();
        (0..metrics.num_workers()).all(|w| metrics.worker_park_unpark_count(w) % 2 == 1)
    }

    /// Without 64-bit atomics tokio keeps no park counts: nothing to go by.
    #[cfg(not(target_has_atomic = "64"))]
    fn parked(&self) -> bool {
        false
    }

    fn new_stall(&self) -> u64 {
        self.shared.stalls.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn report(&self, tracked: &Tracked, state: StallState, stalled_for: Duration) {
        self.shared.reports.fetch_add(1, Ordering::Relaxed);
        let report = StallReport {
            stall: tracked.id,
            state,
            worker: tracked.worker.clone(),
            thread: tracked.thread,
            worker_index: tracked.worker_index,
            stalled_for,
            task: tracked.task.clone(),
            location: tracked.location,
            // Read only now, for a thread already past the threshold.
            wait: match state {
                StallState::Ongoing => tracked.tid.and_then(crate::procfs::read),
                StallState::Ended => None,
            },
        };
        #[cfg(feature = "tracing")]
        match state {
            StallState::Ongoing => tracing::warn!(
                worker = ?report.worker,
                task = ?report.task,
                wait = report.wait.as_ref().map(tracing::field::display),
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
                // Containment of the user's callback, not a probe: its
                // panic must not end the watching.
                let _ =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reporter(&report)));
            }
            // With `tracing`, the event above is the default report.
            None if cfg!(not(feature = "tracing")) => eprintln!("colorseam watchdog: {report}"),
            None => {}
        }
    }
}
