//! What a sync job can know about the call it serves.
//!
//! A closure running on a [`BlockingPool`](crate::BlockingPool) thread cannot
//! be killed: when its caller times out or goes away, the pool *abandons* it
//! and the thread keeps running until the closure returns. Cooperative code
//! can do better. [`current()`] gives it the job's [`JobContext`]: whether the
//! caller has given up, the call's deadline and the time remaining, so a loop
//! can stop early (`job::current().map_or(Ok(()), |job| job.check())?`) and a
//! socket can be given `remaining()` as its read timeout.
//!
//! Code blocked in the OS or in C never polls. For that, a job registers
//! what stops it: [`JobContext::on_cancel`] runs a closure (shut a socket
//! down, kill a child, interrupt a query) when the call is abandoned, so the
//! job returns and its thread comes back. The [Cancellation
//! guide](crate::cancellation) says what is released, what is stopped and
//! what can only be abandoned.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let pool = colorseam::BlockingPool::builder().name("crawler").build().unwrap();
//! let result = pool
//!     .offload_timeout(
//!         || {
//!             let job = colorseam::job::current().expect("runs on a pool thread");
//!             for _page in 0.. {
//!                 job.check()?; // stop once the caller has given up
//!                 std::thread::sleep(Duration::from_millis(5));
//!             }
//!             Ok::<(), colorseam::job::Cancelled>(())
//!         },
//!         Duration::from_millis(50),
//!     )
//!     .await;
//! assert!(result.unwrap_err().is_timeout());
//! # }
//! ```

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::interrupt::registry::{self, Entry, Interrupts, Registered};

/// The facts about a job that its context exposes, type-erased.
pub(crate) trait JobInfo: Send + Sync {
    fn is_cancelled(&self) -> bool;
    fn deadline(&self) -> Option<Instant>;
    fn pool_name(&self) -> &Arc<str>;
    fn runtime(&self) -> Option<&tokio::runtime::Handle>;
    /// The interrupters the job registered (see [`JobContext::on_cancel`]).
    fn interrupts(&self) -> &Interrupts;
    /// The pool's interrupt counters.
    fn interrupt_stats(&self) -> &Arc<crate::interrupt::registry::Stats>;
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<dyn JobInfo>>> = const { RefCell::new(None) };
}

/// Runs `f` with `job` as the thread's current job.
pub(crate) fn enter<R>(job: Arc<dyn JobInfo>, f: impl FnOnce() -> R) -> R {
    struct Reset(Option<Arc<dyn JobInfo>>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            // `try_with` because the thread may be tearing down its locals.
            let _ = CURRENT.try_with(|current| *current.borrow_mut() = previous);
        }
    }
    let previous = CURRENT.with(|current| current.borrow_mut().replace(job));
    let _reset = Reset(previous);
    f()
}

/// The name of the pool whose job runs on this thread, read in place: the
/// job's own reference count is not touched (`context()` asks this on every
/// call), only the name's.
pub(crate) fn current_pool_name() -> Option<Arc<str>> {
    CURRENT
        .try_with(|current| {
            current
                .borrow()
                .as_ref()
                .map(|info| info.pool_name().clone())
        })
        .ok()
        .flatten()
}

/// The context of the job running on this thread, if this thread is running
/// a colorseam job.
///
/// Returns `None` anywhere else (async tasks, plain threads, tokio's own
/// blocking threads).
pub fn current() -> Option<JobContext> {
    CURRENT
        .try_with(|current| current.borrow().clone())
        .ok()
        .flatten()
        .map(|info| JobContext { info })
}

/// The view a sync job has of its call. Cheap to clone.
#[derive(Clone)]
pub struct JobContext {
    info: Arc<dyn JobInfo>,
}

impl JobContext {
    /// True once the caller has given up on this job (timed out, dropped its
    /// future) or the pool was shut down past its deadline. The job's result
    /// will be dropped unread, so it may as well stop.
    pub fn is_cancelled(&self) -> bool {
        self.info.is_cancelled()
    }

