//! Graceful shutdown with a deadline and a report.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::Inner;
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
}

fn begin(inner: &Arc<Inner>, options: ShutdownOptions) -> Start {
    let at = Instant::now();
    let completed_before = inner.completed_total();
    let cancelled = inner.begin_shutdown(options.queued) as u64;
    Start {
        at,
        deadline: at.checked_add(options.timeout),
        completed_before,
        cancelled,
    }
}

fn finish(inner: &Inner, start: &Start) -> ShutdownReport {
    let (abandoned, cancelled_late) = if inner.is_settled_now() {
        (0, 0)
    } else {
        inner.abandon_running()
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
                loop {
                    let notified = inner.settled_async.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    if inner.is_settled_now() {
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
