//! A job as the pool sees it: the state machine plus what travels with it.

use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::sync::Arc;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Context;
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;

use super::Inner;
use super::monitor::InClosure;
use super::state::{EndedBy, JobCore, Status};
use crate::caller_runtime::CallerRuntime;
pub(crate) use crate::error::panic_message;
use crate::error::{Error, ErrorKind, Phase};
use crate::interrupt::registry::{Interrupts, Stats};
use crate::job::JobInfo;
use crate::sync::AtomicWaker;
use crate::sync::lock_std as lock;

pub(crate) type BoxFn<T> = Box<dyn FnOnce() -> T + Send>;

/// What running a closure produced: its value, or its panic's payload
/// (handed to the caller inside its error, for `Error::try_into_panic`).
pub(crate) type Outcome<T> = Result<T, Box<dyn std::any::Any + Send>>;

/// Facts fixed when the call is made.
pub(crate) struct CallSite {
    pub(crate) called_at: Instant,
    /// The deadline as nanoseconds after `called_at`, 0 for none (a call
    /// is never made with a deadline at or before its start: that one is
    /// timed out before it is queued). Not an `Option<Instant>`: 8 bytes
    /// less in every queued job. Exact up to 584 years after the call; a
    /// later deadline reads as 584 years (`JobContext::deadline`; the
    /// offload itself keeps the caller's `Instant`). See
    /// [`CallSite::deadline`].
    pub(crate) deadline_after: u64,
    pub(crate) location: &'static Location<'static>,
    /// The runtime of the async caller: entered around the closure and
    /// handed to a `block_on` inside it, while it runs. `None` for a
    /// detached job (nobody waits, so no runtime is known to run for it).
    pub(crate) runtime: Option<CallerRuntime>,
    /// The worker slot of the pool thread that made this call, when it was
    /// made on a thread of the same pool (a nested offload): that thread,
    /// if it ends up helping, runs its own nested jobs first.
    /// (A `u32`, not a `usize`: 8 bytes less in every queued job; a slot
    /// index is below `max_threads`.)
    pub(crate) made_on_slot: Option<u32>,
    /// The caller's span, entered on the pool thread while the job runs.
    #[cfg(feature = "tracing")]
    pub(crate) span: tracing::Span,
}

impl CallSite {
    /// Encodes `deadline` for a call made at `called_at`.
    pub(crate) fn encode_deadline(called_at: Instant, deadline: Option<Instant>) -> u64 {
        deadline.map_or(0, |at| {
            let after = at.saturating_duration_since(called_at);
            // At least 1 ns (0 is "none"); at most 584 years.
            u64::try_from(after.as_nanos()).unwrap_or(u64::MAX).max(1)
        })
    }

    /// The call's deadline, if it has one.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        (self.deadline_after != 0).then(|| {
            let after = std::time::Duration::from_nanos(self.deadline_after);
            self.called_at
                .checked_add(after)
                .unwrap_or_else(crate::block_on::far_future)
        })
    }
}

pub(crate) struct Job<T> {
    core: JobCore<BoxFn<T>, Outcome<T>>,
    waker: AtomicWaker,
    /// The admission permit; released when the job leaves the pool's
    /// capacity: it ends, is cancelled, or is abandoned within budget.
    permit: StdMutex<PermitSlot>,
    /// Set, under the pool lock, when this job's thread was abandoned within
    /// `max_abandoned` and so no longer counts against `max_threads`.
    abandon_budgeted: AtomicBool,
    /// No caller waits: failures go to the error sink.
    detached: bool,
    /// What the closure registered to stop it (`JobContext::on_cancel`).
    interrupts: Interrupts,
    /// The pool's interrupt counters, for an interrupter the job runs
    /// itself (registered just after its call was abandoned), and the
    /// pool's name (`Stats::pool`: one shared handle for both keeps every
    /// queued job 16 bytes smaller and its submit one refcount lighter).
    interrupt_stats: Arc<Stats>,
    pub(crate) site: CallSite,
}

