//! Lent permits: a job blocked in `block_on` lends its admission permit to
//! the nested offload it waits for.
//!
//! Admission counts jobs, `max_threads + queue_capacity` of them. A
//! *sandwich* (a job that calls `block_on` on an offload to its own pool) is
//! two jobs, but only one of them works at a time: the outer one waits for
//! the nested one. Counting both made the pool deadlock once outer jobs held
//! every permit, each waiting for a nested job that could not be admitted
//! (two sandwiches on `max_threads(1).queue_capacity(1)`, every time).
//!
//! So the outer job lends its permit. While a job of the pool runs, the
//! thread records it as the [`running`] job; `block_on` on that thread (or
//! the future `block_on_timeout` spawns for it) is wrapped in [`Lending`],
//! which makes the job the *lender* for whatever that future polls. A nested
//! offload to the same pool that finds no room, polled by that future,
//! [`borrow`]s the lender's permit instead of waiting: it holds the very
//! permit its outer job was admitted with, and gives it back when it leaves
//! the pool's capacity (ends, is cancelled, or is abandoned within budget).
//!
//! What this keeps exact:
//! - the semaphore's count: no permit is made or lost. A lender that leaves
//!   while its permit is out (it ended, or was abandoned within budget)
//!   marks it released, and the borrower drops it into the semaphore when it
//!   gives it back;
//! - one loan per lender at a time: a second nested offload of the same
//!   drive waits for room like any other, and a deeper level of nesting
//!   lends the permit of *its* outer job, so every level can make progress;
//! - threads: loans change what is admitted, never how many threads run
//!   (`max_threads + max_abandoned`, as before).
//!
//! What it relaxes: the queue may hold more than `queue_capacity` jobs, by
//! at most one per lent permit, and so per job blocked in `block_on`. And a
//! nested offload polled by the lending future but then left running past
//! the end of that `block_on` (a `select!` that drops it while it runs, past
//! the abandonment budget) shares the lender's permit with the lender until
//! it ends: at most one extra running job per running job, still within
//! the thread bound.
//!
//! Only offloads that would otherwise *wait* borrow: `try_offload` (which
//! never waits) and `detach` (which nobody awaits) go through admission.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::OwnedSemaphorePermit;

use super::Inner;
use super::task::Task;

/// A job of a pool, identified with its pool (by address: the job keeps
/// its pool alive while it runs, and `Lending` holds the job).
#[derive(Clone)]
pub(crate) struct Lender {
    pool: usize,
    job: Arc<dyn Task>,
}

thread_local! {
    /// The job this pool thread is running (innermost, when it helps).
    static RUNNING: RefCell<Option<Lender>> = const { RefCell::new(None) };
    /// The lender of the future being polled on this thread by a
    /// `Lending` wrapper, if any.
    static POLLING_FOR: RefCell<Option<Lender>> = const { RefCell::new(None) };
}

/// Restores a thread-local slot to what it held before, on drop.
pub(crate) struct Restore {
    slot: &'static std::thread::LocalKey<RefCell<Option<Lender>>>,
    previous: Option<Lender>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // `try_with`: the thread may be tearing down its locals.
        let _ = self.slot.try_with(|s| *s.borrow_mut() = previous);
    }
}

fn replace(
    slot: &'static std::thread::LocalKey<RefCell<Option<Lender>>>,
    value: Option<Lender>,
) -> Restore {
    let previous = slot.try_with(|s| s.replace(value)).ok().flatten();
    Restore { slot, previous }
}

/// Records `job`, of `pool`, as the job this thread runs until the guard
/// drops.
pub(crate) fn running(pool: &Inner, job: Arc<dyn Task>) -> Restore {
    let pool = std::ptr::from_ref(pool) as usize;
    replace(&RUNNING, Some(Lender { pool, job }))
}

/// The job this thread runs, as a lender for a `block_on` made here.
pub(crate) fn lender_here() -> Option<Lender> {
    RUNNING.try_with(|r| r.borrow().clone()).ok().flatten()
}

/// Takes the permit of the job whose future is being polled here, for a
/// nested offload to `pool` that found no room. `None` if no such job is
/// polling here, it belongs to another pool, or its permit is already lent
/// or released.
pub(crate) fn borrow(pool: &Arc<Inner>) -> Option<(OwnedSemaphorePermit, Arc<dyn Task>)> {
    let lender = POLLING_FOR
        .try_with(|p| p.borrow().clone())
        .ok()
        .flatten()?;
    if lender.pool != Arc::as_ptr(pool) as usize {
        return None;
    }
    let permit = lender.job.lend_permit()?;
    Some((permit, lender.job))
}

pin_project_lite::pin_project! {
    /// A future polled on behalf of a job blocked in `block_on`: nested
    /// offloads it polls may borrow the job's permit (see the module docs).
    pub(crate) struct Lending<F> {
        lender: Option<Lender>,
        #[pin]
        future: F,
    }
}

impl<F> Lending<F> {
    pub(crate) fn new(lender: Option<Lender>, future: F) -> Self {
        Lending { lender, future }
    }
}

impl<F: Future> Future for Lending<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if this.lender.is_none() {
            return this.future.poll(cx);
        }
        let _restore = replace(&POLLING_FOR, this.lender.clone());
        this.future.poll(cx)
    }
}
