//! Async work for sync callers: `block_on` that is right in every calling
//! context, the bridge runtime, and the caller-context query.

use std::cell::Cell;
use std::future::{Future, IntoFuture};
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use crate::error::{Error, ErrorKind, Phase};
use crate::pool::help::Waiting;
use crate::pool::task::panic_message;
use crate::spin::SpinBudget;

/// The flavor of a tokio runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RuntimeFlavor {
    /// `new_current_thread`: one thread drives every task.
    CurrentThread,
    /// `new_multi_thread`: a pool of workers.
    MultiThread,
    /// A flavor this version of colorseam does not know.
    Other,
}

impl From<tokio::runtime::RuntimeFlavor> for RuntimeFlavor {
    fn from(flavor: tokio::runtime::RuntimeFlavor) -> Self {
        match flavor {
            tokio::runtime::RuntimeFlavor::CurrentThread => RuntimeFlavor::CurrentThread,
            tokio::runtime::RuntimeFlavor::MultiThread => RuntimeFlavor::MultiThread,
            _ => RuntimeFlavor::Other,
        }
    }
}

/// Where the calling code runs, as far as colorseam can tell.
///
/// colorseam knows its own threads exactly (pool threads, the bridge
/// runtime, futures its `block_on` is polling). For other threads it reads
/// tokio's public state, never a panic: whether a runtime's scheduler runs
/// on this thread (`tokio::runtime::worker_index()`), whether a runtime
/// handle is current, and that runtime's flavor.
///
/// | thread | reported as |
/// | --- | --- |
/// | no runtime current | [`NoRuntime`](CallerContext::NoRuntime) |
/// | a multi-thread worker (a task, or a `LocalSet` inside one) | [`AsyncWorker`](CallerContext::AsyncWorker) |
/// | a current-thread runtime's driver (its `block_on` future, its tasks, a `LocalSet` on it) | [`AsyncWorker`](CallerContext::AsyncWorker) |
/// | `spawn_blocking`, `Handle::enter` | [`BlockingThread`](CallerContext::BlockingThread) |
/// | colorseam pool thread, bridge worker, inside colorseam's `block_on` | [`PoolThread`](CallerContext::PoolThread), [`BridgeThread`](CallerContext::BridgeThread), [`InsideBlockOn`](CallerContext::InsideBlockOn) |
///
/// # Caveats
///
/// tokio tells some threads apart only by panicking, which colorseam does
/// not do. Where two cases look alike, the answer is the one that never
/// lets a runtime's scheduler thread block and never refuses a thread that
/// may block:
///
/// - A multi-thread runtime's `Runtime::block_on` future (the body of
///   `#[tokio::main]`), a `LocalSet` that future drives, and a second
///   thread waiting in a current-thread runtime's `block_on` look like a
///   thread that entered the runtime with `Handle::enter`: all are
///   reported as [`BlockingThread`](CallerContext::BlockingThread). No
///   runtime worker runs there, so blocking holds up only the futures on
///   that one thread (the `block_on` future, what it joins, the
///   `LocalSet`'s tasks), never the runtime's workers, IO or timers. Don't
///   block there anyway; `.await`.
/// - A `LocalSet` task on such a thread looks like a `spawn_blocking`
///   thread, and is reported as a blocking thread for the same reason.
/// - Code inside a raw `tokio::task::block_in_place` closure looks like the
///   worker task it came from, and is reported as
///   [`AsyncWorker`](CallerContext::AsyncWorker): colorseam's `block_on` is
///   refused there and the guard reports a violation. Use
///   [`block_on_in_place`] instead, which marks its own drive.
/// - A thread that entered one runtime's handle while another runtime's
///   scheduler runs on it is judged by the scheduler's presence and the
///   entered handle's flavor.
/// - It cannot see executors other than tokio's: code inside
///   `futures::executor::block_on` on a plain thread is
///   [`NoRuntime`](CallerContext::NoRuntime).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallerContext {
    /// No tokio runtime is current: a plain thread. Blocking is fine.
    NoRuntime,
    /// A tokio runtime's scheduler runs on this thread: a task on a
    /// multi-thread worker, or a current-thread runtime's driver (its
    /// `block_on` future, its tasks, a `LocalSet` on it). Blocking here
    /// freezes the runtime.
    AsyncWorker {
        /// The runtime's flavor.
        flavor: RuntimeFlavor,
    },
    /// A tokio runtime is current but no scheduler of it runs on this
    /// thread: a `spawn_blocking` thread, or a thread holding
    /// `Handle::enter` (and the look-alikes in the caveats above).
    /// Blocking is fine.
    BlockingThread {
        /// The runtime's flavor.
        flavor: RuntimeFlavor,
    },
    /// A colorseam pool thread running a job. Blocking is fine.
    PoolThread {
        /// The pool's name (shared with the pool: no allocation per query).
        pool: Arc<str>,
    },
    /// A worker of colorseam's bridge runtime: an async context.
    BridgeThread,
    /// Inside a future that colorseam's `block_on` is polling on this
    /// thread: an async context.
    InsideBlockOn,
}

