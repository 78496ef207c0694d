//! Where the calling code runs: [`context()`] and [`CallerContext`].

use std::sync::Arc;

use tokio::runtime::Handle;

use super::drive::is_driving;
use crate::bridge::is_bridge;

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
/// - Code inside a raw `tokio::task::block_in_place` closure runs where
///   tokio has left the runtime's scheduler (it hands the worker's other
///   tasks to a new worker first) with the runtime's handle still
///   current: it looks like a `Handle::enter` thread and is reported as
///   [`BlockingThread`](CallerContext::BlockingThread), which is what
///   `block_in_place` makes it. colorseam's `block_on` runs there and the
///   guard is silent; [`block_on_in_place`](crate::block_on_in_place)
///   does both steps in one call.
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
    if is_driving() {
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
