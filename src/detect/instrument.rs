//! Timed polls and the per-thread marks the watchdog reads.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::thread::ThreadId;
use std::time::Duration;

use crate::stamp::stamp_now;
use crate::sync::lock_std;

/// Polls longer than this are reported by default.
const DEFAULT_SLOW_POLL: Duration = Duration::from_millis(10);

/// What one thread is polling, as the watchdog sees it.
pub(crate) struct ThreadMark {
    pub(crate) thread: ThreadId,
    pub(crate) name: Option<String>,
    /// The thread's kernel id, for reading what it waits on once it
    /// stalls (read once, when the mark is made).
    pub(crate) tid: Option<u32>,
    /// The index of the runtime worker running the current instrumented
    /// poll, plus one; 0 when not on a worker. So the watchdog's look at
    /// tokio's per-worker counts does not report a named stall again.
    pub(crate) worker: AtomicU64,
    /// The [`runtime_key`] of the runtime whose worker runs the current
    /// instrumented poll; 0 when it is not on a worker. Written per poll,
    /// not once per thread: a thread may poll under `futures::executor`
    /// first and drive a tokio runtime later, or drive one runtime after
    /// another.
    pub(crate) runtime: AtomicU64,
    /// When the current instrumented poll began; 0 when not polling one.
    pub(crate) polling_since: AtomicU64,
    /// The task being polled (an id into [`TASKS`]).
    pub(crate) task: AtomicU64,
    /// The start and length of the last poll that finished, so the
    /// watchdog can give a stall's exact total.
    pub(crate) last_since: AtomicU64,
    pub(crate) last_nanos: AtomicU64,
}

static MARKS: Mutex<Vec<Weak<ThreadMark>>> = Mutex::new(Vec::new());

thread_local! {
    static MARK: Arc<ThreadMark> = {
        let current = std::thread::current();
        let mark = Arc::new(ThreadMark {
            thread: current.id(),
            name: current.name().map(str::to_owned),
            tid: crate::procfs::current_tid(),
            worker: AtomicU64::new(0),
            runtime: AtomicU64::new(0),
            polling_since: AtomicU64::new(0),
            task: AtomicU64::new(0),
            last_since: AtomicU64::new(0),
            last_nanos: AtomicU64::new(0),
        });
        let mut marks = lock_std(&MARKS);
        marks.retain(|m| m.strong_count() > 0);
        marks.push(Arc::downgrade(&mark));
        mark
    };
}

/// Every live thread's mark.
pub(crate) fn marks() -> Vec<Arc<ThreadMark>> {
    lock_std(&MARKS).iter().filter_map(Weak::upgrade).collect()
}

/// A runtime as a non-zero `u64`, so a mark can hold it in an atomic.
///
/// tokio's `runtime::Id` exposes no integer, so this is its hash under the
/// fixed-key `DefaultHasher`, with the low bit set so that 0 means "no
/// runtime". Two live runtimes would need a 63-bit hash collision to be
/// confused.
pub(crate) fn runtime_key(id: tokio::runtime::Id) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish() | 1
}

/// The key of the runtime this thread is inside, 0 for none.
fn current_runtime_key() -> u64 {
    tokio::runtime::Handle::try_current().map_or(0, |h| runtime_key(h.id()))
}

/// Names and call sites of instrumented tasks, by id.
static TASKS: LazyLock<Mutex<HashMap<u64, Weak<TaskInfo>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
static NEXT_TASK: AtomicU64 = AtomicU64::new(1);

pub(crate) struct TaskInfo {
    pub(crate) name: String,
    pub(crate) location: &'static Location<'static>,
}

/// The name and call site of the task with this id, if it still exists.
pub(crate) fn task_info(id: u64) -> Option<Arc<TaskInfo>> {
    lock_std(&TASKS).get(&id).and_then(Weak::upgrade)
}

type SlowPollHook = Box<dyn Fn(&str, &'static Location<'static>, Duration) + Send + Sync>;
static SLOW_POLL_HOOK: OnceLock<SlowPollHook> = OnceLock::new();

