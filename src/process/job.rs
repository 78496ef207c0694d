//! One call to a process pool: what it asks, where it is, how it ended.

use std::panic::Location;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;

use crate::error::{Error, ErrorKind, Phase, ProcessInfo};
use crate::sync::lock_std as lock;

/// Where a call is. Every change is made under the job's lock, and exactly
/// one party moves it out of `Queued` or `Running`: the worker's
/// supervisor (it finished), the caller (it gave up), or shutdown. That is
/// what makes every call resolve exactly once.
pub(crate) enum State {
    Queued,
    /// On a worker process; the handle is kept so a caller that gives up
    /// can kill it at once.
    Running {
        child: Arc<Mutex<Child>>,
        pid: u32,
    },
    /// Ended with this outcome, not yet taken by the caller (`None` once
    /// taken).
    Finished(Option<Result<Vec<u8>, Error>>),
    /// The caller gave up (its deadline passed or it dropped the future)
    /// and made its own error; nothing more is delivered.
    Left,
}

/// Why a caller gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveUp {
    Timeout,
    Dropped,
}

pub(crate) struct Job {
    pub(crate) function: Arc<str>,
    pub(crate) input: Mutex<Option<Vec<u8>>>,
    pub(crate) state: Mutex<State>,
    waker: Mutex<Option<Waker>>,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    pub(crate) pool_name: Arc<str>,
    pub(crate) location: &'static Location<'static>,
    pub(crate) called_at: Instant,
    pub(crate) deadline: Option<Instant>,
    /// Set when a supervisor takes it out of the queue.
    pub(crate) started_at: Mutex<Option<Instant>>,
}

impl Job {
    pub(crate) fn new(
        function: Arc<str>,
        input: Vec<u8>,
        pool_name: Arc<str>,
        location: &'static Location<'static>,
        deadline: Option<Instant>,
    ) -> Self {
        Job {
            function,
            input: Mutex::new(Some(input)),
            state: Mutex::new(State::Queued),
            waker: Mutex::new(None),
            permit: Mutex::new(None),
            pool_name,
            location,
            called_at: Instant::now(),
            deadline,
            started_at: Mutex::new(None),
        }
    }

    /// An error about this call, `elapsed` measured now.
    pub(crate) fn error(&self, kind: ErrorKind, pid: Option<u32>) -> Error {
        Error::new(
            kind,
            self.pool_name.clone(),
            self.location,
            self.called_at.elapsed(),
        )
        .with_operation("process call")
        .with_process(ProcessInfo {
            function: self.function.clone(),
            pid,
            ..ProcessInfo::default()
        })
    }

    /// An error carrying how the worker ended.
    pub(crate) fn error_with(&self, kind: ErrorKind, info: ProcessInfo) -> Error {
        Error::new(
            kind,
            self.pool_name.clone(),
            self.location,
            self.called_at.elapsed(),
        )
        .with_operation("process call")
        .with_process(ProcessInfo {
            function: self.function.clone(),
            ..info
        })
    }

    pub(crate) fn set_permit(&self, permit: OwnedSemaphorePermit) {
        *lock(&self.permit) = Some(permit);
    }

    /// Gives the admission permit back. A release may wake a waiter for
    /// room, which is user code: never call this under a lock.
    pub(crate) fn release_permit(&self) {
        let permit = lock(&self.permit).take();
        if let Err(panic) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(permit)))
        {
            std::mem::forget(panic);
        }
    }

    pub(crate) fn register(&self, cx: &Context<'_>) {
        let mut waker = lock(&self.waker);
        match &*waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *waker = Some(cx.waker().clone()),
        }
    }

    /// Wakes the caller (outside every lock: a waker is user code).
    pub(crate) fn wake(&self) {
        let waker = lock(&self.waker).take();
        if let Some(waker) = waker {
            if let Err(panic) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || waker.wake()))
            {
                std::mem::forget(panic);
            }
        }
    }

    /// Delivers `outcome` if the job is still queued or running (only
    /// queued, with `queued_only`); returns false when someone else ended
    /// it first, and then drops the outcome. `count` is bumped under the
    /// job's lock, before the caller can see the outcome, so a caller that
    /// has its result reads metrics that include it. Wakes the caller.
    pub(crate) fn finish(
        &self,
        outcome: Result<Vec<u8>, Error>,
        queued_only: bool,
        count: &[&AtomicU64],
    ) -> bool {
        let delivered = {
            let mut state = lock(&self.state);
            let open = match *state {
                State::Queued => true,
                State::Running { .. } => !queued_only,
                State::Finished(_) | State::Left => false,
            };
            if open {
                *state = State::Finished(Some(outcome));
                for counter in count {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
            open
        };
        if delivered {
            self.wake();
        }
        delivered
    }

    /// The caller gives up. `Ok(phase)` if it won (queued: the job never
    /// runs; running: its worker is killed here), `Err(())` if the job had
    /// already ended (read it).
    pub(crate) fn give_up(&self) -> Result<(Phase, Option<u32>), ()> {
        let killed = {
            let mut state = lock(&self.state);
            match std::mem::replace(&mut *state, State::Left) {
                State::Queued => None,
                State::Running { child, pid } => Some((child, pid)),
                other => {
                    *state = other;
                    return Err(());
                }
            }
        };
        match killed {
            None => Ok((Phase::Queued, None)),
            Some((child, pid)) => {
                kill(&child);
                Ok((Phase::Running, Some(pid)))
            }
        }
    }
}

/// SIGKILL to a worker not yet reaped: its pid cannot have been reused,
/// since only its supervisor reaps it, under the same lock.
pub(crate) fn kill(child: &Mutex<Child>) {
    let _exited_already = lock(child).kill();
}
