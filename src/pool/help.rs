//! Help while waiting: a pool thread that waits (in `block_on`, or in a
//! shutdown of its own pool) may run queued jobs of its pool itself, as a
//! last resort.
//!
//! An offload made inside `block_on` on a pool thread (a *nested* offload)
//! is queued like any other: it takes an admission permit (or, when the
//! pool is full, borrows its waiting job's: see `loan`), is refused after
//! shutdown, and free workers run it in
//! parallel with everything else. The thread that waits for it does not
//! run it, unless nothing else can:
//!
//! - no worker is idle (or already woken for work, or being started), and
//!   the pool cannot grow: it is at `max_threads` (below that, the pool starts a thread
//!   itself or the monitor does once it sees the waiting worker blocked);
//! - the job has no deadline: a job run here could not be abandoned at its
//!   deadline without abandoning the waiting thread's own work, and if its
//!   caller is the very future this thread drives, nobody would even look
//!   at the deadline until it returned;
//! - the wait itself has no deadline (`block_on`, not `block_on_timeout`;
//!   a shutdown without a timeout), and no offload with a deadline that the
//!   waiting future has polled is still pending (a [`Hold`]): while the
//!   thread helps, nobody polls that future, so nobody would release such
//!   a caller at its deadline.
//!
//! A thread that helps runs only its own nested jobs (those made on this
//! thread), with two exceptions that take any queued job in queue order:
//! while the future waits for room in this pool (room frees only when a
//! queued job runs, and this thread may be the only one left to run it),
//! and in a shutdown of its own pool, which waits for the whole queue.
//! Running another caller's job otherwise could close a cycle that plain
//! queueing does not have: that job may wait for what this thread does
//! after its `block_on`. The room exception can still close such a cycle
//! (the job it runs to free room may wait for this thread); that is the
//! price of a nested offload behind a full queue completing at all when no
//! other thread frees up. A job with a deadline that no thread frees up for
//! stays queued and times out in the `Queued` phase, like any other.
//!
//! A thread finds its own jobs without walking the queue: each worker slot
//! keeps, in queue order, weak handles to the jobs made on its thread
//! ([`MadeHere`]), and the oldest one still queued is looked up in the queue
//! from both ends at once, so finding it costs what removing it from the
//! `VecDeque` costs anyway (the distance to the nearer end; a nested job is
//! usually at the back). A scan of the whole queue per help made every
//! sandwich cost O(jobs in flight): 3.5 µs a sandwich with 100 in flight,
//! 26 µs with 3,000, 110-150 µs with 10,000.
//!
//! Who runs a job is decided when it is taken out of the queue, under the
//! pool lock, by exactly one thread (a worker's pop or a helper's remove);
//! that thread records itself as the runner (the worker slot's `job`, or
//! the helper's `helping` stack) under the same lock, then claims the job
//! with the state machine's single start CAS. An abandonment looks at the
//! record under the same lock, so it knows whether a worker's thread must
//! be accounted for: the record cannot change while it looks.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use super::state::Status;
use super::task::{RunsOn, Task};
use super::{Inner, Shared};
use crate::sync::lock_std as lock;

thread_local! {
    /// The state of the innermost helping wait on this thread.
    static WAIT: RefCell<Option<Arc<WaitState>>> = const { RefCell::new(None) };
}

/// What the future a helping wait drives has told it, through [`Hold`]s.
struct WaitState {
    /// The pool the waiting thread works for (its address, for identity).
    pool: usize,
    /// Pending offloads with a deadline: while any is, no help at all.
    deadlines: AtomicUsize,
    /// Offloads to this pool waiting for room, and async shutdowns of this
    /// pool without a deadline: while any is, help with any queued job, not
    /// only this thread's own (room frees only when queued jobs run, a
    /// shutdown waits for them all, and only this thread may be left to
    /// run them).
    room: AtomicUsize,
}

/// A pool thread waiting for something, registered so that it may help its
/// pool (and be woken when it should). Dropping it ends the registration.
pub(crate) struct Waiting {
    pool: Arc<Inner>,
    slot: usize,
    /// Help with any queued job, not only this thread's own (a shutdown
    /// waits for the whole queue, which may need this very thread).
    any_job: bool,
    state: Arc<WaitState>,
    previous: Option<Arc<WaitState>>,
}

