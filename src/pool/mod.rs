//! The bounded blocking pool: workers, queue, admission, abandonment, shutdown.
//!
//! # How it holds its bounds
//!
//! *Admission* is a tokio [`Semaphore`] with `max_threads + queue_capacity`
//! permits: every job holds one from the moment it is accepted until it ends,
//! is cancelled, or is abandoned within budget. So at most `max_threads` jobs
//! run and at most `queue_capacity` wait, and an async caller that finds no
//! permit waits for one (fairly, in arrival order) or is refused at once.
//!
//! *Threads* are counted as `active` (idle or running a job someone waits
//! for, at most `max_threads`) plus `abandoned within budget` (at most
//! `max_abandoned`). When a caller gives up on a running job the job is
//! abandoned; if the budget allows, its thread leaves the active count and
//! its permit is released, so a replacement can start. The sum never exceeds
//! `max_threads + max_abandoned`. A thread that leaves stays counted (as
//! `exited`) until it is gone from the OS and reaped by the monitor: a
//! start that would need its room waits for that (see `reap`).
//!
//! *Growth* is on demand up to the core count, and past it only for workers
//! that block, as a monitor thread sees them (see `monitor`).
//!
//! *Nested work* (an offload made inside `block_on` on one of the pool's
//! own threads) is queued like any other. When the pool is full it borrows
//! the waiting job's permit rather than wait for one (see `loan`). The
//! waiting thread runs queued jobs itself only as a last resort, when no
//! worker can and the pool cannot grow, and never past a deadline (see
//! `help`).
//!
//! The queue is a `VecDeque` under one mutex. Cancelling a queued job is a
//! CAS on the job (see `state`), not a search of the queue: the entry stays
//! as a tombstone that workers skip, and the queue is compacted when
//! tombstones outnumber live jobs.

mod builder;
pub(crate) mod default;
pub(crate) mod help;
pub(crate) mod loan;
mod monitor;
mod shutdown;
pub(crate) mod state;
pub(crate) mod task;

use std::collections::VecDeque;
use std::fmt;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use tokio::sync::Semaphore;

pub use builder::Builder;
pub(crate) use builder::Config;
pub use shutdown::{QueuedWork, Shutdown, ShutdownOptions, ShutdownReport};

use crate::error::{Error, ErrorKind, Phase};
use crate::metrics::{Histogram, OutcomeCounters, PoolMetrics, StuckCall, ThreadMetrics};
use crate::sync::lock_std as lock;
use state::{EndedBy, Status};
use task::{BoxFn, CallSite, Job, RunsOn, Task};

/// A bounded pool of OS threads for running blocking code on behalf of async
/// callers, with deadlines that release the caller whatever the code does.
///
/// Build one with [`BlockingPool::builder`], or use the default pool through
/// [`colorseam::offload`](crate::offload). A `BlockingPool` is a cheap handle:
/// clones share one pool. When the last handle is dropped the pool stops
/// accepting work, runs what is queued, and its threads exit once idle;
/// dropping never blocks and never panics.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = colorseam::BlockingPool::builder()
///     .name("vendor-sdk")
///     .max_threads(8)
///     .queue_capacity(100)
///     .default_timeout(Duration::from_secs(2))
///     .build()
///     .unwrap();
///
/// let sum = pool.offload(|| (1..=10).sum::<u32>()).await.unwrap();
/// assert_eq!(sum, 55);
///
/// // A hung call releases its caller at the deadline.
/// let err = pool
///     .offload_timeout(|| std::thread::sleep(Duration::from_secs(10)), Duration::from_millis(20))
///     .await
///     .unwrap_err();
/// assert!(err.is_timeout());
/// # }
/// ```
#[derive(Clone)]
pub struct BlockingPool {
    handle: Arc<PoolHandle>,
}

/// The owner count: the pool shuts down (without waiting) when the last
/// `BlockingPool` clone goes, while workers keep the `Inner` alive.
struct PoolHandle {
    inner: Arc<Inner>,
}

impl Drop for PoolHandle {
    fn drop(&mut self) {
        let _cancelled_none = self.inner.begin_shutdown(QueuedWork::Run);
    }
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    /// Threads started on demand without asking the monitor: the core
    /// count, within `min_threads..=max_threads`.
    eager_threads: usize,
    shared: Mutex<Shared>,
    /// Idle workers wait here for work.
    work_available: Condvar,
    /// Shutdown waiters wait here for running work to settle.
    settled: Condvar,
    settled_async: tokio::sync::Notify,
    pub(crate) admission: Arc<Semaphore>,
    /// Live (not cancelled, not started) queued jobs.
    queued: AtomicUsize,
    counters: Counters,
    pub(crate) queue_wait: Histogram,
    pub(crate) run_time: Histogram,
    /// Interrupters sent and their outcomes (see `interrupt`).
    pub(crate) interrupt_stats: Arc<crate::interrupt::registry::Stats>,
}

struct Shared {
    queue: VecDeque<Arc<dyn Task>>,
    /// Threads idle or running unabandoned (or over-budget abandoned) work.
    active_threads: usize,
    /// Threads running a job whose call was abandoned within budget.
    abandoned_budgeted: usize,
    /// Threads running a job abandoned beyond the budget (still active).
    abandoned_over: usize,
    idle: usize,
    /// Idle workers already notified and about to take work.
    pending_wakeups: usize,
    /// Threads counted in `active` whose start is under way: they have not
    /// yet looked at the queue (a waiting thread does not help meanwhile).
    starting: usize,
    /// Jobs executing on a thread, abandoned ones included.
    busy: usize,
    /// Jobs run by a pool thread that helps while it waits (see `help`),
    /// not abandoned: they hold no thread of their own, but a caller waits.
    helped_live: usize,
    /// Waits (nested `block_on`s, own-pool shutdowns) that may help now,
    /// over all slots: the sum of the slots' `waiting` (see `help`).
    waiters: usize,
    /// Slots whose threads called shutdown on this, their own, pool and
    /// wait for everything but their own jobs to settle (see `shutdown`).
    shutdown_excepts: Vec<usize>,
    /// What each worker slot is running, for shutdown to abandon and for
    /// the monitor to tell blocked workers from busy ones.
    workers: Vec<WorkerSlot>,
    /// In the monitor's list (see `monitor`): work waits, no thread is idle,
    /// and the pool is past its eager limit.
    monitored: bool,
    /// Since when the monitor has seen no queued work, while still watching
    /// the pool (see `monitor::WATCH_GRACE`).
    unwatched_since: Option<Instant>,
    /// How many times a submit put the pool on the monitor's list.
    #[cfg(test)]
    times_watched: u64,
    free_slots: Vec<usize>,
    /// Slots whose thread has left the pool's work but may still be alive
    /// (finishing its exit: its last job's drop, thread-local destructors).
    /// Still counted against the bound until reaped (see `reap`).
    exited: Vec<usize>,
    /// Thread starts put off because exited threads still took their room;
    /// the monitor makes them once those are reaped.
    deferred_starts: usize,
    next_thread_number: u64,
    peak_threads: usize,
    shutdown: bool,
}

