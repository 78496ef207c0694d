//! Graceful shutdown with a deadline and a report.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{Inner, help};
use crate::sync::lock_std as lock;

/// What shutdown does with jobs that are queued but not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueuedWork {
    /// Run them (within the deadline), as if the pool were still open.
    Run,
    /// Cancel them: they never run and their callers get a shut-down error.
    Cancel,
}

/// How a [`BlockingPool::shutdown`](crate::BlockingPool::shutdown) proceeds.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ShutdownOptions {
    /// How long to wait for running (and, with [`QueuedWork::Run`], queued)
    /// work before abandoning it.
    pub timeout: Duration,
    /// What to do with queued work.
    pub queued: QueuedWork,
}

impl ShutdownOptions {
    /// Wait up to `timeout`, running queued work.
    pub fn run_queued(timeout: Duration) -> Self {
        ShutdownOptions {
            timeout,
            queued: QueuedWork::Run,
        }
    }

    /// Wait up to `timeout` for running work; cancel queued work at once.
    pub fn cancel_queued(timeout: Duration) -> Self {
        ShutdownOptions {
            timeout,
            queued: QueuedWork::Cancel,
        }
    }
}

/// What a shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Jobs that finished (returned or panicked) while shutdown waited.
    pub completed: u64,
    /// Queued jobs cancelled by shutdown; they never ran.
    pub cancelled: u64,
    /// Running jobs still going at the deadline: their callers were released
    /// with a shut-down error and their threads left to finish alone.
    pub abandoned: u64,
    /// How long the shutdown took.
    pub elapsed: Duration,
}

struct Start {
    at: Instant,
    deadline: Option<Instant>,
    completed_before: u64,
    cancelled: u64,
    /// Set when a thread of this very pool shuts it down (from a job).
    except: Option<Except>,
}

/// A shutdown made on a thread of the pool it shuts down: it waits for
/// everything but that thread's own jobs, which cannot settle while it
/// waits. Registered with the pool while it lives, so the pool wakes it.
struct Except {
    pool: Arc<Inner>,
    slot: usize,
}

impl Drop for Except {
    fn drop(&mut self) {
        help::end_except_slot(&self.pool, self.slot);
    }
}

impl Start {
    fn except_slot(&self) -> Option<usize> {
        self.except.as_ref().map(|e| e.slot)
    }
}

fn begin(inner: &Arc<Inner>, options: ShutdownOptions) -> Start {
    let at = Instant::now();
    let except = super::current_slot_in(inner).map(|slot| {
        help::except_slot(inner, slot);
        Except {
            pool: inner.clone(),
            slot,
        }
    });
    let completed_before = inner.completed_total();
    let cancelled = inner.begin_shutdown(options.queued) as u64;
    Start {
        at,
        deadline: at.checked_add(options.timeout),
        completed_before,
        cancelled,
        except,
    }
}

fn finish(inner: &Inner, start: &Start) -> ShutdownReport {
    let except = start.except_slot();
    let (abandoned, cancelled_late) = if inner.is_settled_now(except) {
        (0, 0)
    } else {
        inner.abandon_running(except)
    };
    ShutdownReport {
        completed: inner
            .completed_total()
            .saturating_sub(start.completed_before),
        cancelled: start.cancelled + cancelled_late as u64,
        abandoned: abandoned as u64,
        elapsed: start.at.elapsed(),
    }
}

pub(super) fn shutdown_blocking(inner: &Arc<Inner>, options: ShutdownOptions) -> ShutdownReport {
    let start = begin(inner, options);
    if start.except.is_some() {
        wait_on_own_thread(inner, &start);
        return finish(inner, &start);
    }
    let mut shared = lock(&inner.shared);
    while !inner.is_settled(&shared) {
        let wait = match start.deadline {
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(wait) if !wait.is_zero() => wait,
                _ => break,
            },
            None => Duration::from_secs(3600),
        };
        shared = inner
            .settled
            .wait_timeout(shared, wait)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
    }
    drop(shared);
    finish(inner, &start)
}

/// A shutdown from a job of the pool itself: parks until everything but
/// this thread's jobs has settled (the pool unparks it at every change) or
/// the deadline, helping run queued work meanwhile when nothing else can
/// and the shutdown has no deadline (the rules of `help`).
fn wait_on_own_thread(inner: &Arc<Inner>, start: &Start) {
    let waiting = match start.deadline {
        None => help::waiting_for_shutdown(),
        Some(_) => None,
    };
    loop {
        if inner.is_settled_now(start.except_slot()) {
            return;
        }
        let left = match start.deadline {
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return,
            },
            None => None,
        };
        if waiting.as_ref().is_some_and(help::Waiting::try_help) {
            continue;
        }
        match left {
            Some(left) => std::thread::park_timeout(left),
            None => std::thread::park(),
        }
    }
}

/// The future returned by [`BlockingPool::shutdown`](crate::BlockingPool::shutdown).
///
/// Resolves to a [`ShutdownReport`] once queued and running work has
/// settled, or at the deadline, whichever comes first.
///
/// # Panics
///
/// Polling it with a finite deadline outside a tokio runtime with timers
/// enabled panics, as every tokio timer does.
#[must_use = "the shutdown has begun; await this to wait for work to settle and get the report"]
pub struct Shutdown {
    inner: Pin<Box<dyn Future<Output = ShutdownReport> + Send>>,
}

impl Shutdown {
    pub(super) fn start(inner: Arc<Inner>, options: ShutdownOptions) -> Self {
        let start = begin(&inner, options);
        Shutdown {
            inner: Box::pin(async move {
                let deadline = start.deadline.map(tokio::time::Instant::from_std);
                // A pool thread driving this future must not help past the
                // deadline (see `help`).
                let _hold = deadline.and_then(|_| help::hold_here());
                // Without a deadline, a pool thread that shuts its own pool
                // down and drives this future in `block_on` may run any
                // queued job, as `shutdown_blocking` does there: the shutdown
                // waits for the whole queue, which may need this very thread.
                let _any_job = match (deadline, start.except.is_some()) {
                    (None, true) => help::any_job_wanted_here(&inner),
                    _ => None,
                };
                loop {
                    let notified = inner.settled_async.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    if inner.is_settled_now(start.except_slot()) {
                        break;
                    }
                    match deadline {
                        Some(deadline) => {
                            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                                break;
                            }
                        }
                        None => notified.await,
                    }
                }
                finish(&inner, &start)
            }),
        }
    }
}

impl Future for Shutdown {
    type Output = ShutdownReport;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ShutdownReport> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown").finish_non_exhaustive()
    }
}
