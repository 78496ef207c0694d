//! The job state machine: who may run, cancel, abandon or read a job.
//!
//! ```text
//!            try_start          complete
//!  QUEUED ─────────────▶ RUNNING ──────────▶ COMPLETING ──▶ DONE
//!    │                      │
//!    │ cancel(by)           │ abandon(by)
//!    ▼                      ▼
//!  CANCELLED_{CALLER,SHUTDOWN,SPAWN}   ABANDONED_{CALLER,SHUTDOWN}
//! ```
//!
//! Every transition is a single compare-and-swap, so exactly one party wins
//! each race: a job is either started or cancelled, never both; a running job
//! is either completed or abandoned, never both. The closure, and later the
//! result, live in one slot that only the CAS winner touches, which is what
//! makes "the closure runs at most once" and "the value is delivered or
//! dropped exactly once" hold. `COMPLETING` exists so the worker can store the value *after*
//! winning the race with abandonment, and readers only look at the slot once
//! `DONE` is published.

use crate::sync::{AtomicU8, Mutex, Ordering, lock};

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const COMPLETING: u8 = 2;
const DONE: u8 = 3;
const CANCELLED_BY_CALLER: u8 = 4;
const CANCELLED_BY_SHUTDOWN: u8 = 5;
const CANCELLED_SPAWN_FAILED: u8 = 6;
const ABANDONED_BY_CALLER: u8 = 7;
const ABANDONED_BY_SHUTDOWN: u8 = 8;

/// Who ended a job early, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndedBy {
    /// The caller timed out or dropped its future.
    Caller,
    /// The pool shut down.
    Shutdown,
    /// No thread could be started to run it (only ever for queued jobs).
    SpawnFailed,
}

/// What a caller or the pool sees when it looks at a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Queued,
    Running,
    /// The worker won against abandonment and is storing the value.
    Completing,
    Done,
    Cancelled(EndedBy),
    Abandoned(EndedBy),
}

pub(crate) struct JobCore<F, T> {
    state: AtomicU8,
    /// The closure until it is taken, then the value once published: one
    /// slot, since a job never holds both (one lock less in every job).
    slot: Mutex<Slot<F, T>>,
}

/// What a job's slot holds; only the winner of the state's CAS touches it.
enum Slot<F, T> {
    Func(F),
    Value(T),
    Empty,
}

impl<F, T> Slot<F, T> {
    fn take_func(&mut self) -> Option<F> {
        match std::mem::replace(self, Slot::Empty) {
            Slot::Func(func) => Some(func),
            other => {
                *self = other;
                None
            }
        }
    }

    fn take_value(&mut self) -> Option<T> {
        match std::mem::replace(self, Slot::Empty) {
            Slot::Value(value) => Some(value),
            other => {
                *self = other;
                None
            }
        }
    }
}

impl<F, T> JobCore<F, T> {
    pub(crate) fn new(func: F) -> Self {
        JobCore {
            state: AtomicU8::new(QUEUED),
            slot: Mutex::new(Slot::Func(func)),
        }
    }

    pub(crate) fn status(&self) -> Status {
        decode(self.state.load(Ordering::Acquire))
    }

    /// Claims a queued job for running. Returns its closure, exactly once
    /// over the job's life, or `None` if it was cancelled first.
    ///
    /// Who runs it (a worker of its own, or a pool thread helping while it
    /// waits) is not decided here: only one thread takes a job out of the
    /// pool's queue, and it records itself as the runner under the pool
    /// lock before it calls this (see `pool::help`).
    pub(crate) fn try_start(&self) -> Option<F> {
        self.state
            .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        let func = lock(&self.slot).take_func();
        debug_assert!(func.is_some(), "the start CAS winner owns the closure");
        func
    }

    /// Cancels a job that has not started. On success returns the closure so
    /// the caller can drop it (its captures) where it chooses.
    pub(crate) fn cancel(&self, by: EndedBy) -> Result<Option<F>, Status> {
        let to = match by {
            EndedBy::Caller => CANCELLED_BY_CALLER,
            EndedBy::Shutdown => CANCELLED_BY_SHUTDOWN,
            EndedBy::SpawnFailed => CANCELLED_SPAWN_FAILED,
        };
        match self
            .state
            .compare_exchange(QUEUED, to, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(lock(&self.slot).take_func()),
            Err(now) => Err(decode(now)),
        }
    }