/// One worker thread's place in the pool; reused by later threads.
#[derive(Default)]
struct WorkerSlot {
    job: Option<Arc<dyn Task>>,
    /// Jobs this slot has started: names the closure in `in_closure`.
    jobs_taken: u64,
    in_closure: Arc<monitor::InClosure>,
    sighting: monitor::Sighting,
    /// The thread's `/proc` stat file, where the OS has one.
    stat: Option<std::path::PathBuf>,
    /// The thread in this slot, to wake it when it waits and may help.
    thread: Option<std::thread::Thread>,
    /// How many waits (nested `block_on`s) on this thread may help now.
    waiting: usize,
    /// The jobs this thread runs while it helps, innermost last.
    helping: Vec<Arc<dyn Task>>,
    /// Jobs made on this slot's thread and queued, in queue order, some
    /// perhaps no longer queued: where a helping wait finds its own jobs
    /// without walking the queue (see `help`).
    made_here: help::MadeHere,
    /// The thread's handle, joined once it has exited (see `reap`).
    handle: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Counters {
    completed: AtomicU64,
    panicked: AtomicU64,
    timed_out_waiting_for_room: AtomicU64,
    timed_out_queued: AtomicU64,
    timed_out_running: AtomicU64,
    cancelled_queued: AtomicU64,
    cancelled_running: AtomicU64,
    rejected: AtomicU64,
    shut_down: AtomicU64,
    detached_failures: AtomicU64,
}

thread_local! {
    /// The pool this thread works for and its slot, if it is a pool thread.
    static WORKER_OF: std::cell::RefCell<Option<(std::sync::Weak<Inner>, usize)>> =
        const { std::cell::RefCell::new(None) };
}

/// The pool the current thread works for, and its worker slot there.
pub(crate) fn current_worker() -> Option<(Arc<Inner>, usize)> {
    WORKER_OF
        .try_with(|w| {
            w.borrow()
                .as_ref()
                .and_then(|(pool, slot)| Some((pool.upgrade()?, *slot)))
        })
        .ok()
        .flatten()
}

/// The current thread's worker slot, if it is a thread of `pool`.
pub(crate) fn current_slot_in(pool: &Arc<Inner>) -> Option<usize> {
    WORKER_OF
        .try_with(|w| {
            w.borrow()
                .as_ref()
                .filter(|(of, _)| std::ptr::eq(of.as_ptr(), Arc::as_ptr(pool)))
                .map(|(_, slot)| *slot)
        })
        .ok()
        .flatten()
}

/// The eager limit: as many threads as cores (see `monitor`), within
/// `min_threads..=max_threads`.
fn eager_threads(config: &Config) -> usize {
    static CORES: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    CORES.max(config.min_threads).min(config.max_threads)
}

/// An abandoned job found on a pool thread (see `Inner::find_stuck`).
struct FoundStuck {
    job: Arc<dyn Task>,
    tid: Option<u32>,
    thread: Option<String>,
}

/// The kernel thread id in a `/proc/<pid>/task/<tid>/stat` path.
fn tid_of_stat(stat: &std::path::Path) -> Option<u32> {
    stat.parent()?.file_name()?.to_str()?.parse().ok()
}

/// Why a caller stopped waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveUp {
    Timeout,
    Dropped,
}

impl BlockingPool {
    /// Starts configuring a pool.
    pub fn builder() -> Builder {
        Builder::new()
    }

    pub(crate) fn from_config(config: Config) -> Self {
        let permits = config.max_threads + config.queue_capacity;
        let inner = Arc::new(Inner {
            shared: Mutex::new(Shared {
                queue: VecDeque::new(),
                active_threads: 0,
                abandoned_budgeted: 0,
                abandoned_over: 0,
                idle: 0,
                pending_wakeups: 0,
                starting: 0,
                busy: 0,
                helped_live: 0,
                waiters: 0,
                shutdown_excepts: Vec::new(),
                workers: Vec::new(),
                monitored: false,
                unwatched_since: None,
                #[cfg(test)]
                times_watched: 0,
                free_slots: Vec::new(),
                exited: Vec::new(),
                deferred_starts: 0,
                next_thread_number: 0,
                peak_threads: 0,
                shutdown: false,
            }),
            work_available: Condvar::new(),
            settled: Condvar::new(),
            settled_async: tokio::sync::Notify::new(),
            admission: Arc::new(Semaphore::new(permits)),
            queued: AtomicUsize::new(0),
            counters: Counters::default(),
            queue_wait: Histogram::new(),
            run_time: Histogram::new(),
            interrupt_stats: Arc::new(crate::interrupt::registry::Stats::new(config.name.clone())),
            eager_threads: eager_threads(&config),
            config,
        });
        crate::metrics::register(
            Arc::downgrade(&inner) as std::sync::Weak<dyn crate::metrics::Source>
        );
        BlockingPool {
            handle: Arc::new(PoolHandle { inner }),
        }
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.handle.inner
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner().config.name
    }

    /// Runs `f` as a detached job: nobody waits for it.
    ///
    /// `f` returns `()` or a `Result<(), E>`. If it fails (returns an error,
    /// panics, or is cancelled by shutdown), the failure is counted in
    /// [`OutcomeCounters::detached_failures`] and sent to the pool's
    /// [error sink](Builder::error_sink). Detached jobs have no deadline.
    /// The closure runs with colorseam's bridge runtime entered, wherever it
    /// was detached from: nobody waits for it, so the caller's runtime may
    /// be gone before it runs.
    ///
    /// # Errors
    ///
    /// Refused at once, and not run, when the pool has no room
    /// ([`Error::is_saturated`]) or is shut down ([`Error::is_shutdown`]):
    /// detaching never waits.
    #[track_caller]
    pub fn detach<F, R>(&self, f: F) -> Result<(), Error>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Detached,
    {
        let inner = self.inner().clone();
        let location = Location::caller();
        let called_at = Instant::now();
        let sink_pool = inner.clone();
        // A panic is left to the worker, which counts it as a panic and
        // reports it (`Job::run`); only the job's own error is reported here.
        let func: BoxFn<()> = Box::new(move || {
            if let Err(source) = f().into_detached_result() {
                let error = Error::new(
                    ErrorKind::Job,
                    sink_pool.config.name.clone(),
                    location,
                    called_at.elapsed(),
                )
                .with_phase(Phase::Running)
                .with_source(source);
                sink_pool.report_detached_failure(error);
            }
        });
        let site = CallSite {
            called_at,
            deadline_after: 0,
            location,
            // Nobody waits for a detached job, so nothing keeps the
            // caller's runtime running for it: it uses the bridge.
            runtime: None,
            made_on_slot: current_slot_in(&inner).and_then(|slot| u32::try_from(slot).ok()),
            #[cfg(feature = "tracing")]
            span: tracing::Span::current(),
        };
        let job = Arc::new(Job::new(func, inner.interrupt_stats.clone(), site, true));
        match inner.admission.clone().try_acquire_owned() {
            Ok(permit) => {
                job.set_permit(permit);
                inner.submit(job.clone()).map_err(|by| {
                    job.error(match by {
                        EndedBy::SpawnFailed => ErrorKind::SpawnFailed,
                        _ => ErrorKind::ShutDown,
                    })
                })
            }
            Err(tokio::sync::TryAcquireError::Closed) => {
                inner.counters.shut_down.fetch_add(1, Ordering::Relaxed);
                Err(job.error(ErrorKind::ShutDown))
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
                Err(inner.saturated_error(&job, Phase::WaitingForRoom))
            }
        }
    }

