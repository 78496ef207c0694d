//! Timed polls and the per-thread marks the watchdog reads.

use std::borrow::Cow;
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

/// Names and call sites of instrumented tasks with an owned name, by id.
///
/// Only a `String` name comes here: a `&'static str` name is interned in
/// [`STATIC_TASKS`] instead, so creating its task takes no lock and
/// allocates nothing.
static TASKS: LazyLock<Mutex<HashMap<u64, Weak<TaskInfo>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
static NEXT_TASK: AtomicU64 = AtomicU64::new(1);

pub(crate) struct TaskInfo {
    pub(crate) name: String,
    pub(crate) location: &'static Location<'static>,
}

/// A `&'static str` name and a call site, interned once per pair.
struct StaticTask {
    name: &'static str,
    location: &'static Location<'static>,
}

impl StaticTask {
    fn is(&self, name: &'static str, location: &'static Location<'static>) -> bool {
        // Both are `'static`: equal addresses are equal values, and a
        // duplicate of either (another codegen unit's copy) merely takes
        // another slot.
        std::ptr::eq(self.name, name) && std::ptr::eq(self.location, location)
    }
}

/// Slots for interned (`&'static str` name, call site) pairs: a fixed,
/// open-addressed table written once per slot, so a creation finds its
/// pair with one acquire load (and, the first time, one `OnceLock::set`).
/// Call sites are few and fixed in a program; past this many distinct
/// pairs (or a probe run this long), names go to [`TASKS`] as owned ones do.
const STATIC_SLOTS: usize = 1024;
const STATIC_PROBES: usize = 8;
static STATIC_TASKS: [OnceLock<StaticTask>; STATIC_SLOTS] =
    [const { OnceLock::new() }; STATIC_SLOTS];

/// Ids with this bit set name a [`STATIC_TASKS`] slot (the low bits), not
/// a [`TASKS`] entry; `NEXT_TASK` never gets near it.
const STATIC_ID: u64 = 1 << 63;

/// The id of `(name, location)`'s slot in [`STATIC_TASKS`], interning it
/// there if it is new; `None` when its probe run is full.
fn intern(name: &'static str, location: &'static Location<'static>) -> Option<u64> {
    // The addresses are the key: a Fibonacci hash of them spreads the
    // call sites of one binary (close together in its rodata) over the
    // table.
    let key = (location as *const Location<'static> as usize as u64)
        ^ (name.as_ptr() as usize as u64).rotate_left(32)
        ^ name.len() as u64;
    let start = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize;
    for probe in 0..STATIC_PROBES {
        let slot_index = (start + probe) % STATIC_SLOTS;
        let slot = &STATIC_TASKS[slot_index];
        let found = match slot.get() {
            Some(task) => task.is(name, location),
            // Another thread may set it first: then it is ours only if it
            // set the same pair.
            None => {
                let _ = slot.set(StaticTask { name, location });
                slot.get().is_some_and(|task| task.is(name, location))
            }
        };
        if found {
            return Some(STATIC_ID | slot_index as u64);
        }
    }
    None
}

/// The name and call site of the task with this id, if it still exists.
///
/// For an interned name this copies the name (the watchdog asks only once
/// a poll is past its threshold, never on the polling path).
pub(crate) fn task_info(id: u64) -> Option<Arc<TaskInfo>> {
    if id & STATIC_ID != 0 {
        let index = usize::try_from(id & !STATIC_ID).ok()?;
        let task = STATIC_TASKS.get(index)?.get()?;
        return Some(Arc::new(TaskInfo {
            name: task.name.to_owned(),
            location: task.location,
        }));
    }
    lock_std(&TASKS).get(&id).and_then(Weak::upgrade)
}

/// How an [`Instrumented`] holds its name.
enum Name {
    /// Interned in [`STATIC_TASKS`]: nothing to free.
    Static(&'static str),
    /// Registered in [`TASKS`] under the future's id until it is dropped.
    Owned(Arc<TaskInfo>),
}

impl Name {
    fn as_str(&self) -> &str {
        match self {
            Name::Static(name) => name,
            Name::Owned(info) => &info.name,
        }
    }
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
    ///
    /// # Cancellation
    ///
    /// Dropping it drops the wrapped future, as dropping that future
    /// would, and removes the task from what the watchdog can name.
    #[must_use = "futures do nothing unless polled"]
    pub struct Instrumented<F> {
        #[pin]
        future: F,
        id: u64,
        name: Name,
        location: &'static Location<'static>,
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
            if let Name::Owned(_) = this.name {
                lock_std(&TASKS).remove(&this.id);
            }
        }
    }
}

/// Wraps `future` so each poll is timed, polls slower than 10 ms are
/// reported with `name` and the call site, and a watchdog can name the task
/// if it stalls a worker.
///
/// With a `&'static str` name (a literal), creating the wrapper takes no
/// lock and allocates nothing, so it costs the same on every thread at
/// once; a `String` name is registered in a process-wide table (one lock
/// and one allocation per call, one lock at drop).
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
/// let shard = 3;
/// let reindex = instrument(async {}, format!("reindex-{shard}"));
/// reindex.await;
/// # }
/// ```
#[track_caller]
pub fn instrument<F: Future>(future: F, name: impl Into<Cow<'static, str>>) -> Instrumented<F> {
    let location = Location::caller();
    let (id, name) = match name.into() {
        Cow::Borrowed(name) => match intern(name, location) {
            Some(id) => (id, Name::Static(name)),
            None => register(name.to_owned(), location),
        },
        Cow::Owned(name) => register(name, location),
    };
    Instrumented {
        future,
        id,
        name,
        location,
        slow_poll_nanos: nanos(DEFAULT_SLOW_POLL),
        counters: Counters::default(),
        seen_task: None,
        seen_runtime: 0,
    }
}

/// Registers an owned name in [`TASKS`] under a fresh id.
fn register(name: String, location: &'static Location<'static>) -> (u64, Name) {
    let id = NEXT_TASK.fetch_add(1, Ordering::Relaxed);
    let info = Arc::new(TaskInfo { name, location });
    lock_std(&TASKS).insert(id, Arc::downgrade(&info));
    (id, Name::Owned(info))
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
            slow_poll(
                this.name.as_str(),
                this.location,
                Duration::from_nanos(nanos),
            );
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
fn slow_poll(name: &str, location: &'static Location<'static>, elapsed: Duration) {
    #[cfg(feature = "tracing")]
    tracing::warn!(task = %name, location = %location, ?elapsed, "colorseam: slow poll");
    if let Some(hook) = SLOW_POLL_HOOK.get() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            hook(name, location, elapsed)
        }));
    }
}

impl<F> fmt::Debug for Instrumented<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instrumented")
            .field("name", &self.name.as_str())
            .field("location", &format_args!("{}", self.location))
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