    /// Abandons a running job: whoever calls this stops waiting for it. The
    /// runner will drop the value when (if) the job returns.
    pub(crate) fn abandon(&self, by: EndedBy) -> Result<(), Status> {
        let to = match by {
            EndedBy::Caller => ABANDONED_BY_CALLER,
            EndedBy::Shutdown | EndedBy::SpawnFailed => ABANDONED_BY_SHUTDOWN,
        };
        self.state
            .compare_exchange(RUNNING, to, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(decode)
    }

    /// Publishes the job's value. If the job was abandoned meanwhile, hands
    /// the value back so the runner drops it on its own thread.
    pub(crate) fn complete(&self, value: T) -> Result<(), T> {
        let claimed = self
            .state
            .compare_exchange(RUNNING, COMPLETING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if !claimed {
            return Err(value);
        }
        let mut slot = lock(&self.slot);
        // The start took the closure out: nothing else is overwritten here.
        debug_assert!(
            matches!(*slot, Slot::Empty),
            "completing a job whose slot is full"
        );
        *slot = Slot::Value(value);
        drop(slot);
        self.state.store(DONE, Ordering::Release);
        Ok(())
    }

    /// Takes the published value. `Some` at most once, and only after `DONE`.
    pub(crate) fn take_result(&self) -> Option<T> {
        if self.state.load(Ordering::Acquire) != DONE {
            return None;
        }
        lock(&self.slot).take_value()
    }

    /// True once the job was cancelled or abandoned, by anyone.
    pub(crate) fn is_cancelled(&self) -> bool {
        matches!(self.status(), Status::Cancelled(_) | Status::Abandoned(_))
    }
}

fn decode(state: u8) -> Status {
    match state {
        QUEUED => Status::Queued,
        RUNNING => Status::Running,
        COMPLETING => Status::Completing,
        DONE => Status::Done,
        CANCELLED_BY_CALLER => Status::Cancelled(EndedBy::Caller),
        CANCELLED_BY_SHUTDOWN => Status::Cancelled(EndedBy::Shutdown),
        CANCELLED_SPAWN_FAILED => Status::Cancelled(EndedBy::SpawnFailed),
        ABANDONED_BY_CALLER => Status::Abandoned(EndedBy::Caller),
        ABANDONED_BY_SHUTDOWN => Status::Abandoned(EndedBy::Shutdown),
        other => unreachable!("job state byte {other} is never written"),
    }
}

#[cfg(all(test, colorseam_loom))]
mod loom_models {
    //! Run with `RUSTFLAGS="--cfg colorseam_loom" cargo test --release --lib loom`.
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicUsize;

    /// A value that counts its drops, to check "dropped exactly once".
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Invariant: whatever the interleaving of a worker (start then
    /// complete), the caller (cancel, else abandon, else read) and shutdown
    /// (cancel, else abandon), the closure runs at most once, the call is
    /// resolved exactly once, and the result value is dropped exactly once
    /// if it was produced.
    #[test]
    fn loom_cancel_vs_start_vs_complete_resolves_exactly_once() {
        loom::model(|| {
            let runs = Arc::new(AtomicUsize::new(0));
            let drops = Arc::new(AtomicUsize::new(0));
            let core: Arc<JobCore<Box<dyn FnOnce() -> Counted + Send>, Counted>> = {
                let runs = runs.clone();
                let drops = drops.clone();
                Arc::new(JobCore::new(Box::new(move || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Counted(drops)
                })))
            };

            let worker = {
                let core = core.clone();
                loom::thread::spawn(move || {
                    if let Some(f) = core.try_start() {
                        if let Err(value) = core.complete(f()) {
                            drop(value); // abandoned: dropped on the worker
                        }
                    }
                })
            };
            let shutdown = {
                let core = core.clone();
                loom::thread::spawn(move || match core.cancel(EndedBy::Shutdown) {
                    Ok(_) => 1usize,
                    Err(Status::Running) => usize::from(core.abandon(EndedBy::Shutdown).is_ok()),
                    Err(_) => 0,
                })
            };

            // The caller gives up at once (a 0 ms deadline).
            let caller_resolved_itself = match core.cancel(EndedBy::Caller) {
                Ok(_) => true,
                Err(Status::Running) => core.abandon(EndedBy::Caller).is_ok(),
                Err(_) => false,
            };
            worker.join().unwrap();
            let shutdown_resolved = shutdown.join().unwrap();

            let status = core.status();
            let delivered = core.take_result();
            let resolutions = usize::from(caller_resolved_itself)
                + shutdown_resolved
                + usize::from(delivered.is_some());
            assert_eq!(resolutions, 1, "final status {status:?}");
            assert!(runs.load(Ordering::SeqCst) <= 1);
            drop(delivered);
            assert_eq!(
                drops.load(Ordering::SeqCst),
                runs.load(Ordering::SeqCst),
                "every produced value is dropped exactly once"
            );
            assert!(
                core.take_result().is_none(),
                "a value is taken at most once"
            );
        });
    }

    /// Invariant: a job has exactly one runner, and an abandonment accounts
    /// for a thread exactly when that runner is a worker of its own. The
    /// claim and help protocol of `pool::help`: a worker (pop) and a helping
    /// waiter (remove) race to take the one queued job out of the queue; the
    /// taker records itself as the runner under the queue lock and then
    /// makes the start CAS. The caller gives up at once: it cancels, else
    /// abandons under the same lock and reads the record. The helped count
    /// returns to zero, the closure runs at most once, and a helped job's
    /// abandonment never touches thread accounting.
    #[test]
    fn loom_worker_vs_helper_take_decides_who_accounts_for_the_thread() {
        use loom::sync::Mutex as LoomMutex;
        use std::collections::VecDeque;

        type Core = JobCore<Box<dyn FnOnce() -> u32 + Send>, u32>;
        #[derive(Default)]
        struct Pool {
            queue: VecDeque<Arc<Core>>,
            /// The job the worker runs, and the one the helper runs.
            worker_job: Option<Arc<Core>>,
            helping: Option<Arc<Core>>,
            helped_live: usize,
            threads_accounted: usize,
        }

        loom::model(|| {
            let runs = Arc::new(AtomicUsize::new(0));
            let job: Arc<Core> = {
                let runs = runs.clone();
                Arc::new(JobCore::new(Box::new(move || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    1
                })))
            };
            let pool = Arc::new(LoomMutex::new(Pool::default()));
            pool.lock().unwrap().queue.push_back(job.clone());

            let takers: Vec<_> = [false, true]
                .into_iter()
                .map(|helper| {
                    let pool = pool.clone();
                    loom::thread::spawn(move || {
                        let taken = {
                            let mut p = pool.lock().unwrap();
                            let taken = p.queue.pop_front();
                            if let Some(job) = &taken {
                                if helper {
                                    p.helping = Some(job.clone());
                                    p.helped_live += 1;
                                } else {
                                    p.worker_job = Some(job.clone());
                                }
                            }
                            taken
                        };
                        let Some(job) = taken else { return false };
                        if let Some(f) = job.try_start() {
                            let _ = job.complete(f());
                        }
                        let mut p = pool.lock().unwrap();
                        if helper {
                            p.helping = None;
                            if !matches!(job.status(), Status::Abandoned(_)) {
                                p.helped_live -= 1;
                            }
                        } else {
                            p.worker_job = None;
                        }
                        true
                    })
                })
                .collect();

            let mut abandoned_helped = false;
            match job.cancel(EndedBy::Caller) {
                Ok(_) => {}
                Err(Status::Running) => {
                    let mut p = pool.lock().unwrap();
                    if job.abandon(EndedBy::Caller).is_ok() {
                        let helped = p.helping.as_ref().is_some_and(|h| Arc::ptr_eq(h, &job));
                        if helped {
                            p.helped_live -= 1;
                            abandoned_helped = true;
                        } else {
                            assert!(
                                p.worker_job.as_ref().is_some_and(|w| Arc::ptr_eq(w, &job)),
                                "a running job is recorded by its runner"
                            );
                            p.threads_accounted += 1;
                        }
                    }
                }
                Err(_) => {}
            }
            let took: Vec<bool> = takers.into_iter().map(|t| t.join().unwrap()).collect();
            assert_eq!(took.iter().filter(|t| **t).count(), 1, "one taker");
            assert!(runs.load(Ordering::SeqCst) <= 1);
            let p = pool.lock().unwrap();
            assert_eq!(p.helped_live, 0, "the helped count returns to zero");
            if abandoned_helped {
                assert_eq!(p.threads_accounted, 0, "a helped job frees no thread");
            }
            assert!(p.threads_accounted <= usize::from(took[0]));
        });
    }

    /// Invariant: the pool's capacity counters return to zero. A job is
    /// submitted (counted queued, holding a permit) while a worker pops the
    /// queue and the caller gives up at once; whoever wins the job's CAS,
    /// and only they, uncounts it from the queue, and the permit is
    /// released exactly once (by the worker when it finishes, or by the
    /// caller when it cancels or abandons within budget).
    #[test]
    fn loom_submit_vs_pop_vs_cancel_returns_every_counter_to_zero() {
        use loom::sync::Mutex as LoomMutex;
        use std::collections::VecDeque;
        loom::model(|| {
            type Core = JobCore<Box<dyn FnOnce() -> u8 + Send>, u8>;
            let queue: Arc<LoomMutex<VecDeque<Arc<Core>>>> =
                Arc::new(LoomMutex::new(VecDeque::new()));
            let queued = Arc::new(AtomicUsize::new(0));
            let permits_released = Arc::new(AtomicUsize::new(0));
            let job: Arc<Core> = Arc::new(JobCore::new(Box::new(|| 1)));

            // Submit: counted, then visible in the queue.
            queued.fetch_add(1, Ordering::SeqCst);
            queue.lock().unwrap().push_back(job.clone());

            let worker = {
                let (queue, queued, permits) =
                    (queue.clone(), queued.clone(), permits_released.clone());
                loom::thread::spawn(move || {
                    let popped = queue.lock().unwrap().pop_front();
                    if let Some(job) = popped {
                        if let Some(f) = job.try_start() {
                            queued.fetch_sub(1, Ordering::SeqCst);
                            let value = f();
                            let abandoned_before = job.complete(value).is_err();
                            // Over budget or not abandoned: the worker still
                            // holds the permit; within budget the caller took it.
                            if !abandoned_before {
                                permits.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                })
            };
            // The caller gives up at once.
            match job.cancel(EndedBy::Caller) {
                Ok(_) => {
                    queued.fetch_sub(1, Ordering::SeqCst);
                    permits_released.fetch_add(1, Ordering::SeqCst);
                }
                Err(Status::Running) => {
                    if job.abandon(EndedBy::Caller).is_ok() {
                        permits_released.fetch_add(1, Ordering::SeqCst); // within budget
                    }
                }
                Err(_) => {}
            }
            worker.join().unwrap();
            // A completion the caller lost the race to publishes the value;
            // the worker released the permit then.
            assert_eq!(queued.load(Ordering::SeqCst), 0, "queued returns to zero");
            assert_eq!(
                permits_released.load(Ordering::SeqCst),
                1,
                "one permit, released once"
            );
        });
    }

    /// Invariant: no lost wake-up. The caller registers its waker and then
    /// looks at the job (as `Offload::poll` does); the worker completes the
    /// job and then wakes (as `Job::run` does). In every interleaving the
    /// caller either sees `DONE` on its look or is woken afterwards.
    #[test]
    fn loom_a_waiting_caller_is_always_woken_when_its_job_completes() {
        use crate::sync::AtomicWaker;
        use loom::sync::atomic::AtomicBool;

        struct Flag(Arc<AtomicBool>);
        impl std::task::Wake for Flag {
            fn wake(self: std::sync::Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }

        loom::model(|| {
            let core: Arc<JobCore<Box<dyn FnOnce() -> u8 + Send>, u8>> =
                Arc::new(JobCore::new(Box::new(|| 5)));
            let waker_slot = Arc::new(AtomicWaker::new());
            let woken = Arc::new(AtomicBool::new(false));
            let worker = {
                let (core, waker_slot) = (core.clone(), waker_slot.clone());
                loom::thread::spawn(move || {
                    let f = core.try_start().expect("nobody else starts it");
                    assert!(core.complete(f()).is_ok());
                    waker_slot.wake();
                })
            };
            let waker = std::task::Waker::from(std::sync::Arc::new(Flag(woken.clone())));
            crate::sync::register(&waker_slot, &waker);
            let saw_done = core.status() == Status::Done;
            worker.join().unwrap();
            assert!(saw_done || woken.load(Ordering::SeqCst), "lost wake-up");
        });
    }

    /// Invariant: a reader that sees `DONE` always finds the value (no
    /// window where the state says done but the slot is empty).
    #[test]
    fn loom_done_is_published_after_the_value() {
        loom::model(|| {
            let core: Arc<JobCore<fn() -> u32, u32>> = Arc::new(JobCore::new(|| 7));
            let worker = {
                let core = core.clone();
                loom::thread::spawn(move || {
                    let f = core.try_start().expect("nobody else starts it");
                    assert!(core.complete(f()).is_ok());
                })
            };
            loop {
                match core.status() {
                    Status::Done => {
                        assert_eq!(core.take_result(), Some(7));
                        break;
                    }
                    _ => loom::thread::yield_now(),
                }
            }
            worker.join().unwrap();
        });
    }
}