/// Registers the current thread, if it is a pool thread, as waiting in
/// `block_on` without a deadline: it may help with its own nested jobs (and
/// with any queued job while its future waits for room).
pub(crate) fn waiting_here() -> Option<Waiting> {
    waiting(false)
}

/// [`waiting_here`] for a shutdown of the thread's own pool, which may help
/// with any queued job.
pub(crate) fn waiting_for_shutdown() -> Option<Waiting> {
    waiting(true)
}

fn waiting(any_job: bool) -> Option<Waiting> {
    let (pool, slot) = super::current_worker()?;
    {
        let mut shared = lock(&pool.shared);
        shared.workers[slot].waiting += 1;
        shared.waiters += 1;
    }
    let state = Arc::new(WaitState {
        pool: Arc::as_ptr(&pool) as usize,
        deadlines: AtomicUsize::new(0),
        room: AtomicUsize::new(0),
    });
    let previous = WAIT.with(|w| w.replace(Some(state.clone())));
    Some(Waiting {
        pool,
        slot,
        any_job,
        state,
        previous,
    })
}

impl Waiting {
    /// Runs one queued job of the pool here if, and only if, nothing else
    /// can run it and helping breaks no deadline (see the module docs).
    /// True if it ran one (or took a tombstone out of the queue).
    pub(crate) fn try_help(&self) -> bool {
        if self.state.deadlines.load(Ordering::Acquire) > 0
            || self.pool.queued.load(Ordering::Relaxed) == 0
        {
            return false;
        }
        let any_job = self.any_job || self.state.room.load(Ordering::Acquire) > 0;
        self.pool.help_one(self.slot, any_job)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let previous = self.previous.take();
        let _ = WAIT.try_with(|w| *w.borrow_mut() = previous);
        let mut shared = lock(&self.pool.shared);
        shared.workers[self.slot].waiting -= 1;
        shared.waiters -= 1;
    }
}

/// Something the future a helping wait drives is waiting for, which
/// changes what the waiting thread may help with (see [`WaitState`]).
pub(crate) struct Hold {
    state: Arc<WaitState>,
    room: bool,
}

impl Hold {
    fn counter(&self) -> &AtomicUsize {
        if self.room {
            &self.state.room
        } else {
            &self.state.deadlines
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.counter().fetch_sub(1, Ordering::AcqRel);
    }
}

fn hold(room: bool, pool: Option<&Arc<Inner>>) -> Option<Hold> {
    let state = WAIT.try_with(|w| w.borrow().clone()).ok().flatten()?;
    if pool.is_some_and(|pool| Arc::as_ptr(pool) as usize != state.pool) {
        return None;
    }
    let hold = Hold { state, room };
    hold.counter().fetch_add(1, Ordering::AcqRel);
    Some(hold)
}

/// A pending call with a deadline, polled on this thread during a helping
/// wait: the thread does not help while it lives.
pub(crate) fn hold_here() -> Option<Hold> {
    hold(false, None)
}

/// A call to `pool` waiting for room, polled on this thread during a
/// helping wait for `pool`: while it lives, the thread may help with any
/// queued job (running one is what frees room).
pub(crate) fn room_wanted_here(pool: &Arc<Inner>) -> Option<Hold> {
    hold(true, Some(pool))
}

/// A shutdown of `pool` without a deadline, made on one of its threads and
/// polled there during a helping wait: while it lives, the thread may help
/// with any queued job, as a blocking shutdown of its own pool does (the
/// shutdown waits for the whole queue). Counted with the waits for room,
/// which ask the same.
pub(crate) fn any_job_wanted_here(pool: &Arc<Inner>) -> Option<Hold> {
    hold(true, Some(pool))
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold")
            .field("room", &self.room)
            .finish_non_exhaustive()
    }
}

/// The jobs made on one worker slot's thread and queued, oldest first:
/// weak handles, so that a job dropped by everyone else is not kept alive
/// (a `Weak` dropped under the pool lock runs no user code). Entries whose
/// job has left the queue are dropped as they reach the front, and all at
/// once when they would otherwise pile up behind a job queued for long.
#[derive(Default)]
pub(super) struct MadeHere {
    jobs: VecDeque<Weak<dyn Task>>,
    /// Length past which dead entries are swept out (amortised O(1)).
    sweep_at: usize,
}