impl CallerContext {
    /// True where a blocking call would freeze an async runtime.
    pub fn is_async(&self) -> bool {
        matches!(
            self,
            CallerContext::AsyncWorker { .. }
                | CallerContext::BridgeThread
                | CallerContext::InsideBlockOn
        )
    }
}

thread_local! {
    /// Set while colorseam polls a future on this thread.
    static DRIVING: Cell<bool> = const { Cell::new(false) };
    /// How many `drive` calls are active on this thread.
    static DRIVE_DEPTH: Cell<usize> = const { Cell::new(0) };
    /// How long this thread spins in `block_on` before parking.
    static SPIN_BUDGET: Cell<SpinBudget> = const { Cell::new(SpinBudget::new(SPIN_BEFORE_PARK)) };
    /// The waker of this thread's executor, built once.
    static SIGNAL: (Arc<Signal>, Waker) = {
        let signal = Arc::new(Signal {
            thread: std::thread::current(),
            woken: AtomicBool::new(false),
            woken_at: AtomicU64::new(0),
        });
        let waker = Waker::from(signal.clone());
        (signal, waker)
    };
}

struct Signal {
    thread: Thread,
    woken: AtomicBool,
    /// When it was last woken (a `stamp`), to learn how long to spin.
    woken_at: AtomicU64,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if self.woken.load(Ordering::Relaxed) {
            return;
        }
        // Stamped before the flag is set, so a waiter that sees the flag
        // never reads the previous wake's time.
        self.woken_at
            .store(crate::stamp::stamp_now(), Ordering::Relaxed);
        if !self.woken.swap(true, Ordering::Release) {
            self.thread.unpark();
        }
    }
}

/// Leaves a drive: one level down, and if an outer drive is waiting, a
/// wake for it in case this one consumed its signal.
struct RestoreDepth<'a>(&'a Signal);

impl Drop for RestoreDepth<'_> {
    fn drop(&mut self) {
        let depth = DRIVE_DEPTH.with(|d| {
            d.set(d.get().saturating_sub(1));
            d.get()
        });
        if depth > 0 {
            self.0.woken.store(true, Ordering::Release);
        }
    }
}

/// Tunes this thread's spin from a wait that began at `since` and ended
/// when the waker woke it (not when the OS ran this thread again).
fn learn_spin(since: Instant, signal: &Signal) {
    // A wake stamped before the wait began (an outer drive's signal handed
    // on by `RestoreDepth` is not stamped) says nothing about this wait.
    let stamp = signal.woken_at.load(Ordering::Relaxed);
    let woken = crate::stamp::from_stamp(stamp);
    if stamp == 0 || woken < since {
        return;
    }
    let waited = woken.saturating_duration_since(since);
    SPIN_BUDGET.with(|b| {
        let mut budget = b.get();
        budget.after_wait(waited);
        b.set(budget);
    });
}

/// Why driving a future stopped without its value.
enum Stopped {
    Elapsed,
    Panicked(Option<String>),
}