/// Sets, once per process, what is called for every instrumented poll
/// slower than its threshold: the task's name, its call site, and the
/// poll's length. Returns false if a hook was already set.
///
/// Without a hook, slow polls are counted (and, with the `tracing` feature,
/// logged as warnings).
pub fn set_slow_poll_hook(
    hook: impl Fn(&str, &'static Location<'static>, Duration) + Send + Sync + 'static,
) -> bool {
    SLOW_POLL_HOOK.set(Box::new(hook)).is_ok()
}

/// What `Instrumented::poll` counts, in nanoseconds.
#[derive(Default)]
struct Counters {
    polls: u64,
    slow_polls: u64,
    busy_nanos: u64,
    max_poll_nanos: u64,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Counters of one instrumented task (all counters, monotonic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TaskStats {
    /// Polls so far.
    pub polls: u64,
    /// Polls longer than the slow-poll threshold.
    pub slow_polls: u64,
    /// Time spent inside `poll`, summed.
    pub busy: Duration,
    /// The longest single poll.
    pub max_poll: Duration,
}

pin_project_lite::pin_project! {
    /// A future whose polls are timed and visible to the [`Watchdog`](super::Watchdog).
    ///
    /// Returned by [`instrument`]. It behaves exactly like the future it
    /// wraps, plus two clock reads and a few plain (not read-modify-write)
    /// atomic stores per poll.
    #[must_use = "futures do nothing unless polled"]
    pub struct Instrumented<F> {
        #[pin]
        future: F,
        id: u64,
        info: Arc<TaskInfo>,
        slow_poll_nanos: u64,
        // Plain integers, not shared atomics: only `poll` writes them and
        // only `stats` reads them, and `&mut self` versus `&self` already
        // keeps those apart, so no locked instruction is needed per poll.
        counters: Counters,
        // The tokio task this future was last polled in and that task's
        // runtime: a task never changes runtime, so while the task id is
        // the same the runtime is known without asking tokio for a handle
        // (which clones an `Arc`: two locked instructions per poll).
        seen_task: Option<tokio::task::Id>,
        seen_runtime: u64,
    }

    impl<F> PinnedDrop for Instrumented<F> {
        fn drop(this: Pin<&mut Self>) {
            lock_std(&TASKS).remove(&this.id);
        }
    }
}

/// Wraps `future` so each poll is timed, polls slower than 10 ms are
/// reported with `name` and the call site, and a watchdog can name the task
/// if it stalls a worker.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use colorseam::detect::instrument;
///
/// let checkout = instrument(async { 40 + 2 }, "checkout");
/// let stats = checkout.stats();
/// assert_eq!(checkout.await, 42);
/// # let _ = stats;
/// # }
/// ```
#[track_caller]
pub fn instrument<F: Future>(future: F, name: impl Into<String>) -> Instrumented<F> {
    let id = NEXT_TASK.fetch_add(1, Ordering::Relaxed);
    let info = Arc::new(TaskInfo {
        name: name.into(),
        location: Location::caller(),
    });
    lock_std(&TASKS).insert(id, Arc::downgrade(&info));
    Instrumented {
        future,
        id,
        info,
        slow_poll_nanos: nanos(DEFAULT_SLOW_POLL),
        counters: Counters::default(),
        seen_task: None,
        seen_runtime: 0,
    }
}

impl<F> Instrumented<F> {
    /// Reports polls slower than `threshold` instead of 10 ms.
    pub fn slow_poll_threshold(mut self, threshold: Duration) -> Self {
        self.slow_poll_nanos = nanos(threshold);
        self
    }

    /// The task's counters so far.
    pub fn stats(&self) -> TaskStats {
        let c = &self.counters;
        TaskStats {
            polls: c.polls,
            slow_polls: c.slow_polls,
            busy: Duration::from_nanos(c.busy_nanos),
            max_poll: Duration::from_nanos(c.max_poll_nanos),
        }
    }
}

impl<F: Future> Future for Instrumented<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // Only a poll on one of a runtime's workers can stall it: a blocking
        // thread, a colorseam pool thread or a plain thread that merely
        // entered the runtime may block as long as it likes.
        let worker = tokio::runtime::worker_index();
        let runtime = if worker.is_some() {
            let task = tokio::task::try_id();
            if task.is_none() || task != *this.seen_task {
                // Outside a tokio task (a current-thread runtime's
                // `block_on` future) there is nothing to cache on: ask.
                *this.seen_task = task;
                *this.seen_runtime = current_runtime_key();
            }
            *this.seen_runtime
        } else {
            0
        };
        let worker = worker.map_or(0, |w| w as u64 + 1);
        let polling = Polling::begin(*this.id, runtime, worker, stamp_now());
        let result = this.future.poll(cx);
        let nanos = polling.end(stamp_now());
        let c = this.counters;
        c.polls += 1;
        c.busy_nanos = c.busy_nanos.saturating_add(nanos);
        c.max_poll_nanos = c.max_poll_nanos.max(nanos);
        if nanos > *this.slow_poll_nanos {
            c.slow_polls += 1;
            slow_poll(this.info, Duration::from_nanos(nanos));
        }
        result
    }
}

