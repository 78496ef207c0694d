//! The future of one process pool call.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, TryAcquireError};

use super::job::{GiveUp, Job, State};
use super::pool::{Inner, bump};
use crate::deadline::Deadline;
use crate::error::{Error, ErrorKind, Phase, ProcessInfo};
use crate::sync::lock_std as lock;

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

pin_project_lite::pin_project! {
    /// The future of one call to a [`ProcessPool`](super::ProcessPool):
    /// the function's output bytes, or an [`Error`]; resolves exactly once.
    ///
    /// The call is submitted when it is made, not when first polled, so its
    /// deadline runs from the call and covers waiting for room, the queue
    /// and the run.
    ///
    /// # Errors
    ///
    /// - [`Error::is_timeout`]: the deadline passed. While the call ran,
    ///   its worker process was killed ([`Error::is_killed`]), reaped and
    ///   replaced.
    /// - [`Error::is_crash`]: the worker died while it ran the call (a
    ///   signal, see [`Error::signal`], or an exit, see
    ///   [`Error::exit_code`]).
    /// - [`Error::is_panic`]: the function panicked (the worker goes on).
    /// - [`ErrorKind::Job`]: a fallible function returned an error (its
    ///   message is the `source()`).
    /// - [`ErrorKind::NotRegistered`], [`Error::is_saturated`],
    ///   [`Error::is_shutdown`], [`ErrorKind::SpawnFailed`] (no worker
    ///   process could be started: the `source()` says why).
    ///
    /// # Cancellation
    ///
    /// Dropping it before it resolves cancels the call: a queued call never
    /// runs; a running call's worker process is killed (and replaced), so
    /// nothing keeps running for a caller who left.
    ///
    /// # Panics
    ///
    /// Polling after it has resolved panics. A call with a deadline first
    /// polled inside a tokio runtime built without timers panics in
    /// tokio's timer, as [`Offload`](crate::Offload) does.
    #[must_use = "a process call is submitted already; dropping this future cancels it (and kills its worker if it runs)"]
    pub struct Call {
        state: CallState,
        #[pin]
        deadline: Option<Deadline>,
    }

    impl PinnedDrop for Call {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // A call still waiting for room was never queued: nothing to undo.
            if let CallState::Submitted { job, pool } = this.state {
                let _won_or_ended = give_up(pool, job, GiveUp::Dropped);
            }
        }
    }
}

enum CallState {
    WaitingForRoom {
        job: Arc<Job>,
        pool: Arc<Inner>,
        acquire: Acquire,
    },
    Submitted {
        job: Arc<Job>,
        pool: Arc<Inner>,
    },
    Failed(Option<Error>),
    Done,
}

/// The caller leaves: the job never runs, or its worker is killed. Returns
/// the caller's error if it won the race, `None` if the job ended first.
fn give_up(pool: &Arc<Inner>, job: &Arc<Job>, why: GiveUp) -> Option<Error> {
    let (phase, pid) = job.give_up().ok()?;
    let c = &pool.counters;
    match (phase, why) {
        (Phase::Queued, GiveUp::Timeout) => bump(&c.timed_out_queued),
        (Phase::Queued, GiveUp::Dropped) => bump(&c.cancelled_queued),
        (_, GiveUp::Timeout) => bump(&c.timed_out_running),
        (_, GiveUp::Dropped) => bump(&c.cancelled_running),
    }
    if phase == Phase::Queued {
        pool.unqueue(job);
        job.release_permit();
    } else {
        bump(&c.killed);
        // The permit comes back from the supervisor once it has reaped
        // the killed worker.
    }
    Some(
        job.error_with(
            ErrorKind::Timeout,
            ProcessInfo {
                pid,
                killed: phase == Phase::Running,
                ..ProcessInfo::default()
            },
        )
        .with_phase(phase),
    )
}