/// Polls `future` to completion on this thread, parking between polls.
/// Returns at the deadline if the future is pending then. A pool thread
/// `waiting` (only ever without a deadline) may help its pool between polls,
/// on the pool's terms (`pool::help`). The future is dropped here, before
/// returning, and a panic in its `Drop` is caught like one in its `poll`.
fn drive<F: Future>(
    future: F,
    deadline: Option<Instant>,
    waiting: Option<&Waiting>,
) -> Result<F::Output, Stopped> {
    // In an `Option` so it can be dropped in place, under `catch_unwind`.
    let mut slot = pin!(Some(future));
    let result = SIGNAL.with(|(signal, waker)| {
        let mut cx = Context::from_waker(waker);
        // One signal per thread serves nested drives too (a job this thread
        // helps with may call `block_on` while the outer drive waits). A nested
        // drive must not swallow a wake meant for the outer future, so it
        // neither clears the flag on entry nor leaves it clear on exit:
        // at worst the outer future is polled once more than needed.
        let depth = DRIVE_DEPTH.with(|d| {
            d.set(d.get() + 1);
            d.get()
        });
        if depth == 1 {
            signal.woken.store(false, Ordering::Relaxed);
        }
        let _restore = RestoreDepth(signal);
        loop {
            DRIVING.with(|d| d.set(true));
            let polled = catch_unwind(AssertUnwindSafe(|| {
                slot.as_mut()
                    .as_pin_mut()
                    .expect("the future is only taken out after it completes")
                    .poll(&mut cx)
            }));
            DRIVING.with(|d| d.set(false));
            match polled {
                Ok(Poll::Ready(value)) => return Ok(value),
                Ok(Poll::Pending) => {}
                Err(payload) => {
                    let message = panic_message(&*payload);
                    crate::pool::task::drop_quietly(payload);
                    return Err(Stopped::Panicked(message));
                }
            }
            let mut pending_since = None;
            loop {
                // Help first, every time round (when the pool says it must):
                // a future that keeps waking itself must not starve the job
                // it waits for. One job per turn, then the future again.
                let helped = waiting.is_some_and(Waiting::try_help);
                if signal.woken.swap(false, Ordering::Acquire) {
                    if let Some(since) = pending_since.filter(|_| !helped) {
                        learn_spin(since, signal);
                    }
                    break;
                }
                if helped {
                    pending_since = None;
                    continue;
                }
                if pending_since.is_none() {
                    let now = Instant::now();
                    pending_since = Some(now);
                    let budget = SPIN_BUDGET.with(|b| b.get().get());
                    let budget =
                        deadline.map_or(budget, |d| d.saturating_duration_since(now).min(budget));
                    if crate::spin::spin_until(now, budget, || signal.woken.load(Ordering::Relaxed))
                    {
                        continue;
                    }
                }
                match deadline {
                    None => std::thread::park(),
                    Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => std::thread::park_timeout(left),
                        _ => return Err(Stopped::Elapsed),
                    },
                }
            }
        }
    });
    match catch_unwind(AssertUnwindSafe(|| slot.as_mut().set(None))) {
        Ok(()) => result,
        Err(payload) => {
            let message = panic_message(&*payload);
            crate::pool::task::drop_quietly(payload);
            drop(result);
            Err(Stopped::Panicked(message))
        }
    }
}

/// How long a waiting `block_on` spins before it parks, at most: about
/// one cross-thread wake-up, which a future woken from another thread (a
/// pool worker, a runtime worker) then costs once rather than twice.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(40);

/// The bridge's two runtimes, each started on first use and never dropped
/// (they cannot be dropped on an async worker, and cannot hold up process
/// exit: their threads are simply not joined).
///
/// They are two so that one misbehaving caller cannot stall every other
/// caller's timers and IO. A tokio runtime drives its timers and IO from
/// whichever worker is parked, so workers blocked by a future stop the
/// reactor for everyone registered with it. Futures colorseam *spawns*
/// (`block_on_timeout`'s, `ForSync`'s) may block their worker; futures a
/// plain-thread `block_on` *polls on the caller's own thread* cannot block
/// anyone else's thread, only their timers and IO are shared. So the
/// latter get a runtime of their own that colorseam spawns nothing on.
static BRIDGE_SPAWN: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
static BRIDGE_IO: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();

fn start_bridge(
    cell: &'static OnceLock<Result<tokio::runtime::Runtime, String>>,
    name: &str,
) -> Result<&'static Handle, String> {
    cell.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map(tokio::runtime::Runtime::handle)
    .map_err(Clone::clone)
}

/// The runtime colorseam spawns futures on when the caller has none to
/// lend: `block_on_timeout`'s (which must run off the caller's thread to
/// honour its deadline) and `ForSync`'s, also from pool threads without a
/// multi-thread caller. Two workers named `colorseam-bridge`; a spawned
/// future that blocks one holds it until it yields.
pub(crate) fn bridge_handle() -> Result<Handle, String> {
    start_bridge(&BRIDGE_SPAWN, "colorseam-bridge").cloned()
}