    /// A snapshot of the pool's threads, queue, outcomes and latencies.
    pub fn metrics(&self) -> PoolMetrics {
        self.inner().metrics()
    }

    /// Every call whose caller gave up while a thread of the pool still
    /// runs it: where it was made, how long ago, the thread, and what the
    /// thread waits on (a system call with its socket's peer or file's
    /// path, or running), read from `/proc` now for these threads only.
    ///
    /// The same list is in [`PoolMetrics::stuck_calls`]; the error that
    /// says threads are stuck carries the first few.
    ///
    /// # Caveats
    ///
    /// What a thread waits on is known on Linux with a readable `/proc`
    /// only; elsewhere [`StuckCall::wait`] is `None`. A call abandoned
    /// while a pool thread that was waiting for nested work ran it is
    /// listed with that thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = colorseam::BlockingPool::builder().name("sdk").build().unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let err = pool
    ///     .offload_timeout(move || { let _ = rx.recv(); }, Duration::from_millis(20))
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.is_timeout());
    /// let stuck = pool.stuck_calls();
    /// assert_eq!(stuck.len(), 1);
    /// assert_eq!(stuck[0].pool, "sdk");
    /// drop(tx); // the call returns, and its thread is free again
    /// # }
    /// ```
    pub fn stuck_calls(&self) -> Vec<StuckCall> {
        let inner = self.inner();
        let found = inner.find_stuck(&lock(&inner.shared), usize::MAX);
        inner.describe_stuck(found)
    }

    /// Starts a graceful shutdown; see [`Shutdown`].
    ///
    /// New work is refused at once. Queued work is run or cancelled as
    /// `options` says; running work is waited for until the deadline, after
    /// which its callers are released with a shut-down error and its threads
    /// are abandoned. The returned future resolves to a report and never
    /// outlives the deadline by more than timer resolution.
    ///
    /// # From a job of this pool
    ///
    /// Made on one of the pool's own threads (inside a job), a shutdown
    /// settles everything *but the jobs on that thread*, which cannot end
    /// while it waits: the report is returned once the rest has settled (or
    /// at the deadline, when the rest is abandoned), and the caller's own
    /// job is neither waited for nor abandoned. It never hangs on itself.
    ///
    /// # Cancellation
    ///
    /// Dropping the future does not undo the shutdown; it only stops waiting.
    pub fn shutdown(&self, options: ShutdownOptions) -> Shutdown {
        Shutdown::start(self.inner().clone(), options)
    }

    /// [`shutdown`](Self::shutdown) for sync callers: blocks the calling
    /// thread until the work has settled or the deadline has passed.
    ///
    /// Do not call it from an async task: it blocks the thread.
    ///
    /// # From a job of this pool
    ///
    /// As for [`shutdown`](Self::shutdown): it settles everything but the
    /// jobs on the calling thread and then returns. Without a deadline
    /// (`Duration::MAX`) the calling thread also runs queued jobs that have
    /// no deadline itself when no other thread can (a one-thread pool's
    /// queue, say), so even then it returns.
    pub fn shutdown_blocking(&self, options: ShutdownOptions) -> ShutdownReport {
        shutdown::shutdown_blocking(self.inner(), options)
    }
}

// Every lock of the pool recovers from poisoning and every piece of user
// code it runs (closures, wakers, drops, sinks) is under `catch_unwind`, so
// a panic on any thread leaves the pool's state consistent: a handle may
// cross `catch_unwind`, as tokio's `Handle` may. The compiler cannot see it
// through the error sink (`dyn Fn`) and tokio's semaphore.
impl std::panic::UnwindSafe for BlockingPool {}
impl std::panic::RefUnwindSafe for BlockingPool {}

impl fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.inner().config;
        f.debug_struct("BlockingPool")
            .field("name", &config.name)
            .field("max_threads", &config.max_threads)
            .field("queue_capacity", &config.queue_capacity)
            .field("max_abandoned", &config.max_abandoned)
            .finish_non_exhaustive()
    }
}

/// What a [detached](BlockingPool::detach) closure may return: `()`, or a
/// `Result` whose error is reported to the pool's error sink.
///
/// Sealed: these are the only two shapes, so the pool can promise where
/// each failure goes.
pub trait Detached: Send + 'static + sealed::Sealed {
    /// The closure's failure, if any.
    #[doc(hidden)]
    fn into_detached_result(self) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

mod sealed {
    /// Keeps [`Detached`](super::Detached) implemented only here.
    pub trait Sealed {}
    impl Sealed for () {}
    impl<E> Sealed for Result<(), E> {}
}

impl Detached for () {
    fn into_detached_result(self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
}

impl<E> Detached for Result<(), E>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    fn into_detached_result(self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.map_err(Into::into)
    }
}

impl Inner {
    /// Queues a job that holds a permit, waking or starting a thread for it.
    /// On refusal the job was never queued and its permit is released.
    pub(crate) fn submit(self: &Arc<Self>, job: Arc<dyn Task>) -> Result<(), EndedBy> {
        let mut shared = lock(&self.shared);
        if shared.shutdown {
            drop(shared);
            job.release_permit();
            self.counters.shut_down.fetch_add(1, Ordering::Relaxed);
            return Err(EndedBy::Shutdown);
        }
        let made_on = job.made_on_slot();
        if let Some(slot) = made_on {
            help::made_here(&mut shared, slot, &job);
        }
        shared.queue.push_back(job);
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.find_thread_for_new_job(shared, made_on);
        Ok(())
    }

    /// After a push to the queue: wakes an idle worker for it, or starts one
    /// if the pool is below its eager limit, or has the monitor watch for
    /// blocked workers; otherwise a busy worker takes it when free, or, at
    /// `max_threads`, a pool thread waiting in `block_on` is woken in case
    /// it must help (`made_on`, the thread that made the job, first).
    fn find_thread_for_new_job(
        self: &Arc<Self>,
        mut shared: std::sync::MutexGuard<'_, Shared>,
        made_on: Option<usize>,
    ) {
        if shared.idle > 0 {
            shared.idle -= 1;
            shared.pending_wakeups += 1;
            // Notified after unlocking, so the woken worker does not wake
            // straight into a lock its waker still holds.
            drop(shared);
            self.work_available.notify_one();
        } else if shared.active_threads < self.eager_threads {
            self.spawn_worker(shared);
        } else if shared.active_threads < self.config.max_threads && !shared.monitored {
            shared.monitored = true;
            #[cfg(test)]
            {
                shared.times_watched += 1;
            }
            drop(shared);
            if !monitor::watch(self) {
                // No monitor thread: grow at once, as if every job blocked.
                let mut shared = lock(&self.shared);
                shared.monitored = false;
                if shared.idle == 0 && shared.active_threads < self.config.max_threads {
                    self.spawn_worker(shared);
                }
            }
        } else if shared.active_threads >= self.config.max_threads {
            help::wake_a_helper(shared, made_on);
        }
    }