/// Length of a [`MadeHere`] list before its first sweep.
const FIRST_SWEEP: usize = 64;

/// Records `job`, made on the thread of slot `slot`, as it is queued.
/// Called under the pool lock, just before the push, so that the list is
/// in queue order.
pub(super) fn made_here(shared: &mut Shared, slot: usize, job: &Arc<dyn Task>) {
    let Some(worker) = shared.workers.get_mut(slot) else {
        return;
    };
    let made = &mut worker.made_here;
    while made.jobs.front().is_some_and(|w| w.strong_count() == 0) {
        made.jobs.pop_front();
    }
    if made.jobs.len() >= made.sweep_at.max(FIRST_SWEEP) {
        made.jobs.retain(|w| w.strong_count() > 0);
        made.sweep_at = 2 * made.jobs.len();
    }
    made.jobs.push_back(Arc::downgrade(job));
}

/// Where `job` is in `queue`, looked for from both ends at once: as many
/// steps as its distance to the nearer end.
fn position_of(queue: &VecDeque<Arc<dyn Task>>, job: &Arc<dyn Task>) -> Option<usize> {
    let target = Arc::as_ptr(job).cast::<()>();
    let is = |index: usize| std::ptr::eq(Arc::as_ptr(&queue[index]).cast::<()>(), target);
    let (mut front, mut back) = (0, queue.len());
    while front < back {
        back -= 1;
        if is(back) {
            return Some(back);
        }
        if front < back {
            if is(front) {
                return Some(front);
            }
            front += 1;
        }
    }
    None
}

impl Inner {
    /// See [`Waiting::try_help`]: this thread's own jobs first, then, if
    /// `any_job`, any in queue order.
    fn help_one(self: &Arc<Self>, slot: usize, any_job: bool) -> bool {
        let mut shared = lock(&self.shared);
        if shared.idle + shared.pending_wakeups + shared.starting > 0
            || shared.active_threads < self.config.max_threads
        {
            return false;
        }
        let helpable =
            |job: &Arc<dyn Task>| job.status() == Status::Queued && job.deadline().is_none();
        // Handles upgraded from `made_here` that may be their jobs' last:
        // dropped with the lock released.
        let mut upgraded = Vec::new();
        let mut own = None;
        while let Some(weak) = shared.workers[slot].made_here.jobs.front() {
            let Some(job) = weak.upgrade() else {
                shared.workers[slot].made_here.jobs.pop_front();
                continue;
            };
            // Queued but not found: a worker took it out and has yet to
            // start it. Either way it is not this thread's to run.
            let index = helpable(&job)
                .then(|| position_of(&shared.queue, &job))
                .flatten();
            shared.workers[slot].made_here.jobs.pop_front();
            upgraded.push(job);
            if index.is_some() {
                own = index;
                break;
            }
        }
        let pick = own.or_else(|| {
            any_job
                .then(|| shared.queue.iter().position(helpable))
                .flatten()
        });
        let Some(index) = pick else {
            drop(shared);
            super::task::drop_quietly(upgraded);
            return false;
        };
        let job = shared
            .queue
            .remove(index)
            .expect("the index was found in this queue under this lock");
        shared.workers[slot].helping.push(job.clone());
        shared.helped_live += 1;
        drop(shared);
        // `run` catches the job's panics; this catches a waker's.
        let _ = catch_unwind(AssertUnwindSafe(|| job.clone().run(self, RunsOn::Helper)));
        let mut shared = lock(&self.shared);
        let record = shared.workers[slot].helping.pop();
        // An abandonment (under this lock) already uncounted it.
        if !matches!(job.status(), Status::Abandoned(_)) {
            shared.helped_live -= 1;
        }
        if shared.shutdown {
            self.notify_if_settled(&shared);
        }
        drop(shared);
        // The last `Arc` of a job may drop user values: never under the lock.
        super::task::drop_quietly((record, job, upgraded));
        true
    }
}