/// The runtime a plain thread's `block_on` enters while it polls its
/// future on its own thread (so do a current-thread runtime's blocking
/// threads, and pool threads without a multi-thread caller): it lends the future a reactor (IO, timers)
/// driven by two workers named `colorseam-bridge-io` that colorseam never
/// spawns on, so futures blocking the spawn runtime's workers cannot stall
/// these timers. Tasks the future itself spawns run here. Pool jobs with no
/// caller's runtime to enter enter this one too, and deadlines polled
/// outside any runtime are timed here.
fn bridge() -> Result<&'static Handle, String> {
    start_bridge(&BRIDGE_IO, "colorseam-bridge-io")
}

/// [`bridge`], owned: for timers that must fire whatever spawned futures
/// do (deadlines polled outside any runtime).
pub(crate) fn bridge_io_handle() -> Result<Handle, String> {
    bridge().cloned()
}

fn is_bridge(handle: &Handle) -> bool {
    [&BRIDGE_SPAWN, &BRIDGE_IO].into_iter().any(|cell| {
        cell.get()
            .and_then(|rt| rt.as_ref().ok())
            .is_some_and(|rt| rt.handle().id() == handle.id())
    })
}

/// Where the calling code runs. See [`CallerContext`] for what it can and
/// cannot know, and which side it errs on.
///
/// It raises no panic and installs no panic hook: it reads colorseam's own
/// thread-local markers (a future its `block_on` polls, a pool thread's
/// job) and tokio's public answers (`runtime::worker_index()`,
/// `Handle::try_current()`, the runtime flavor). It costs a few
/// thread-local reads, a handle clone where a runtime is current, and a
/// reference count on a pool thread (the pool's name); no allocation.
///
/// # Examples
///
/// ```
/// use colorseam::CallerContext;
///
/// assert_eq!(colorseam::context(), CallerContext::NoRuntime);
///
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// rt.block_on(async {
///     assert!(colorseam::context().is_async());
/// });
/// ```
pub fn context() -> CallerContext {
    if DRIVING.try_with(Cell::get).unwrap_or(false) {
        return CallerContext::InsideBlockOn;
    }
    // A runtime's scheduler runs on this thread: a multi-thread worker, or
    // the thread that owns a current-thread runtime's driver. Checked before
    // "pool thread": a job may itself drive a runtime (`rt.block_on` inside
    // the closure), and blocking there freezes it.
    if tokio::runtime::worker_index().is_some() {
        return match Handle::try_current() {
            Ok(handle) if is_bridge(&handle) => CallerContext::BridgeThread,
            Ok(handle) => CallerContext::AsyncWorker {
                flavor: handle.runtime_flavor().into(),
            },
            // A scheduler without a current handle: only while this thread's
            // thread-locals are being torn down. Still a runtime's thread.
            Err(_) => CallerContext::AsyncWorker {
                flavor: RuntimeFlavor::Other,
            },
        };
    }
    if let Some(pool) = crate::job::current_pool_name() {
        return CallerContext::PoolThread { pool };
    }
    // No scheduler here. tokio says no more without a panic: a
    // `spawn_blocking` thread, a `Handle::enter` thread, a multi-thread
    // runtime's `block_on` future and a `LocalSet` that future drives all
    // look alike. None of them can freeze a runtime's workers, its IO or its
    // timers, so they are judged blocking threads (see `CallerContext`).
    match Handle::try_current() {
        Err(_) => CallerContext::NoRuntime,
        Ok(handle) => CallerContext::BlockingThread {
            flavor: handle.runtime_flavor().into(),
        },
    }
}

/// How a blocking entry point treats an async caller.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnWorker {
    Refuse,
    BlockInPlace,
}

fn error(
    kind: ErrorKind,
    name: Option<&Arc<str>>,
    operation: &'static str,
    location: &'static Location<'static>,
    started: Instant,
) -> Error {
    let name = name.map_or_else(unnamed, Arc::clone);
    Error::new(kind, name, location, started.elapsed()).with_operation(operation)
}