    /// One monitor tick (see `monitor`): reaps exited threads, makes the
    /// thread starts they put off, and starts threads for queued work if
    /// workers are blocked. Reads `/proc` with the pool lock released.
    pub(crate) fn monitor_tick(self: &Arc<Self>, now: Instant) -> monitor::Verdict {
        let progress = self.reap(false) + self.start_deferred();
        match self.grow_tick(now) {
            monitor::Verdict::Watch if progress > 0 => monitor::Verdict::Grew,
            verdict => verdict,
        }
    }

    fn grow_tick(self: &Arc<Self>, now: Instant) -> monitor::Verdict {
        let mut shared = lock(&self.shared);
        // Shutting down is no reason to stop: a shutdown that runs the queue
        // needs threads for it like any other time.
        let at_max = shared.active_threads >= self.config.max_threads;
        if at_max || self.live_queued(&shared) == 0 {
            if !shared.exited.is_empty() || shared.deferred_starts > 0 {
                // Still threads to reap, or starts waiting on them.
                return monitor::Verdict::Watch;
            }
            // An empty queue keeps the pool watched a little longer: a burst
            // of short jobs empties and refills it thousands of times a
            // second, and each refill would otherwise call `watch` again (a
            // global lock and a wake-up of the monitor thread) on the
            // submitter's path.
            let since = *shared.unwatched_since.get_or_insert(now);
            if !at_max && now.saturating_duration_since(since) < monitor::WATCH_GRACE {
                return monitor::Verdict::Watch;
            }
            shared.unwatched_since = None;
            shared.monitored = false;
            return monitor::Verdict::Done;
        }
        shared.unwatched_since = None;
        if shared.idle + shared.pending_wakeups > 0 {
            return monitor::Verdict::Watch;
        }
        // Workers in the same job as at the last tick, and for how long.
        let mut candidates = Vec::new();
        for worker in &mut shared.workers {
            let in_closure = worker.in_closure.current();
            if worker
                .job
                .as_ref()
                .is_some_and(|job| job.was_abandon_budgeted())
            {
                continue;
            }
            if let Some(ran) = monitor::sighted(&mut worker.sighting, in_closure, now) {
                candidates.push((worker.stat.clone(), ran));
            }
        }
        if candidates.is_empty() {
            return monitor::Verdict::Watch;
        }
        drop(shared);
        let blocked = candidates
            .iter()
            .filter(|(stat, ran)| monitor::is_blocked(stat.as_deref(), *ran))
            .count();
        let mut shared = lock(&self.shared);
        let runnable = shared.active_threads.saturating_sub(blocked);
        // Give the cores back their runnable threads, and double past that
        // while everything blocks (the ramp of a pool of blocking jobs), but
        // never more threads than jobs waiting for one.
        let wanted = (self.eager_threads.saturating_sub(runnable).max(blocked))
            .min(self.live_queued(&shared));
        // The bound is looked at again before every start: the lock is
        // released while a thread starts, and meanwhile a thread back from
        // an abandoned job may rejoin, a replacement start, the queue drain.
        let mut started = 0;
        while started < wanted
            && shared.active_threads < self.config.max_threads
            && shared.idle + shared.pending_wakeups == 0
            && self.live_queued(&shared) > 0
        {
            self.spawn_worker(shared);
            started += 1;
            shared = lock(&self.shared);
        }
        drop(shared);
        if started == 0 {
            return monitor::Verdict::Watch;
        }
        #[cfg(feature = "tracing")]
        tracing::debug!(pool = %self.config.name, blocked, started, "colorseam pool grew past its eager limit: workers blocked");
        monitor::Verdict::Grew
    }

    /// Whether the pool is (still, or again) in the monitor's list.
    pub(crate) fn is_monitored(&self) -> bool {
        lock(&self.shared).monitored
    }

    /// Queued jobs nobody has cancelled, counted up to `max_threads`.
    fn live_queued(&self, shared: &Shared) -> usize {
        shared
            .queue
            .iter()
            .filter(|job| job.status() == Status::Queued)
            .take(self.config.max_threads)
            .count()
    }

    /// Starts one more active worker. Consumes the guard: the thread is
    /// counted under the lock but started with it released (a thread start
    /// takes tens of microseconds, and submitters, workers and the monitor
    /// would all wait on it), and start-up failure handling runs user
    /// destructors outside the lock.
    fn spawn_worker(self: &Arc<Self>, mut shared: std::sync::MutexGuard<'_, Shared>) {
        // A thread counts until it is gone, not until it leaves the work: a
        // thread still exiting holds its room, and this start waits for it.
        let lingering = shared.exited.len();
        if lingering > 0
            && shared.active_threads + shared.abandoned_budgeted + lingering
                >= self.config.max_threads + self.config.max_abandoned
        {
            shared.deferred_starts += 1;
            self.watch_exited(shared, true);
            return;
        }
        shared.active_threads += 1;
        shared.starting += 1;
        let slot = match shared.free_slots.pop() {
            Some(slot) => slot,
            None => {
                shared.workers.push(WorkerSlot::default());
                shared.workers.len() - 1
            }
        };
        shared.next_thread_number += 1;
        let name = format!("{}-{}", self.config.name, shared.next_thread_number);
        // The peak counts the thread from here, before it starts, so a
        // metrics read after its first job already sees it. If the start
        // fails, the peak may overstate by the threads that never ran.
        let total = shared.active_threads + shared.abandoned_budgeted + shared.exited.len();
        let previous_peak = shared.peak_threads;
        shared.peak_threads = previous_peak.max(total);
        drop(shared);
        let inner = self.clone();
        let mut builder = std::thread::Builder::new().name(name);
        if let Some(bytes) = self.config.stack_size {
            builder = builder.stack_size(bytes);
        }
        #[cfg(not(test))]
        let spawned = builder.spawn(move || inner.worker_loop(slot));
        // Unit tests can have the OS refuse a pool's threads from a point on.
        #[cfg(test)]
        let spawned = match tests::refused(&self.config.name) {
            true => Err(std::io::Error::other("refused by the test")),
            false => builder.spawn(move || inner.worker_loop(slot)),
        };
        // Events before locking: a subscriber is user code.
        #[cfg(feature = "tracing")]
        match &spawned {
            Ok(_) => {
                tracing::debug!(pool = %self.config.name, threads = total, "colorseam pool grew")
            }
            Err(error) => {
                tracing::warn!(pool = %self.config.name, %error, "colorseam pool could not start a thread")
            }
        }
        let mut shared = lock(&self.shared);
        match spawned {
            Ok(handle) => shared.workers[slot].handle = Some(handle),
            Err(_os_error) => {
                shared.active_threads -= 1;
                shared.starting -= 1;
                shared.free_slots.push(slot);
                if shared.peak_threads == total && previous_peak < total {
                    // Nothing else raised it meanwhile: undo this start's.
                    shared.peak_threads = previous_peak;
                }
                if shared.active_threads == 0 {
                    // No thread will ever take the queue: fail it now rather
                    // than let its callers wait forever.
                    let stranded: Vec<_> = shared.queue.drain(..).collect();
                    drop(shared);
                    for job in stranded {
                        job.cancel_by_pool(self, EndedBy::SpawnFailed);
                    }
                    self.notify_if_settled(&lock(&self.shared));
                } else if shared.shutdown {
                    self.notify_if_settled(&shared);
                }
                // Otherwise a running worker will take the job when it is done.
            }
        }
    }