impl Call {
    pub(crate) fn start(pool: &Arc<Inner>, job: Job, reject_when_full: bool) -> Call {
        let job = Arc::new(job);
        let deadline = match job.deadline {
            None => None,
            Some(at) if at <= job.called_at => {
                bump(&pool.counters.timed_out_waiting_for_room);
                return Call::failed(
                    job.error(ErrorKind::Timeout, None)
                        .with_phase(Phase::WaitingForRoom),
                );
            }
            Some(at) => Some(Deadline::new(at, job.called_at)),
        };
        let state = match pool.admission.clone().try_acquire_owned() {
            Ok(permit) => {
                job.set_permit(permit);
                submitted(pool, job)
            }
            Err(TryAcquireError::Closed) => {
                bump(&pool.counters.shut_down);
                CallState::Failed(Some(
                    job.error(ErrorKind::ShutDown, None)
                        .with_phase(Phase::WaitingForRoom),
                ))
            }
            Err(TryAcquireError::NoPermits) if reject_when_full => {
                bump(&pool.counters.rejected);
                CallState::Failed(Some(job.error(ErrorKind::Saturated, None)))
            }
            Err(TryAcquireError::NoPermits) => CallState::WaitingForRoom {
                acquire: Box::pin(pool.admission.clone().acquire_owned()),
                job,
                pool: pool.clone(),
            },
        };
        Call { state, deadline }
    }

    pub(crate) fn failed(error: Error) -> Call {
        Call {
            state: CallState::Failed(Some(error)),
            deadline: None,
        }
    }
}

fn submitted(pool: &Arc<Inner>, job: Arc<Job>) -> CallState {
    match pool.submit(job.clone()) {
        Ok(()) => CallState::Submitted {
            job,
            pool: pool.clone(),
        },
        Err(job) => {
            job.release_permit();
            bump(&pool.counters.shut_down);
            CallState::Failed(Some(
                job.error(ErrorKind::ShutDown, None)
                    .with_phase(Phase::WaitingForRoom),
            ))
        }
    }
}

impl Future for Call {
    type Output = Result<Vec<u8>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state {
                CallState::Done => panic!(
                    "a process `Call` was polled after it resolved; each call resolves exactly once"
                ),
                CallState::Failed(error) => {
                    let error = error
                        .take()
                        .expect("a failed call holds its error until polled");
                    *this.state = CallState::Done;
                    return Poll::Ready(Err(error));
                }
                CallState::WaitingForRoom { job, pool, acquire } => {
                    match acquire.as_mut().poll(cx) {
                        Poll::Ready(Ok(permit)) => {
                            job.set_permit(permit);
                            let (job, pool) = (job.clone(), pool.clone());
                            *this.state = submitted(&pool, job);
                        }
                        Poll::Ready(Err(_closed)) => {
                            bump(&pool.counters.shut_down);
                            let error = job
                                .error(ErrorKind::ShutDown, None)
                                .with_phase(Phase::WaitingForRoom);
                            *this.state = CallState::Done;
                            return Poll::Ready(Err(error));
                        }
                        Poll::Pending => {
                            if !deadline_passed(this.deadline.as_mut(), cx) {
                                return Poll::Pending;
                            }
                            bump(&pool.counters.timed_out_waiting_for_room);
                            let error = job
                                .error(ErrorKind::Timeout, None)
                                .with_phase(Phase::WaitingForRoom);
                            *this.state = CallState::Done;
                            return Poll::Ready(Err(error));
                        }
                    }
                }
                CallState::Submitted { job, pool } => {
                    job.register(cx);
                    let finished = match &mut *lock(&job.state) {
                        State::Finished(outcome) => Some(
                            outcome
                                .take()
                                .expect("a finished call's outcome is taken once, by its future"),
                        ),
                        State::Left => unreachable!("only this future leaves its call"),
                        State::Queued | State::Running { .. } => None,
                    };
                    if let Some(outcome) = finished {
                        *this.state = CallState::Done;
                        return Poll::Ready(outcome);
                    }
                    if !deadline_passed(this.deadline.as_mut(), cx) {
                        return Poll::Pending;
                    }
                    match give_up(pool, job, GiveUp::Timeout) {
                        Some(error) => {
                            *this.state = CallState::Done;
                            return Poll::Ready(Err(error));
                        }
                        // It ended meanwhile: read it.
                        None => continue,
                    }
                }
            }
        }
    }
}

fn deadline_passed(deadline: Pin<&mut Option<Deadline>>, cx: &mut Context<'_>) -> bool {
    deadline
        .as_pin_mut()
        .is_some_and(|deadline| deadline.poll_passed(cx))
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            CallState::WaitingForRoom { .. } => "waiting for room",
            CallState::Submitted { job, .. } => match &*lock(&job.state) {
                State::Queued => "queued",
                State::Running { .. } => "running",
                State::Finished(_) | State::Left => "ended",
            },
            CallState::Failed(_) => "failed",
            CallState::Done => "done",
        };
        f.debug_struct("Call")
            .field("state", &state)
            .field("has_deadline", &self.deadline.is_some())
            .finish()
    }
}