/// The shared engine behind `block_on`, `block_on_in_place` and the
/// adapters: picks the runtime and thread by calling context.
pub(crate) struct Call {
    /// The adapter's name; none for a bare `block_on` (not cloned per call:
    /// one shared `Arc` would be a contended counter across threads).
    pub(crate) name: Option<Arc<str>>,
    pub(crate) operation: &'static str,
    pub(crate) location: &'static Location<'static>,
    pub(crate) started: Instant,
    /// The sync caller's span, entered while its future is polled.
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl Call {
    #[track_caller]
    pub(crate) fn new(name: Option<Arc<str>>, operation: &'static str) -> Self {
        Call {
            name,
            operation,
            location: Location::caller(),
            started: Instant::now(),
            #[cfg(feature = "tracing")]
            span: tracing::Span::current(),
        }
    }

    /// A call made at a call site recorded earlier (an adapter's constructor).
    pub(crate) fn at(
        name: Option<Arc<str>>,
        operation: &'static str,
        location: &'static Location<'static>,
    ) -> Self {
        Call {
            name,
            operation,
            location,
            started: Instant::now(),
            #[cfg(feature = "tracing")]
            span: tracing::Span::current(),
        }
    }

    /// [`block_on`]'s rules, for the adapters.
    pub(crate) fn block_here<F: Future>(&self, future: F) -> Result<F::Output, Error> {
        self.run_here(future, OnWorker::Refuse)
    }

    /// The error for a call refused because it came from async code.
    pub(crate) fn refusal(&self) -> Error {
        self.error(ErrorKind::AsyncContext)
    }

    fn error(&self, kind: ErrorKind) -> Error {
        error(
            kind,
            self.name.as_ref(),
            self.operation,
            self.location,
            self.started,
        )
    }

    fn stopped(&self, stopped: Stopped) -> Error {
        match stopped {
            Stopped::Elapsed => self.error(ErrorKind::Timeout).with_phase(Phase::Running),
            Stopped::Panicked(message) => self
                .error(ErrorKind::Panicked)
                .with_phase(Phase::Running)
                .with_panic_message(message),
        }
    }

    /// Drives `future` on this thread (it need not be `Send`). The deadline
    /// is honoured whenever the future yields.
    fn run_here<F: Future>(&self, future: F, on_worker: OnWorker) -> Result<F::Output, Error> {
        #[cfg(feature = "tracing")]
        let future = tracing::Instrument::instrument(future, self.span.clone());
        let context = context();
        match context {
            // A current-thread runtime drives its IO and timers only while
            // its own thread is in `block_on`, which nothing guarantees from
            // here: use the bridge, like a plain thread.
            CallerContext::NoRuntime
            | CallerContext::BlockingThread {
                flavor: RuntimeFlavor::CurrentThread | RuntimeFlavor::Other,
            } => {
                let handle = bridge().map_err(|_| self.error(ErrorKind::SpawnFailed))?;
                let _entered = handle.enter();
                drive(future, None, None).map_err(|s| self.stopped(s))
            }
            CallerContext::BlockingThread { .. } => {
                drive(future, None, None).map_err(|s| self.stopped(s))
            }
            CallerContext::PoolThread { .. } => self.run_on_pool_thread(future),
            CallerContext::AsyncWorker {
                flavor: RuntimeFlavor::MultiThread,
            } if on_worker == OnWorker::BlockInPlace => {
                // `context()` says `AsyncWorker` only where a runtime's
                // scheduler runs on this thread, and with a multi-thread
                // handle that is one of its workers, where `block_in_place`
                // never refuses (its refusal is for a current-thread driver
                // or a `LocalSet` on a `block_on` thread, which are judged
                // otherwise before this point).
                tokio::task::block_in_place(|| drive(future, None, None))
                    .map_err(|s| self.stopped(s))
            }
            _ => Err(self.error(ErrorKind::AsyncContext)),
        }
    }

    fn run_on_pool_thread<F: Future>(&self, future: F) -> Result<F::Output, Error> {
        let handle = self.pool_thread_runtime(bridge_io_handle)?;
        let _entered = handle.enter();
        // No deadline here: the thread may help its pool while it waits.
        let waiting = crate::pool::help::waiting_here();
        drive(future, None, waiting.as_ref()).map_err(|s| self.stopped(s))
    }

    /// The runtime a pool thread's future runs against: the submitting
    /// caller's if it is a multi-thread runtime (its workers drive its IO
    /// and timers), else the bridge (a current-thread runtime's IO runs only
    /// while its own thread is in `block_on`, which nothing guarantees).
    /// `bridge` is the bridge's half to fall back on: the IO half for a
    /// future polled here, the spawn half for one spawned.
    fn pool_thread_runtime(&self, bridge: fn() -> Result<Handle, String>) -> Result<Handle, Error> {
        match crate::job::current().and_then(|job| job.runtime().cloned()) {
            Some(handle)
                if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                Ok(handle)
            }
            _ => bridge().map_err(|_| self.error(ErrorKind::SpawnFailed)),
        }
    }