    fn worker_loop(self: Arc<Self>, slot: usize) {
        WORKER_OF.with(|w| *w.borrow_mut() = Some((Arc::downgrade(&self), slot)));
        let stat = monitor::own_stat_path();
        // The last job this thread ran. Its `Arc` may be the last one, and
        // dropping it runs user code (the value's `Drop`), so it is only ever
        // dropped with the pool lock released.
        let mut finished: Option<Arc<dyn Task>> = None;
        let mut shared = lock(&self.shared);
        shared.starting -= 1;
        shared.workers[slot].stat = stat;
        shared.workers[slot].thread = Some(std::thread::current());
        let in_closure = shared.workers[slot].in_closure.clone();
        'work: loop {
            while let Some(job) = shared.queue.pop_front() {
                shared.busy += 1;
                let worker = &mut shared.workers[slot];
                worker.job = Some(job.clone());
                worker.jobs_taken += 1;
                let job_number = worker.jobs_taken;
                let waiters = help::waiters_to_wake(&shared, self.config.max_threads);
                drop(shared);
                help::wake(waiters);
                task::drop_quietly(finished.take());
                // `run` catches the job's panics; this catches the rest (a
                // waker whose `wake` panics) so the thread and its
                // accounting survive either way.
                let ran = catch_unwind(AssertUnwindSafe(|| {
                    job.clone()
                        .run(&self, RunsOn::Worker(&in_closure, job_number))
                }))
                .unwrap_or(true);
                shared = lock(&self.shared);
                shared.workers[slot].job = None;
                shared.busy -= 1;
                let leave = ran && self.after_run(&mut shared, &*job);
                finished = Some(job);
                if shared.shutdown {
                    self.notify_if_settled(&shared);
                }
                if leave {
                    break 'work;
                }
            }
            if shared.shutdown {
                shared.active_threads -= 1;
                break 'work;
            }
            if finished.is_some() {
                drop(shared);
                task::drop_quietly(finished.take());
                shared = lock(&self.shared);
                continue 'work;
            }
            shared.idle += 1;
            loop {
                let (guard, wait) = self
                    .work_available
                    .wait_timeout(shared, self.config.keep_alive)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                shared = guard;
                if shared.pending_wakeups > 0 {
                    shared.pending_wakeups -= 1;
                    continue 'work;
                }
                if shared.shutdown
                    || (wait.timed_out() && shared.active_threads > self.config.min_threads)
                {
                    shared.idle -= 1;
                    shared.active_threads -= 1;
                    break 'work;
                }
            }
        }
        // Not free yet: this thread still runs (the drop below, its
        // thread-locals' destructors), so it stays counted until reaped.
        shared.exited.push(slot);
        self.notify_if_settled(&shared);
        self.watch_exited(shared, false);
        task::drop_quietly(finished);
    }

    /// Has the monitor reap this pool's exited threads (and make the starts
    /// they put off). Without a monitor thread, reaps here, waiting for
    /// them, if `may_wait` (not on an exiting worker, which would wait for
    /// itself: its slot is reaped by the next start that needs the room).
    fn watch_exited(
        self: &Arc<Self>,
        mut shared: std::sync::MutexGuard<'_, Shared>,
        may_wait: bool,
    ) {
        shared.monitored = true;
        drop(shared);
        if monitor::watch(self) {
            return;
        }
        lock(&self.shared).monitored = false;
        if may_wait {
            self.reap(true);
            self.start_deferred();
        }
    }

    /// Joins exited threads that are gone and frees their slots; returns how
    /// many. With `wait`, waits for every exited thread.
    ///
    /// Gone means joined and, where the OS has `/proc`, no longer listed
    /// there: Linux wakes a joiner before it removes the thread from
    /// `/proc`. Without `wait`, a thread is joined only once std says it
    /// finished and `/proc` no longer lists it, so the join does not wait
    /// (on thread-local destructors, say). Thread ids are handed out
    /// cyclically, so one is not listed again by another thread this soon.
    fn reap(&self, wait: bool) -> usize {
        let candidates: Vec<_> = {
            let mut shared = lock(&self.shared);
            let exited = shared.exited.clone();
            exited
                .into_iter()
                .filter_map(|slot| {
                    let worker = &mut shared.workers[slot];
                    let thread = worker.handle.take_if(|t| wait || t.is_finished())?;
                    Some((slot, thread, worker.stat.clone()))
                })
                .collect()
        };
        if candidates.is_empty() {
            return 0;
        }
        let listed =
            |stat: &Option<std::path::PathBuf>| stat.as_deref().is_some_and(monitor::still_listed);
        let mut gone = Vec::new();
        let mut lingering = Vec::new();
        for (slot, thread, stat) in candidates {
            if !wait && listed(&stat) {
                lingering.push((slot, thread));
                continue;
            }
            // The worker's own panics are caught; a thread-local
            // destructor's ends the thread, which is all a join waits for.
            let _ = thread.join();
            while listed(&stat) {
                std::thread::yield_now();
            }
            gone.push(slot);
        }
        let mut shared = lock(&self.shared);
        for (slot, thread) in lingering {
            shared.workers[slot].handle = Some(thread);
        }
        for &slot in &gone {
            shared.exited.retain(|&s| s != slot);
            shared.workers[slot].stat = None;
            shared.free_slots.push(slot);
        }
        gone.len()
    }

    /// Makes the thread starts that exited threads put off, where the work
    /// still needs them; returns how many it started.
    fn start_deferred(self: &Arc<Self>) -> usize {
        let mut shared = lock(&self.shared);
        let mut deferred = std::mem::take(&mut shared.deferred_starts);
        let mut started = 0;
        while deferred > 0
            && shared.active_threads < self.config.max_threads
            && shared.idle + shared.pending_wakeups == 0
            && self.live_queued(&shared) > 0
        {
            deferred -= 1;
            let before = shared.deferred_starts;
            self.spawn_worker(shared);
            shared = lock(&self.shared);
            if shared.deferred_starts > before {
                // Still no room: put off again, with the rest.
                shared.deferred_starts += deferred;
                return started;
            }
            started += 1;
        }
        started
    }

    /// Bookkeeping after a job returned. True if this thread should exit.
    fn after_run(&self, shared: &mut Shared, job: &dyn Task) -> bool {
        if let Status::Abandoned(_) = job.status() {
            if job.was_abandon_budgeted() {
                shared.abandoned_budgeted -= 1;
                // This thread left the active count when it was abandoned;
                // it rejoins only if that keeps the bound, and during
                // shutdown only if queued work still needs a thread.
                let needed = !shared.shutdown || self.queued.load(Ordering::Relaxed) > 0;
                if !needed || shared.active_threads >= self.config.max_threads {
                    return true;
                }
                shared.active_threads += 1;
            } else {
                shared.abandoned_over -= 1;
            }
        }
        false
    }

    pub(crate) fn job_started(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn job_left_queue(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }

    /// A caller gives up on its job: cancel it if queued, abandon it if
    /// running. Returns the phase it was in, or `None` if the job has
    /// already finished (or is finishing) and its result should be read.
    pub(crate) fn give_up<T: Send + 'static>(
        self: &Arc<Self>,
        job: &Arc<Job<T>>,
        why: GiveUp,
    ) -> Result<Phase, Status> {
        match job.core().cancel(EndedBy::Caller) {
            Ok(func) => {
                self.job_left_queue();
                job.release_permit();
                task::drop_quietly(func);
                self.compact_queue();
                let counter = match why {
                    GiveUp::Timeout => &self.counters.timed_out_queued,
                    GiveUp::Dropped => &self.counters.cancelled_queued,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                Ok(Phase::Queued)
            }
            Err(Status::Running) => {
                let mut shared = lock(&self.shared);
                // Under the lock so the worker's `after_run` sees the
                // abandonment and its accounting together, and so the
                // runner's record (below) cannot change meanwhile.
                job.core().abandon(EndedBy::Caller)?;
                // A job a waiting pool thread runs while it helps holds no
                // worker of its own: there is no thread to account for.
                let helped = help::is_helped(&shared, &**job);
                let budgeted = if helped {
                    shared.helped_live -= 1;
                    false
                } else {
                    self.account_abandoned(&mut shared, &**job)
                };
                let counter = match why {
                    GiveUp::Timeout => &self.counters.timed_out_running,
                    GiveUp::Dropped => &self.counters.cancelled_running,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if shared.shutdown {
                    self.notify_if_settled(&shared);
                }
                #[cfg(feature = "tracing")]
                let abandoned = shared.abandoned_budgeted + shared.abandoned_over;
                // Replace the abandoned thread if queued work needs one;
                // during a run-queued shutdown too, or that work is stranded.
                if !helped
                    && self.queued.load(Ordering::Relaxed) > 0
                    && shared.idle == 0
                    && shared.active_threads < self.config.max_threads
                {
                    self.spawn_worker(shared);
                } else {
                    drop(shared);
                }
                // Given back unlocked: tokio wakes a caller waiting for room
                // inside the release, and its waker is user code.
                if budgeted {
                    job.release_permit();
                }
                // Handed to the interrupt threads: never run, nor waited
                // for, here (often an async worker).
                let _interrupts = job.interrupt(&self.interrupt_stats);
                #[cfg(feature = "tracing")]
                tracing::warn!(
                    pool = %self.config.name,
                    abandoned,
                    interrupts = _interrupts,
                    "colorseam abandoned a running job: {why:?}"
                );
                Ok(Phase::Running)
            }
            Err(other) => Err(other),
        }
    }

    /// Counts an abandoned job's thread out of `active` if the budget
    /// allows. True if it did: the caller then releases the job's permit,
    /// with the lock released (see `Task::release_permit`).
    fn account_abandoned(&self, shared: &mut Shared, job: &dyn Task) -> bool {
        if shared.abandoned_budgeted < self.config.max_abandoned {
            shared.abandoned_budgeted += 1;
            shared.active_threads -= 1;
            job.mark_abandon_budgeted();
            true
        } else {
            shared.abandoned_over += 1;
            false
        }
    }

    /// Drops tombstones once they outnumber live jobs, keeping the queue's
    /// memory proportional to its live depth.
    fn compact_queue(&self) {
        let mut shared = lock(&self.shared);
        let live = self.queued.load(Ordering::Relaxed);
        let mut tombstones = Vec::new();
        if shared.queue.len() > 2 * live + 64 {
            // A tombstone may be its job's last handle, and dropping a job
            // drops its caller's waker (user code): collected here, dropped
            // with the lock released.
            for job in std::mem::take(&mut shared.queue) {
                if job.status() == Status::Queued {
                    shared.queue.push_back(job);
                } else {
                    tombstones.push(job);
                }
            }
        }
        if shared.shutdown {
            self.notify_if_settled(&shared);
        }
        drop(shared);
        task::drop_quietly(tombstones);
    }

    pub(crate) fn saturated_error<T: Send + 'static>(&self, job: &Job<T>, phase: Phase) -> Error {
        let stuck = self.stuck();
        #[cfg(feature = "tracing")]
        tracing::warn!(pool = %self.config.name, stuck = stuck.0, "colorseam pool refused work: saturated");
        job.error(ErrorKind::Saturated)
            .with_phase(phase)
            .with_stuck(stuck)
    }

    /// How many threads are stuck in abandoned calls, and the first few of
    /// those calls, for an error that says so.
    pub(crate) fn stuck(&self) -> (usize, Vec<StuckCall>) {
        let (count, found) = {
            let shared = lock(&self.shared);
            (
                shared.abandoned_budgeted + shared.abandoned_over,
                self.find_stuck(&shared, crate::error::STUCK_CALLS_SHOWN),
            )
        };
        (count, self.describe_stuck(found))
    }

    /// Up to `limit` abandoned jobs still running on the pool's threads,
    /// with each thread's kernel id and name. Nothing is read from `/proc`
    /// here: that waits until the lock is released (`describe_stuck`).
    fn find_stuck(&self, shared: &Shared, limit: usize) -> Vec<FoundStuck> {
        let mut found = Vec::new();
        for worker in &shared.workers {
            for job in worker.job.iter().chain(&worker.helping) {
                if found.len() >= limit {
                    return found;
                }
                if matches!(job.status(), Status::Abandoned(_)) {
                    found.push(FoundStuck {
                        job: job.clone(),
                        tid: worker.stat.as_deref().and_then(tid_of_stat),
                        thread: worker
                            .thread
                            .as_ref()
                            .and_then(|t| t.name().map(str::to_owned)),
                    });
                }
            }
        }
        found
    }

    /// Reads what each found thread waits on, with no lock held.
    fn describe_stuck(&self, found: Vec<FoundStuck>) -> Vec<StuckCall> {
        let mut calls = Vec::with_capacity(found.len());
        let mut read: Vec<(u32, Option<crate::procfs::ThreadWait>)> = Vec::new();
        for stuck in &found {
            let (location, called_at) = stuck.job.call_site();
            let wait = stuck.tid.and_then(|tid| {
                // Once per thread, for jobs nested on one helping thread.
                if let Some((_, wait)) = read.iter().find(|(t, _)| *t == tid) {
                    return wait.clone();
                }
                let wait = crate::procfs::read(tid);
                read.push((tid, wait.clone()));
                wait
            });
            calls.push(StuckCall {
                pool: self.config.name.to_string(),
                location,
                stuck_for: called_at.elapsed(),
                thread: stuck.thread.clone(),
                wait,
            });
        }
        // Possibly the last handles of jobs that just finished: their
        // values' destructors are user code, run here unlocked.
        task::drop_quietly(found);
        calls
    }

    pub(crate) fn count_finished(&self, panicked: bool) {
        let counter = if panicked {
            &self.counters.panicked
        } else {
            &self.counters.completed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// An interrupted job returned after its call was abandoned: its
    /// thread is back.
    pub(crate) fn count_recovered(&self) {
        self.interrupt_stats
            .recovered
            .fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "tracing")]
        tracing::info!(pool = %self.config.name, "colorseam interrupted job returned: its thread is back");
    }

    pub(crate) fn count_ended_by_pool(&self, _by: EndedBy) {
        self.counters.shut_down.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_rejected(&self) {
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_timed_out_waiting_for_room(&self) {
        self.counters
            .timed_out_waiting_for_room
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_shut_down(&self) {
        self.counters.shut_down.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn report_detached_failure(&self, error: Error) {
        self.counters
            .detached_failures
            .fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "tracing")]
        tracing::error!(pool = %self.config.name, %error, "colorseam detached job failed");
        match &self.config.error_sink {
            Some(sink) => {
                let sink = sink.clone();
                let _ =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || sink(&error)));
            }
            None => eprintln!("colorseam: detached job failed: {error}"),
        }
    }

    pub(crate) fn metrics(&self) -> PoolMetrics {
        let (threads, queue_depth, stuck) = {
            let shared = lock(&self.shared);
            let abandoned = shared.abandoned_budgeted + shared.abandoned_over;
            (
                ThreadMetrics {
                    total: shared.active_threads + shared.abandoned_budgeted + shared.exited.len(),
                    idle: shared.idle + shared.pending_wakeups,
                    busy: shared.busy.saturating_sub(abandoned),
                    abandoned,
                    peak: shared.peak_threads,
                },
                self.queued.load(Ordering::Relaxed),
                self.find_stuck(&shared, usize::MAX),
            )
        };
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PoolMetrics {
            name: self.config.name.to_string(),
            threads,
            queue_depth,
            outcomes: OutcomeCounters {
                completed: load(&c.completed),
                panicked: load(&c.panicked),
                timed_out_waiting_for_room: load(&c.timed_out_waiting_for_room),
                timed_out_queued: load(&c.timed_out_queued),
                timed_out_running: load(&c.timed_out_running),
                cancelled_queued: load(&c.cancelled_queued),
                cancelled_running: load(&c.cancelled_running),
                rejected: load(&c.rejected),
                shut_down: load(&c.shut_down),
                detached_failures: load(&c.detached_failures),
            },
            queue_wait: self.queue_wait.snapshot(),
            run_time: self.run_time.snapshot(),
            stuck_calls: self.describe_stuck(stuck),
            interrupts: crate::metrics::InterruptCounters {
                sent: load(&self.interrupt_stats.sent),
                panicked: load(&self.interrupt_stats.panicked),
                recovered: load(&self.interrupt_stats.recovered),
            },
        }
    }

    /// Refuses new work and settles the queue. Idempotent.
    pub(crate) fn begin_shutdown(self: &Arc<Self>, queued: QueuedWork) -> usize {
        let cancelled: Vec<Arc<dyn Task>> = {
            let mut shared = lock(&self.shared);
            #[cfg(feature = "tracing")]
            let first = !shared.shutdown;
            shared.shutdown = true;
            let cancelled = match queued {
                QueuedWork::Cancel => shared.queue.drain(..).collect(),
                QueuedWork::Run => Vec::new(),
            };
            self.work_available.notify_all();
            drop(shared);
            #[cfg(feature = "tracing")]
            if first {
                tracing::info!(pool = %self.config.name, "colorseam pool shutting down");
            }
            cancelled
        };
        // Closed unlocked: closing wakes every caller waiting for room, and
        // their wakers are user code. A caller that gets a permit before
        // this finds `shutdown` set when it submits.
        self.admission.close();
        // User destructors run here, outside the lock.
        let mut count = 0;
        for job in cancelled {
            count += usize::from(job.cancel_by_pool(self, EndedBy::Shutdown));
        }
        self.notify_if_settled(&lock(&self.shared));
        count
    }

    /// True when no job some caller waits for is queued or running.
    fn is_settled(&self, shared: &Shared) -> bool {
        self.is_settled_except(shared, None)
    }

    /// [`is_settled`](Self::is_settled), not counting the jobs running on
    /// the thread in slot `except` (one that shuts its own pool down).
    fn is_settled_except(&self, shared: &Shared, except: Option<usize>) -> bool {
        let abandoned = shared.abandoned_budgeted + shared.abandoned_over;
        let (own_busy, own_helped) = help::own_live_jobs(shared, except);
        self.queued.load(Ordering::Relaxed) == 0
            && shared.busy - own_busy <= abandoned
            && shared.helped_live == own_helped
    }

    fn notify_if_settled(&self, shared: &Shared) {
        // A thread shutting its own pool down waits for "all but its own
        // jobs" (and may help meanwhile): it looks again at every change.
        help::wake_shutdown_excepts(shared);
        let settled = self.is_settled(shared)
            || shared
                .shutdown_excepts
                .iter()
                .any(|&slot| self.is_settled_except(shared, Some(slot)));
        if settled {
            self.settled.notify_all();
            self.settled_async.notify_waiters();
        }
    }

    /// At the shutdown deadline: releases the callers of every job still
    /// running (marking the jobs cancelled) and cancels what is still
    /// queued. Returns how many were abandoned and cancelled.
    ///
    /// Jobs helped by a waiting thread are abandoned too (their callers are
    /// released), without thread accounting; the jobs on the thread in slot
    /// `except`, which is shutting its own pool down, are left alone.
    fn abandon_running(&self, except: Option<usize>) -> (usize, usize) {
        let mut shared = lock(&self.shared);
        let running = help::running_jobs(&shared, except);
        // Abandoned under the lock (with their accounting), but their
        // callers are woken and their permits released after it: wakers
        // are user code.
        let mut abandoned = Vec::new();
        for (job, helped) in &running {
            if job.try_abandon_by_pool() {
                let budgeted = if *helped {
                    shared.helped_live -= 1;
                    false
                } else {
                    self.account_abandoned(&mut shared, &**job)
                };
                self.counters.shut_down.fetch_add(1, Ordering::Relaxed);
                abandoned.push((job.clone(), budgeted));
            }
        }
        // Queued work past the deadline is cancelled, not left to threads
        // that may never come back.
        let queued: Vec<Arc<dyn Task>> = shared.queue.drain(..).collect();
        self.notify_if_settled(&shared);
        drop(shared);
        for (job, budgeted) in &abandoned {
            if *budgeted {
                job.release_permit();
            }
            // Before the wake-up, so the caller's error says so.
            let _interrupts = job.interrupt(&self.interrupt_stats);
            #[cfg(feature = "tracing")]
            if _interrupts > 0 {
                tracing::warn!(pool = %self.config.name, interrupts = _interrupts, "colorseam released a running job at the shutdown deadline and interrupted it");
            }
            job.wake_caller();
        }
        let abandoned = abandoned.len();
        drop(running);
        let mut cancelled = 0;
        for job in queued {
            cancelled += usize::from(job.cancel_by_pool(self, EndedBy::Shutdown));
        }
        self.notify_if_settled(&lock(&self.shared));
        (abandoned, cancelled)
    }

    fn is_settled_now(&self, except: Option<usize>) -> bool {
        self.is_settled_except(&lock(&self.shared), except)
    }

    pub(crate) fn completed_total(&self) -> u64 {
        self.counters.completed.load(Ordering::Relaxed)
            + self.counters.panicked.load(Ordering::Relaxed)
    }
}