/// This thread's mark while one instrumented poll runs.
///
/// Only the owning thread writes its mark and the watchdog only reads it,
/// so plain loads and stores do: a swap is a locked instruction, several
/// times the cost of the plain stores it replaces. The `Release` store of
/// `polling_since` publishes the stores before it to the watchdog's
/// `Acquire` load.
struct Polling {
    since: u64,
    // Nested instrumented futures: the innermost is marked while it runs,
    // and the outer one is restored after.
    outer_task: u64,
    outer_since: u64,
    outer_runtime: u64,
}

impl Polling {
    #[inline]
    fn begin(task: u64, runtime: u64, worker: u64, since: u64) -> Self {
        MARK.with(|mark| {
            let polling = Polling {
                since,
                outer_task: mark.task.load(Ordering::Relaxed),
                outer_since: mark.polling_since.load(Ordering::Relaxed),
                outer_runtime: mark.runtime.load(Ordering::Relaxed),
            };
            mark.task.store(task, Ordering::Relaxed);
            mark.runtime.store(runtime, Ordering::Relaxed);
            // Not restored after: a nested poll runs on the same worker.
            mark.worker.store(worker, Ordering::Relaxed);
            mark.polling_since.store(since, Ordering::Release);
            polling
        })
    }

    /// Records the finished poll's length, so the watchdog can give a
    /// stall's exact total, restores the outer mark, and returns the length.
    // One thread-local access for all of it; `Drop` is left for unwinding.
    #[inline]
    fn end(self, now: u64) -> u64 {
        let nanos = now.saturating_sub(self.since);
        MARK.with(|mark| {
            mark.last_since.store(self.since, Ordering::Relaxed);
            mark.last_nanos.store(nanos, Ordering::Relaxed);
            mark.task.store(self.outer_task, Ordering::Relaxed);
            mark.runtime.store(self.outer_runtime, Ordering::Relaxed);
            mark.polling_since
                .store(self.outer_since, Ordering::Release);
        });
        std::mem::forget(self);
        nanos
    }
}

impl Drop for Polling {
    // Runs only when the wrapped poll panics (`end` forgets it): a runtime
    // that catches the panic keeps using the thread, and a mark left behind
    // would have the watchdog report a stall in a task no longer running.
    #[cold]
    fn drop(&mut self) {
        let _ = MARK.try_with(|mark| {
            mark.task.store(self.outer_task, Ordering::Relaxed);
            mark.runtime.store(self.outer_runtime, Ordering::Relaxed);
            mark.polling_since
                .store(self.outer_since, Ordering::Release);
        });
    }
}

#[cold]
fn slow_poll(info: &TaskInfo, elapsed: Duration) {
    #[cfg(feature = "tracing")]
    tracing::warn!(task = %info.name, location = %info.location, ?elapsed, "colorseam: slow poll");
    if let Some(hook) = SLOW_POLL_HOOK.get() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            hook(&info.name, info.location, elapsed)
        }));
    }
}

impl<F> fmt::Debug for Instrumented<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instrumented")
            .field("name", &self.info.name)
            .field("location", &format_args!("{}", self.info.location))
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