    /// Returns `Err(Cancelled)` once [`is_cancelled`](Self::is_cancelled) is
    /// true, for use with `?` at the checkpoints of a long job.
    ///
    /// # Errors
    ///
    /// [`Cancelled`] when the caller has given up.
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled { _private: () })
        } else {
            Ok(())
        }
    }

    /// Registers `f` to stop this job when its call is abandoned, for as
    /// long as the returned guard lives.
    ///
    /// Code blocked in a socket read, a child's `wait` or a C library never
    /// looks at [`is_cancelled`](Self::is_cancelled); `f` is what reaches it
    /// from outside: shut the socket down, kill the child, interrupt the
    /// query (the [`interrupt`](crate::interrupt) module has ready-made
    /// ones). The job then returns, and its thread comes back to the pool.
    ///
    /// # Behaviour
    ///
    /// - `f` runs at most once, when the call is abandoned while the job
    ///   runs: its deadline passes, its future is dropped (a fail-fast
    ///   batch drops the rest of its calls), or the pool's shutdown deadline
    ///   passes. It runs promptly, on a `colorseam-interrupt` thread (never
    ///   an async worker), with no colorseam lock held.
    /// - If the call is already abandoned, `f` runs at once: it has run
    ///   when `on_cancel` returns (here, or on an interrupt thread that the
    ///   abandonment handed it to in the same moment).
    /// - `f` never runs once the guard's drop has returned: dropping the
    ///   guard disarms it, and if `f` is running at that moment, the drop
    ///   waits for it to finish. So a connection given back to its pool
    ///   after the guard is gone is never interrupted by this call.
    /// - Nor once the job's closure has returned (a guard moved out of the
    ///   job, or `on_cancel` called from another thread after the job
    ///   ended): the closure's return disarms every registration (waiting
    ///   for one running), and a later one is dropped unrun.
    /// - The caller is released at its deadline whatever `f` does; the
    ///   release never waits for `f`.
    /// - The call's error says an interrupt was sent
    ///   ([`Error::interrupt_sent`](crate::Error::interrupt_sent)); the
    ///   pool's [metrics](crate::metrics::InterruptCounters) count
    ///   interrupters sent, their panics, and interrupted jobs that returned
    ///   (recovered).
    ///
    /// Each call registers one more interrupter: all of them run when the
    /// call is abandoned.
    ///
    /// # Panics
    ///
    /// Never because of `f`: a panic in it is caught, counted in
    /// [`InterruptCounters::panicked`](crate::metrics::InterruptCounters::panicked)
    /// and reported as a `tracing` warning (with the `tracing` feature).
    /// Under `panic = "abort"` a panic in `f` aborts, as any panic does.
    ///
    /// # Caveats
    ///
    /// - `f` must not wait for the job it interrupts (a lock the job holds
    ///   while it drops the guard, say): the guard's drop waits for `f`, so
    ///   that would deadlock the job. Keep `f` short: a flag, a `shutdown`,
    ///   a `kill`.
    /// - At most 16 interrupters run at once in the process; a further one
    ///   waits for one of them to return. An interrupter that never returns
    ///   holds one of them forever (and its job, whose guard's drop waits).
    /// - If the OS refuses to start an interrupt thread, interrupters wait
    ///   until one starts (each later interrupt tries again); a guard dropped
    ///   meanwhile disarms its interrupter.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    /// use std::net::{TcpListener, TcpStream};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // A server that accepts and never answers.
    /// let server = TcpListener::bind("127.0.0.1:0").unwrap();
    /// let addr = server.local_addr().unwrap();
    ///
    /// let pool = colorseam::BlockingPool::builder().name("fetch").build().unwrap();
    /// let err = pool
    ///     .offload_timeout(
    ///         move || {
    ///             let mut stream = TcpStream::connect(addr)?;
    ///             let job = colorseam::job::current().expect("runs on a pool thread");
    ///             // Shut the socket down if the call is abandoned.
    ///             let shutdown = colorseam::interrupt::shutdown_tcp(&stream)?;
    ///             let _guard = job.on_cancel(shutdown);
    ///             let mut reply = Vec::new();
    ///             stream.read_to_end(&mut reply)?; // returns once shut down
    ///             Ok::<_, std::io::Error>(reply)
    ///         },
    ///         Duration::from_millis(50),
    ///     )
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.is_timeout() && err.interrupt_sent());
    /// # drop(server);
    /// # }
    /// ```
    pub fn on_cancel<F>(&self, f: F) -> OnCancel
    where
        F: FnOnce() + Send + 'static,
    {
        let entry = match self.info.interrupts().register(f) {
            // Abandoned a moment ago: the abandoning side has not reached
            // the registry yet. Claimed and run here at once; or, if it
            // claimed it first, waited for (it runs on an interrupt thread
            // now), so either way it has run when this returns.
            Registered::Armed(entry) if self.info.is_cancelled() => {
                if registry::claim_armed(&*entry) {
                    self.info.interrupts().fired_early();
                    registry::run_claimed(&*entry, self.info.interrupt_stats());
                } else {
                    registry::disarm(&*entry);
                }
                Some(entry)
            }
            Registered::Armed(entry) => Some(entry),
            Registered::RunNow(entry, stats) => {
                registry::run_claimed(&*entry, &stats);
                Some(entry)
            }
            Registered::Closed => None,
        };
        OnCancel { entry }
    }

    /// The call's deadline, if it has one (one more than 584 years after
    /// the call reads as 584 years after it).
    pub fn deadline(&self) -> Option<Instant> {
        self.info.deadline()
    }

    /// Time left before the deadline (zero once it has passed), or `None`
    /// without a deadline. Pass it to socket and lock timeouts.
    pub fn remaining(&self) -> Option<Duration> {
        self.info
            .deadline()
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    /// The name of the pool running the job.
    pub fn pool(&self) -> &str {
        self.info.pool_name()
    }

    /// The tokio runtime of the async caller that submitted the job, if it
    /// was submitted from inside one and that runtime has not shut down.
    /// `None` for a detached job: nobody waits for it, so nothing keeps
    /// that runtime running.
    ///
    /// The closure runs with this runtime entered (as a `spawn_blocking`
    /// closure does), or with colorseam's bridge runtime where this is
    /// `None` when the job starts, so `tokio::spawn`, `Handle::current()`
    /// and `tokio::fs` work inside it.
    pub fn runtime(&self) -> Option<&tokio::runtime::Handle> {
        self.info.runtime()
    }
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("pool", &self.pool())
            .field("cancelled", &self.is_cancelled())
            .field("remaining", &self.remaining())
            .finish()
    }
}