impl crate::metrics::Source for Inner {
    fn snapshot(&self) -> PoolMetrics {
        self.metrics()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::task::{Poll, Wake, Waker};
    use std::time::Duration;

    const LONG: Duration = Duration::from_secs(20);

    /// Pools whose thread starts the OS "refuses" (see `spawn_worker`).
    static REFUSED: Mutex<Vec<String>> = Mutex::new(Vec::new());

    pub(super) fn refused(pool: &str) -> bool {
        lock(&REFUSED).iter().any(|name| name == pool)
    }

    fn refuse(pool: &str, refuse: bool) {
        let mut refused = lock(&REFUSED);
        refused.retain(|name| name != pool);
        if refuse {
            refused.push(pool.to_owned());
        }
    }

    /// A gate a thread-local's destructor waits on: holds its thread in
    /// its exit, after it has left the pool's work.
    #[derive(Clone, Default)]
    struct Gate(Arc<(Mutex<bool>, Condvar)>);

    impl Gate {
        fn open(&self) {
            *lock(&self.0.0) = true;
            self.0.1.notify_all();
        }
        fn wait(&self) {
            let open = lock(&self.0.0);
            let _ = self.0.1.wait_timeout_while(open, LONG, |open| !*open);
        }
    }

    struct Linger(Gate);
    impl Drop for Linger {
        fn drop(&mut self) {
            self.0.wait();
        }
    }
    thread_local! {
        static LINGER: std::cell::RefCell<Option<Linger>> = const { std::cell::RefCell::new(None) };
    }

    struct Panics;
    impl Wake for Panics {
        fn wake(self: Arc<Self>) {
            panic!("a waker that panics, on the monitor thread");
        }
    }

    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn eventually(mut condition: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < LONG {
            if condition() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }

    /// The pool's one thread runs a job, goes idle past the keep-alive and
    /// lingers in its exit until `gate` opens; then a call needs a thread,
    /// and its start is put off (deferred) to the monitor. Returns the call.
    fn deferred_call(pool: &BlockingPool, gate: &Gate) -> crate::Offload<u32> {
        let g = gate.clone();
        let setup = pool.offload(move || LINGER.with(|l| *l.borrow_mut() = Some(Linger(g))));
        let mut setup = Box::pin(setup);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(eventually(|| setup.as_mut().poll(&mut cx).is_ready()));
        // Idle first, then not idle with nothing to run: past the keep-alive
        // it left the work, and lingers in its exit (still counted).
        assert!(eventually(|| pool.metrics().threads.idle == 1));
        assert!(
            eventually(|| {
                let m = pool.metrics().threads;
                m.idle == 0 && m.total == 1
            }),
            "the thread left the work and lingers in its exit"
        );
        pool.offload(|| 5)
    }

    /// The queue of a burst of short jobs empties between submits; the pool
    /// stays on the monitor's list across those gaps instead of being put
    /// back on it (a global lock and a wake-up of the monitor thread, on the
    /// submitter's path) at every refill, and leaves it once idle.
    #[test]
    fn a_burst_of_short_jobs_keeps_its_pool_watched_and_an_idle_pool_leaves_the_list() {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let pool = BlockingPool::builder()
            .name("unit-mon-burst")
            .max_threads(cores + 2)
            .queue_capacity(100_000)
            .build()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Waves of submits, each awaited: the queue empties and refills
            // every wave, past the eager limit with no thread idle.
            for _ in 0..200 {
                let calls: Vec<_> = (0..50).map(|_| pool.offload(|| 1u64)).collect();
                for call in calls {
                    assert_eq!(call.await.unwrap(), 1);
                }
            }
        });
        let watched = lock(&pool.inner().shared).times_watched;
        assert!(
            watched >= 1,
            "the burst went past the eager limit unwatched"
        );
        // Unwatched at every refill, this was one per wave that found no
        // idle thread (most of the 200); a 20 ms grace leaves a few, even
        // with a loaded machine stretching the burst.
        assert!(watched <= 40, "watched {watched} times in 200 waves");
        assert!(
            eventually(|| !pool.inner().is_monitored()),
            "an idle pool stays on the monitor's list"
        );
    }

