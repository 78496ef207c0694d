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

/// The facts about a job that its context exposes, type-erased.
pub(crate) trait JobInfo: Send + Sync {
    fn is_cancelled(&self) -> bool;
    fn deadline(&self) -> Option<Instant>;
    fn pool_name(&self) -> &Arc<str>;
    fn runtime(&self) -> Option<&tokio::runtime::Handle>;
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

    /// The call's deadline, if it has one.
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