/// A job's admission permit, which it may lend to the nested offload it
/// waits for, or hold on loan from its outer job (see `pool::loan`).
#[derive(Default)]
struct PermitSlot {
    permit: Option<OwnedSemaphorePermit>,
    /// The permit is out on loan to a nested job.
    lent: bool,
    /// The job has left the pool's capacity: a permit given back from a
    /// loan goes to the semaphore, not to this job.
    released: bool,
    /// The job whose permit this job holds on loan, to give it back to.
    /// (Boxed: a loan is rare, and a thin handle keeps every queued job 8
    /// bytes smaller.)
    lender: Option<Box<Arc<dyn Task>>>,
}

/// Where a job runs.
#[derive(Clone, Copy)]
pub(crate) enum RunsOn<'a> {
    /// On a pool worker, which shows the monitor when it is inside the
    /// closure (and which one: the worker's job count).
    Worker(&'a InClosure, u64),
    /// On a pool thread that helps while it waits (see `pool::help`).
    Helper,
}

/// The queue's view of a job, independent of its value type.
pub(crate) trait Task: JobInfo {
    /// Runs the job unless it was cancelled first (a tombstone, for which
    /// it returns false): on a worker of its own, or on a pool thread that
    /// helps while it waits. The caller took it out of the queue.
    fn run(self: Arc<Self>, pool: &Inner, on: RunsOn<'_>) -> bool;
    /// Ends a queued job on the pool's initiative. True if it was queued.
    fn cancel_by_pool(&self, pool: &Inner, by: EndedBy) -> bool;
    /// Tries to abandon a running job on the pool's initiative (shutdown).
    /// Does not wake the caller: the pool does, with its lock released.
    fn try_abandon_by_pool(&self) -> bool;
    /// The job was abandoned while running: sends its interrupters, with
    /// no lock held. Returns how many were sent.
    fn interrupt(&self, stats: &Arc<Stats>) -> usize;
    /// Wakes the caller, containing a panicking waker.
    fn wake_caller(&self);
    fn status(&self) -> Status;
    fn was_abandon_budgeted(&self) -> bool;
    fn mark_abandon_budgeted(&self);
    /// Gives the admission permit back, if the job still holds it. tokio
    /// wakes a caller waiting for room inside the release, so this is user
    /// code: never called under a pool lock, and a panicking waker is
    /// contained.
    fn release_permit(&self);
    /// Lends the job's permit to a nested job it waits for, if it holds it
    /// (not lent already, not released).
    fn lend_permit(&self) -> Option<OwnedSemaphorePermit>;
    /// Gives a lent permit back: to the job if it still counts against the
    /// pool's capacity, else to the semaphore. Called with no lock held
    /// (the release may wake callers).
    fn take_back_permit(&self, permit: OwnedSemaphorePermit);
    /// The worker slot of the pool thread that made the call, if the call
    /// was made on a thread of this pool.
    fn made_on_slot(&self) -> Option<usize>;
    /// Where and when the call was made, for stuck-call snapshots.
    fn call_site(&self) -> (&'static Location<'static>, Instant);
}

impl<T: Send + 'static> Job<T> {
    pub(crate) fn new(
        func: BoxFn<T>,
        interrupt_stats: Arc<Stats>,
        site: CallSite,
        detached: bool,
    ) -> Self {
        Job {
            core: JobCore::new(func),
            waker: AtomicWaker::new(),
            permit: StdMutex::new(PermitSlot::default()),
            abandon_budgeted: AtomicBool::new(false),
            detached,
            interrupts: Interrupts::new(),
            interrupt_stats,
            site,
        }
    }

    pub(crate) fn set_permit(&self, permit: OwnedSemaphorePermit) {
        lock(&self.permit).permit = Some(permit);
    }

    /// Holds `permit` on loan from `lender`, the outer job this nested job's
    /// caller runs in (see `pool::loan`).
    pub(crate) fn set_borrowed_permit(&self, permit: OwnedSemaphorePermit, lender: Arc<dyn Task>) {
        let mut slot = lock(&self.permit);
        slot.permit = Some(permit);
        slot.lender = Some(Box::new(lender));
    }

    pub(crate) fn register(&self, cx: &Context<'_>) {
        crate::sync::register(&self.waker, cx.waker());
    }

    pub(crate) fn core(&self) -> &JobCore<BoxFn<T>, Outcome<T>> {
        &self.core
    }

    /// True once an interrupter was sent to this job.
    pub(crate) fn interrupt_sent(&self) -> bool {
        self.interrupts.sent() > 0
    }