    /// A tick the monitor makes on its own (a start that exited threads put
    /// off, made once they are reaped) that fails and strands a caller whose
    /// waker panics: the panic stays in the waker, and the monitor goes on
    /// making the next pool's deferred start.
    #[test]
    fn a_panicking_waker_woken_by_the_monitor_does_not_stop_the_monitor() {
        let pool = BlockingPool::builder()
            .name("unit-mon-refuse")
            .max_threads(1)
            .max_abandoned(0)
            .keep_alive(Duration::from_millis(100))
            .build()
            .unwrap();
        let gate = Gate::default();
        let mut stranded = Box::pin(deferred_call(&pool, &gate));
        let panics = Waker::from(Arc::new(Panics));
        let mut cx = std::task::Context::from_waker(&panics);
        assert!(stranded.as_mut().poll(&mut cx).is_pending());
        refuse("unit-mon-refuse", true);
        gate.open();
        // The exiting thread goes; the monitor reaps it, tries the start it
        // put off, the OS refuses, and the stranded call is failed (its
        // waker, which panics, is woken on the monitor thread). Not polled
        // again until then, so that waker is the one registered.
        assert!(eventually(|| pool.metrics().outcomes.shut_down == 1));
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let mut outcome = None;
        assert!(eventually(|| match stranded.as_mut().poll(&mut cx) {
            Poll::Ready(result) => {
                outcome = Some(result);
                true
            }
            Poll::Pending => false,
        }));
        let err = outcome.expect("resolved").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::SpawnFailed, "{err}");
        refuse("unit-mon-refuse", false);

        // The monitor is alive: another pool's deferred start is made.
        let other = BlockingPool::builder()
            .name("unit-mon-after")
            .max_threads(1)
            .max_abandoned(0)
            .keep_alive(Duration::from_millis(100))
            .build()
            .unwrap();
        let gate = Gate::default();
        let mut call = Box::pin(deferred_call(&other, &gate));
        gate.open();
        let mut value = None;
        assert!(
            eventually(|| match call.as_mut().poll(&mut cx) {
                Poll::Ready(result) => {
                    value = Some(result);
                    true
                }
                Poll::Pending => false,
            }),
            "the monitor no longer makes deferred starts"
        );
        assert_eq!(value.expect("resolved").unwrap(), 5);
    }
}