/// The caller of this job has given up; returned by [`JobContext::check`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job cancelled: its caller has given up")]
pub struct Cancelled {
    _private: (),
}

/// Keeps an interrupter registered with [`JobContext::on_cancel`] armed;
/// dropping it disarms the interrupter.
///
/// The drop returns once the interrupter can no longer run: at once if it
/// has not started, or once it has finished if it is running. It may be
/// dropped on any thread, and during unwinding.
#[must_use = "dropping the guard disarms the interrupter at once"]
pub struct OnCancel {
    /// `None` once dropped, or if the job had returned at registration.
    entry: Option<Arc<dyn Entry>>,
}

impl OnCancel {
    /// True once the interrupter has started (it may still be running): the
    /// call was abandoned and the resource it reaches was interrupted. The
    /// job can tell an error it got from an interrupted resource from a real
    /// one this way.
    pub fn fired(&self) -> bool {
        self.entry.as_deref().is_some_and(registry::has_fired)
    }
}

impl Drop for OnCancel {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            registry::disarm(&*entry);
            // Likely the last handle: drops the interrupter (user code).
            crate::pool::task::drop_quietly(entry);
        }
    }
}

impl fmt::Debug for OnCancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnCancel")
            .field("fired", &self.fired())
            .finish()
    }
}