/// Whether `job` is being run by a helping thread (rather than a worker).
/// Called under the pool lock, which keeps the record still.
pub(super) fn is_helped<T: ?Sized>(shared: &Shared, job: &T) -> bool {
    let job = std::ptr::from_ref(job).cast::<()>();
    shared.workers.iter().any(|w| {
        w.helping
            .iter()
            .any(|h| std::ptr::eq(Arc::as_ptr(h).cast::<()>(), job))
    })
}

/// Every job running on a pool thread, each marked if it is helped; the
/// jobs of the thread in slot `except` left out.
pub(super) fn running_jobs(shared: &Shared, except: Option<usize>) -> Vec<(Arc<dyn Task>, bool)> {
    let mut running = Vec::new();
    for (slot, worker) in shared.workers.iter().enumerate() {
        if Some(slot) == except {
            continue;
        }
        running.extend(worker.job.iter().map(|job| (job.clone(), false)));
        running.extend(worker.helping.iter().map(|job| (job.clone(), true)));
    }
    running
}

/// How many of the jobs counted in `busy` and `helped_live` run on the
/// thread in slot `except`, not abandoned.
pub(super) fn own_live_jobs(shared: &Shared, except: Option<usize>) -> (usize, usize) {
    let Some(worker) = except.and_then(|slot| shared.workers.get(slot)) else {
        return (0, 0);
    };
    let live = |job: &Arc<dyn Task>| !matches!(job.status(), Status::Abandoned(_));
    let busy = worker.job.iter().filter(|job| live(job)).count();
    let helped = worker.helping.iter().filter(|job| live(job)).count();
    (busy, helped)
}

/// Wakes a pool thread that waits and may help, for a job queued when no
/// thread can take it: the thread that made it (`made_on`) if it waits,
/// else any. Consumes the guard: the thread is woken with the lock released.
pub(super) fn wake_a_helper(shared: std::sync::MutexGuard<'_, Shared>, made_on: Option<usize>) {
    let waits = |slot: &usize| shared.workers.get(*slot).is_some_and(|w| w.waiting > 0);
    let slot = made_on
        .filter(waits)
        .or_else(|| shared.workers.iter().position(|w| w.waiting > 0));
    let thread = slot.and_then(|slot| shared.workers[slot].thread.clone());
    drop(shared);
    if let Some(thread) = thread {
        thread.unpark();
    }
}

/// The waiting threads to wake after a worker took a job out of the queue
/// (called under the lock, woken with it released by [`wake`]), when what
/// is left has no thread to go to: a waiter that looked while this worker
/// was woken but had not yet taken its job (or was being started) saw a
/// thread on its way, did not help and parked; if that thread took another
/// job, the waiter's nested job stays queued with nobody to run it unless
/// the waiter looks again. Empty (no allocation, no scan) otherwise.
pub(super) fn waiters_to_wake(shared: &Shared, max_threads: usize) -> Vec<std::thread::Thread> {
    if shared.waiters == 0
        || shared.queue.is_empty()
        || shared.idle + shared.pending_wakeups + shared.starting > 0
        || shared.active_threads < max_threads
    {
        return Vec::new();
    }
    shared
        .workers
        .iter()
        .filter(|w| w.waiting > 0)
        .filter_map(|w| w.thread.clone())
        .collect()
}

/// Wakes the threads [`waiters_to_wake`] picked, to look again.
pub(super) fn wake(threads: Vec<std::thread::Thread>) {
    for thread in threads {
        thread.unpark();
    }
}

/// Wakes the threads that shut their own pool down, to look again.
pub(super) fn wake_shutdown_excepts(shared: &Shared) {
    for &slot in &shared.shutdown_excepts {
        if let Some(thread) = &shared.workers[slot].thread {
            thread.unpark();
        }
    }
}

/// Registers the thread in slot `slot` as shutting its own pool down.
pub(super) fn except_slot(pool: &Inner, slot: usize) {
    lock(&pool.shared).shutdown_excepts.push(slot);
}

/// Ends [`except_slot`].
pub(super) fn end_except_slot(pool: &Inner, slot: usize) {
    let mut shared = lock(&pool.shared);
    if let Some(i) = shared.shutdown_excepts.iter().position(|&s| s == slot) {
        shared.shutdown_excepts.swap_remove(i);
    }
}