    /// Runs `future` on a runtime (never on this thread) and waits for it
    /// until `deadline`, whatever the future does; at the deadline the
    /// future is cancelled on the runtime that owns it.
    pub(crate) fn run_until<F>(
        &self,
        future: F,
        deadline: Option<Instant>,
        on: Runtime,
    ) -> Result<F::Output, Error>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let Some(deadline) = deadline else {
            return self.run_here(future, OnWorker::Refuse);
        };
        let bridge = || bridge_handle().map_err(|_| self.error(ErrorKind::SpawnFailed));
        // A wait with a deadline never helps its pool (`pool::help`): nested
        // offloads of this future go to the pool's queue like any other.
        let handle = match context() {
            CallerContext::NoRuntime => bridge()?,
            CallerContext::BlockingThread { flavor } => {
                // A current-thread runtime runs spawned tasks only while its
                // own thread is in `block_on`, which nothing guarantees here.
                match (on, flavor) {
                    (Runtime::Caller, RuntimeFlavor::MultiThread) => Handle::current(),
                    _ => bridge()?,
                }
            }
            CallerContext::PoolThread { .. } => match on {
                Runtime::Caller => self.pool_thread_runtime(bridge_handle)?,
                Runtime::Bridge => bridge()?,
            },
            _ => return Err(self.error(ErrorKind::AsyncContext)),
        };
        #[cfg(feature = "tracing")]
        let future = tracing::Instrument::instrument(future, self.span.clone());
        let task = handle.spawn(future);
        let abort = task.abort_handle();
        let result = drive(task, Some(deadline), None);
        if result.is_err() {
            abort.abort();
        }
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(join_error)) if join_error.is_panic() => Err(self
                .error(ErrorKind::Panicked)
                .with_phase(Phase::Running)
                .with_panic(join_error.into_panic())),
            // Cancelled without us asking: its runtime shut down.
            Ok(Err(_cancelled)) => Err(self.error(ErrorKind::ShutDown).with_phase(Phase::Running)),
            Err(stopped) => Err(self.stopped(stopped)),
        }
    }
}

/// Which runtime a spawned call runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Runtime {
    /// The caller's, where it has a usable one; else the bridge.
    Caller,
    /// Always the bridge (resources built for the bridge, like `ForSync`'s).
    Bridge,
}