    pub(crate) fn error(&self, kind: ErrorKind) -> Error {
        Error::new(
            kind,
            self.interrupt_stats.pool.clone(),
            self.site.location,
            self.site.called_at.elapsed(),
        )
    }

    fn pool_error(&self, by: EndedBy, phase: Phase) -> Error {
        let kind = match by {
            EndedBy::SpawnFailed => ErrorKind::SpawnFailed,
            EndedBy::Shutdown | EndedBy::Caller => ErrorKind::ShutDown,
        };
        self.error(kind).with_phase(phase)
    }

    /// The error a caller sees for a job the pool ended.
    pub(crate) fn ended_by_pool_error(&self, status: Status) -> Option<Error> {
        match status {
            Status::Cancelled(by) => Some(self.pool_error(by, Phase::Queued)),
            Status::Abandoned(by) => Some(
                self.pool_error(by, Phase::Running)
                    .with_interrupt_sent(self.interrupt_sent()),
            ),
            _ => None,
        }
    }
}

impl<T: Send + 'static> JobInfo for Job<T> {
    fn is_cancelled(&self) -> bool {
        self.core.is_cancelled()
    }
    fn deadline(&self) -> Option<Instant> {
        self.site.deadline()
    }
    fn pool_name(&self) -> &Arc<str> {
        &self.interrupt_stats.pool
    }
    fn runtime(&self) -> Option<&tokio::runtime::Handle> {
        self.site.runtime.as_ref().and_then(CallerRuntime::handle)
    }
    fn interrupts(&self) -> &Interrupts {
        &self.interrupts
    }
    fn interrupt_stats(&self) -> &Arc<Stats> {
        &self.interrupt_stats
    }
}

