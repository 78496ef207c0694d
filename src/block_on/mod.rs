//! Async work for sync callers: the `block_on` family, right in every
//! calling context.
//!
//! One file per concept: `context` (where the calling code runs), `drive`
//! (the executor that polls a future on the caller's own thread), `call`
//! (the engine that picks a runtime and a thread by context). The bridge
//! runtimes they fall back on are in `crate::bridge`, and help-while-waiting
//! (a pool thread running its own nested jobs) in `crate::pool::help`.

mod call;
mod context;
mod drive;

pub(crate) use call::{Call, Runtime, far_future};
pub use context::{CallerContext, RuntimeFlavor, context};

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use crate::error::Error;
use call::OnWorker;

/// Runs a future to completion from sync code, correctly in every calling
/// context, and returns its output.
///
/// | caller | what happens |
/// | --- | --- |
/// | plain thread | the future is polled on this thread with colorseam's bridge runtime entered, so tokio IO and timers work; the future need not be `Send` |
/// | `spawn_blocking` thread (or `Handle::enter`) of a multi-thread runtime | polled here, against that runtime |
/// | `spawn_blocking` thread (or `Handle::enter`) of a current-thread runtime | polled here, against the bridge, as on a plain thread: that runtime drives its IO and timers only while its own thread is in `block_on`, which this thread cannot know |
/// | colorseam pool thread | polled here against the runtime of the async caller that submitted the job (else the bridge); nested offloads are queued like any other, and this thread runs them itself only when no other thread can (see below) |
/// | async task on a worker, a current-thread runtime's `block_on` future, a `LocalSet` on either | refused with [`ErrorKind::AsyncContext`](crate::ErrorKind::AsyncContext): `.await` instead |
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
/// times out in [`Phase::Queued`](crate::Phase::Queued). The same holds for every nested offload
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
/// [`ErrorKind::SpawnFailed`](crate::ErrorKind::SpawnFailed) if the bridge runtime could not start.
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
/// [`ErrorKind::ShutDown`](crate::ErrorKind::ShutDown) if the runtime it ran on shut down.
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
///
/// # Errors
///
/// As for [`block_on_timeout`].
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