/// Runs a future to completion from sync code, correctly in every calling
/// context, and returns its output.
///
/// | caller | what happens |
/// | --- | --- |
/// | plain thread | the future is polled on this thread with colorseam's bridge runtime entered, so tokio IO and timers work; the future need not be `Send` |
/// | `spawn_blocking` thread (or `Handle::enter`) of a multi-thread runtime | polled here, against that runtime |
/// | `spawn_blocking` thread (or `Handle::enter`) of a current-thread runtime | polled here, against the bridge, as on a plain thread: that runtime drives its IO and timers only while its own thread is in `block_on`, which this thread cannot know |
/// | colorseam pool thread | polled here against the runtime of the async caller that submitted the job (else the bridge); nested offloads are queued like any other, and this thread runs them itself only when no other thread can (see below) |
/// | async task on a worker, a current-thread runtime's `block_on` future, a `LocalSet` on either | refused with [`ErrorKind::AsyncContext`]: `.await` instead |
/// | a multi-thread runtime's `block_on` future (`#[tokio::main]`), a `LocalSet` it drives | polled here, as on a `Handle::enter` thread: tokio gives no way to tell them apart without a panic (see [`CallerContext`]); it holds up that thread's futures, never the runtime's workers |
///
/// Tasks the future spawns with `tokio::spawn` go to the runtime it runs
/// against (the bridge runtime, from a plain thread). The bridge runtime
/// lives as long as the process, so such tasks outlive the call: a server
/// started inside one `block_on` keeps serving after it returns.
///
/// The bridge keeps callers apart: a future polled by `block_on` runs on
/// its caller's thread, so blocking inside it holds up only that caller,
/// and its IO and timers are driven by bridge workers that colorseam never
/// spawns work on. Futures that block inside [`block_on_timeout`] (or a
/// [`ForSync`](crate::adapter::ForSync) call) hold workers of the bridge's
/// other half, and do not slow these timers.
///
/// # Caveats
///
/// A few tokio futures look for a runtime when they are *created*, not when
/// they are polled (`tokio::time::sleep`, `timeout`, `interval`), and panic
/// outside one. Create them inside the async block that `block_on` polls:
/// `block_on(async { sleep(d).await })`, not `block_on(sleep(d))`.
///
/// What isolation cannot cover: tasks a plain-thread future (or a pool job
/// with no caller's runtime) spawns with `tokio::spawn` run on the two
/// workers that drive the bridge's IO and timers; a spawned task that blocks holds one, and two such tasks stall
/// the timers and IO of every plain-thread `block_on` until they yield.
/// Blocking work belongs in [`offload`](crate::offload) or
/// `spawn_blocking`, not in a spawned task. Likewise the futures that run
/// *on* the bridge (`block_on_timeout`'s and `ForSync`'s) share two
/// workers: two that block stall the others of their kind, whose callers
/// are still released at their deadlines.
///
/// # Nested offloads (on a pool thread)
///
/// An offload made by the future to the pool whose thread runs this
/// `block_on` is queued like any other: it takes an admission permit (and
/// waits for room, or is refused, when the queue is full), is refused after
/// shutdown, and runs on a free worker in parallel with the rest. Only as
/// a last resort, when no worker is idle and the pool is at `max_threads`,
/// does this thread run its own nested jobs itself while it waits (and,
/// while one of them waits for room in the full queue, other queued jobs,
/// which is what frees room), so an async → sync → async sandwich
/// completes even on a one-thread pool. It helps only with jobs that have no
/// deadline, and not while the future waits on an offload that has one:
/// a thread busy helping cannot release anyone at a deadline.
///
/// So on a pool with no thread to spare (a one-thread pool, say), a nested
/// offload *with* a deadline (`offload_timeout`, or a pool's
/// `default_timeout`) is not run by the waiting thread: it stays queued and
/// times out in [`Phase::Queued`]. The same holds for every nested offload
/// under [`block_on_timeout`], which never helps. Timers inside the future
/// other than colorseam's own deadlines (a `tokio::time::timeout`) are not
/// seen: while the thread helps with a job, they fire late. A nested job
/// that waits for the future that made it deadlocks when this thread has
/// to run it (as two jobs waiting on each other do on a one-thread pool).
///
/// # Errors
///
/// [`Error::is_async_context`] when called from async code;
/// [`Error::is_panic`] if the future panicked (it is dropped first);
/// [`ErrorKind::SpawnFailed`] if the bridge runtime could not start.
///
/// # Panics
///
/// None of its own, and none to learn where it runs: the calling context
/// comes from [`context()`], which reads thread-locals and tokio's public
/// answers, so a panic hook (even one that aborts) never sees colorseam
/// probe, and a `panic = "abort"` build behaves the same. Where two
/// contexts look alike, it errs on the side of [`CallerContext`]'s
/// caveats: a runtime's scheduler thread is always refused; a thread with
/// no scheduler of a runtime on it is never refused.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// // A plain `fn main`, no `#[tokio::main]`: timers work.
/// let value = colorseam::block_on(async {
///     tokio::time::sleep(Duration::from_millis(5)).await;
///     "slept"
/// })
/// .unwrap();
/// assert_eq!(value, "slept");
///
/// // From async code, a typed error instead of a panic or a deadlock.
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// let err = rt.block_on(async { colorseam::block_on(async { 1 }) }).unwrap_err();
/// assert!(err.is_async_context());
///
/// // A current-thread runtime's blocking thread: polled against the bridge.
/// let polled_against = rt.block_on(async {
///     tokio::task::spawn_blocking(|| {
///         colorseam::block_on(async { tokio::runtime::Handle::current().id() })
///     })
///     .await
///     .unwrap()
/// });
/// assert_ne!(polled_against.unwrap(), rt.handle().id());
/// ```
#[track_caller]
pub fn block_on<F: IntoFuture>(future: F) -> Result<F::Output, Error> {
    Call::new(None, "block_on").run_here(future.into_future(), OnWorker::Refuse)
}