impl<T: Send + 'static> Task for Job<T> {
    fn run(self: Arc<Self>, pool: &Inner, on: RunsOn<'_>) -> bool {
        let Some(func) = self.core.try_start() else {
            return false;
        };
        pool.job_started();
        let started = Instant::now();
        pool.queue_wait
            .record(started.saturating_duration_since(self.site.called_at));
        let info: Arc<dyn JobInfo> = self.clone();
        #[cfg(feature = "tracing")]
        let _entered = self.site.span.enter();
        // The caller's world, as in `spawn_blocking`: `tokio::spawn`,
        // `Handle::current()` and `tokio::fs` in the closure use the
        // submitting caller's runtime while it runs, else the bridge's IO
        // half, as a plain thread's `block_on` does (its timers, a nested
        // offload's deadline among them, cannot be stalled by futures
        // blocking the spawn half).
        let runtime = self
            .runtime()
            .cloned()
            .or_else(|| crate::bridge::bridge_io_handle().ok());
        let _in_runtime = runtime.as_ref().map(tokio::runtime::Handle::enter);
        // A `block_on` in the closure lends this job's permit to the nested
        // offload it waits for (`pool::loan`).
        let _running = super::loan::running(pool, self.clone());
        let outcome = crate::job::enter(info, || match on {
            RunsOn::Worker(probe, id) => {
                probe.enter(id);
                let outcome = catch_unwind(AssertUnwindSafe(func));
                probe.leave();
                outcome
            }
            RunsOn::Helper => catch_unwind(AssertUnwindSafe(func)),
        });
        // The closure has returned: from here no interrupter may reach it
        // (one still running is waited for), even if the abandonment wins
        // the race with `complete` below.
        let interrupted = self.interrupts.close();
        pool.run_time.record(started.elapsed());
        let panicked = outcome.is_err();
        if let (true, Err(payload)) = (self.detached, &outcome) {
            // Nobody reads a detached job's outcome: its panic goes to the
            // sink here, where it is also counted as a panic below. The
            // payload stays in the outcome, dropped quietly with it.
            let error = self
                .error(ErrorKind::Panicked)
                .with_phase(Phase::Running)
                .with_panic_message(panic_message(&**payload));
            pool.report_detached_failure(error);
        }
        // Room first, so a caller that resubmits as soon as it wakes finds it.
        self.release_permit();
        match self.core.complete(outcome) {
            Ok(()) => {
                pool.count_finished(panicked);
                self.waker.wake();
            }
            // Abandoned: nobody will read it; drop it here, on the pool thread.
            Err(unread) => {
                if interrupted {
                    pool.count_recovered();
                }
                drop_quietly(unread);
            }
        }
        true
    }

    fn cancel_by_pool(&self, pool: &Inner, by: EndedBy) -> bool {
        let Ok(func) = self.core.cancel(by) else {
            return false;
        };
        pool.job_left_queue();
        self.release_permit();
        drop_quietly(func);
        pool.count_ended_by_pool(by);
        if self.detached {
            pool.report_detached_failure(self.pool_error(by, Phase::Queued));
        }
        self.wake_caller();
        true
    }

    fn try_abandon_by_pool(&self) -> bool {
        self.core.abandon(EndedBy::Shutdown).is_ok()
    }

    fn interrupt(&self, stats: &Arc<Stats>) -> usize {
        crate::interrupt::send(&self.interrupts, stats)
    }

    fn wake_caller(&self) {
        // The pool wakes callers from threads that must go on whatever a
        // waker does (the monitor, shutdown releasing the other callers).
        let _ = catch_unwind(AssertUnwindSafe(|| self.waker.wake()));
    }

    fn status(&self) -> Status {
        self.core.status()
    }

    fn was_abandon_budgeted(&self) -> bool {
        self.abandon_budgeted.load(Ordering::Acquire)
    }

    fn mark_abandon_budgeted(&self) {
        self.abandon_budgeted.store(true, Ordering::Release);
    }

    fn release_permit(&self) {
        let (permit, lender) = {
            let mut slot = lock(&self.permit);
            slot.released = true;
            match slot.permit.take() {
                // Out on loan: whoever gives it back forwards it (below).
                None => return,
                Some(permit) => (permit, slot.lender.take().map(|lender| *lender)),
            }
        };
        match lender {
            Some(lender) => {
                lender.take_back_permit(permit);
                // Its last `Arc` may drop its closure or value: user code.
                drop_quietly(lender);
            }
            None => drop_quietly(permit),
        }
    }

    fn lend_permit(&self) -> Option<OwnedSemaphorePermit> {
        let mut slot = lock(&self.permit);
        if slot.lent || slot.released {
            return None;
        }
        let permit = slot.permit.take()?;
        slot.lent = true;
        Some(permit)
    }

    fn take_back_permit(&self, permit: OwnedSemaphorePermit) {
        let (give_up, lender) = {
            let mut slot = lock(&self.permit);
            slot.lent = false;
            if slot.released {
                (Some(permit), slot.lender.take().map(|lender| *lender))
            } else {
                slot.permit = Some(permit);
                (None, None)
            }
        };
        // With this job's lock released: the release may wake a waiter.
        match (give_up, lender) {
            // This job left while its permit was out, and held it on loan
            // itself: it goes on back to the job it came from.
            (Some(permit), Some(lender)) => {
                lender.take_back_permit(permit);
                drop_quietly(lender);
            }
            (permit, _) => drop_quietly(permit),
        }
    }

    fn call_site(&self) -> (&'static Location<'static>, Instant) {
        (self.site.location, self.site.called_at)
    }

    fn made_on_slot(&self) -> Option<usize> {
        self.site.made_on_slot.map(|slot| slot as usize)
    }
}

/// Drops a value whose `Drop` is user code, so a panicking destructor cannot
/// take a pool thread or the caller's task down with it.
pub(crate) fn drop_quietly<V>(value: V) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(value))) {
        // The payload's own destructor is user code too; leak it rather than
        // risk a panic in this recovery path.
        std::mem::forget(payload);
    }
}

// Not under loom, whose primitives are larger.
#[cfg(all(test, not(colorseam_loom)))]
mod tests {
    /// What every queued job carries inline, beside its closure: the
    /// heap cost of a deep queue (`compare`'s memory row: 250 bytes per
    /// job with this at 216, 362 when it was 320).
    #[test]
    fn a_queued_job_stays_within_its_size_budget() {
        let size = std::mem::size_of::<super::Job<u64>>();
        assert!(
            size <= 216 + if cfg!(feature = "tracing") { 32 } else { 0 },
            "a Job<u64> is {size} bytes; it was 216 (248 with tracing's span)"
        );
    }
}