/// [`block_on`] with a deadline `timeout` from now that releases the caller
/// even if the future never yields.
///
/// The future runs on a runtime thread, not the caller's (the current
/// runtime on a `spawn_blocking` thread, or the submitting caller's on a
/// pool thread, if it is a multi-thread runtime; else the bridge runtime's
/// spawn half), which is why it must be
/// `Send + 'static`. The caller waits with a timed park; at the deadline it
/// returns and the future is cancelled on the runtime that owns it (at its
/// next yield, if it ever yields).
///
/// On a pool thread it never runs queued jobs of its pool while it waits
/// (see [`block_on`]'s nested offloads): nested offloads run only on free
/// workers, and on a pool with none they wait until the deadline.
///
/// The deadline is all or nothing: at the deadline the whole future is
/// cancelled and only the timeout comes back. To keep partial results of a
/// fan-out, give each branch its own, shorter `tokio::time::timeout` inside
/// the future.
///
/// # Errors
///
/// As [`block_on`], plus [`Error::is_timeout`] at the deadline, and
/// [`ErrorKind::ShutDown`] if the runtime it ran on shut down.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let err = colorseam::block_on_timeout(
///     std::future::pending::<()>(),
///     Duration::from_millis(20),
/// )
/// .unwrap_err();
/// assert!(err.is_timeout());
/// ```
#[track_caller]
pub fn block_on_timeout<F>(future: F, timeout: Duration) -> Result<F::Output, Error>
where
    F: IntoFuture,
    F::IntoFuture: Send + 'static,
    F::Output: Send + 'static,
{
    let call = Call::new(None, "block_on");
    let deadline = call.started.checked_add(timeout).unwrap_or_else(far_future);
    call.run_until(future.into_future(), Some(deadline), Runtime::Caller)
}

/// [`block_on_timeout`] with an absolute deadline.
#[track_caller]
pub fn block_on_deadline<F>(future: F, deadline: Instant) -> Result<F::Output, Error>
where
    F: IntoFuture,
    F::IntoFuture: Send + 'static,
    F::Output: Send + 'static,
{
    Call::new(None, "block_on").run_until(future.into_future(), Some(deadline), Runtime::Caller)
}

/// [`block_on`], except that on a multi-thread runtime's worker it blocks in
/// place with [`tokio::task::block_in_place`] instead of refusing.
///
/// This is the explicit opt-in for code that must block inside a runtime.
/// Other tasks on this worker move to another worker first; the runtime
/// loses a worker while the future runs. A current-thread runtime has no
/// other worker, so its driver (its `block_on` future, its tasks, a
/// `LocalSet` on it) is still refused. Everywhere else it behaves as
/// [`block_on`].
///
/// It asks tokio to block in place only on a multi-thread worker, where
/// `block_in_place` has no reason to refuse; it never provokes, catches or
/// hides a panic of tokio's. A `LocalSet` inside a task on a multi-thread
/// worker blocks in place too: the worker's other tasks move on, the
/// `LocalSet`'s own tasks wait for the future.
///
/// # Errors
///
/// As [`block_on`]; [`Error::is_async_context`] on a current-thread
/// runtime's driver.
///
/// # Caveats
///
/// On a current-thread runtime's driver thread that has also entered a
/// multi-thread runtime's handle, tokio's `block_in_place` panics; colorseam
/// cannot see that from tokio's public state and does not catch it.
#[track_caller]
pub fn block_on_in_place<F: IntoFuture>(future: F) -> Result<F::Output, Error> {
    Call::new(None, "block_on").run_here(future.into_future(), OnWorker::BlockInPlace)
}

/// The empty name of a bare `block_on` (no pool, no adapter), shared so a
/// call does not allocate one.
pub(crate) fn unnamed() -> Arc<str> {
    static EMPTY: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));
    EMPTY.clone()
}

/// A deadline far enough away to mean "none" without overflowing.
pub(crate) fn far_future() -> Instant {
    let now = Instant::now();
    now.checked_add(Duration::from_secs(86_400 * 365 * 30))
        .unwrap_or(now)
}
