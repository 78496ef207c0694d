//! Running sync code for async callers: the [`Offload`] future, batches, and
//! the default pool behind [`offload()`].

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, TryAcquireError};

use crate::deadline::Deadline;
use crate::error::{Error, ErrorKind, Phase};
use crate::pool::default::default_pool;
use crate::pool::help::Hold;
use crate::pool::state::Status;
use crate::pool::task::{BoxFn, CallSite, Job};
use crate::pool::{BlockingPool, GiveUp, Inner};

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

pin_project_lite::pin_project! {
    /// The future of one offloaded call; resolves exactly once.
    ///
    /// Returned by [`BlockingPool::offload`] and its family. The job is
    /// submitted when the call is made, not when the future is first polled,
    /// so its deadline runs from the call.
    ///
    /// The closure runs in its caller's world, as a `spawn_blocking`
    /// closure does: the tokio runtime current where the call was made is
    /// entered around it, so `tokio::spawn`, `Handle::current()` and
    /// `tokio::fs` (driven by `Handle::current().block_on` or
    /// [`block_on`](crate::block_on)) work inside. Where no runtime was
    /// current, or that runtime has shut down by the time the job starts,
    /// colorseam's bridge runtime is entered instead, and a `block_on` in
    /// the closure falls back to the bridge the same way.
    ///
    /// # Deadlines
    ///
    /// A deadline is real time (`std::time::Instant`), measured from the
    /// call, and needs no particular runtime: the call may be made anywhere
    /// and polled by any executor (a timer comes from the runtime current
    /// at the first poll, else from colorseam's bridge runtime). A paused
    /// tokio clock (`#[tokio::test(start_paused = true)]`, `time::pause`)
    /// neither cuts it short while the job really runs nor makes it pass
    /// early: tokio advances a paused clock as soon as the runtime is idle,
    /// so the rest of the wait is timed on the bridge, whose clock cannot
    /// be paused.
    ///
    /// A deadline that has already passed when the call is made (a zero
    /// timeout, an instant in the past) is refused before the job is
    /// accepted: the closure never runs, and the future resolves to
    /// [`Error::is_timeout`] in [`Phase::WaitingForRoom`] (counted in
    /// `timed_out_waiting_for_room`). Always, not as a race with a worker.
    /// Any later deadline is a real one: the job may start before it
    /// passes, and is then abandoned at the deadline if it is still running.
    ///
    /// # Errors
    ///
    /// Resolves to an [`Error`] when the deadline passes (in any phase), the
    /// job panics, the pool refuses it (saturated or shut down), or no thread
    /// could be started for it.
    ///
    /// # Cancellation
    ///
    /// Dropping it before it resolves cancels the call: a queued job is
    /// removed and never runs; a running job is abandoned (its
    /// [`JobContext`](crate::job::JobContext) reports cancellation and its
    /// value is dropped on the pool thread).
    ///
    /// # Panics
    ///
    /// Polling after it has resolved panics. A call with a deadline first
    /// polled inside a tokio runtime built without `enable_time` panics in
    /// tokio's timer (tokio offers no way to ask whether a runtime has
    /// one); outside any runtime it uses the bridge's timer.
    ///
    /// # Caveats
    ///
    /// `tokio::time::timeout` around an offload does not hold under a
    /// paused clock: tokio pauses its auto-advance for its own
    /// `spawn_blocking` tasks only (by a private hook), so while the job
    /// runs the idle runtime jumps its clock to the next timer and the
    /// `timeout` fires at once. Give the offload its own deadline instead
    /// (`offload_timeout`, `offload_deadline`), which is real time, or
    /// resume the clock (`tokio::time::resume()`) around the call.
    #[must_use = "an offload is submitted already; dropping this future cancels it"]
    pub struct Offload<T>
    where
        T: Send,
        T: 'static,
    {
        state: State<T>,
        #[pin]
        deadline: Option<Deadline>,
        // While pending with a deadline on a pool thread that may help:
        // keeps that thread from helping past this call's deadline.
        hold: Option<Hold>,
        // While waiting for room on a pool whose thread drives this future
        // and may help: lets that thread run any queued job to free room.
        room: Option<Hold>,
    }

    impl<T> PinnedDrop for Offload<T>
    where
        T: Send,
        T: 'static,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let State::Submitted { job, pool, .. } = this.state {
                if matches!(job.core().status(), Status::Queued | Status::Running) {
                    let _phase_or_finished = pool.give_up(job, GiveUp::Dropped);
                }
            }
        }
    }
}

enum State<T> {
    WaitingForRoom {
        job: Arc<Job<T>>,
        pool: Arc<Inner>,
        acquire: Acquire,
    },
    Submitted {
        job: Arc<Job<T>>,
        pool: Arc<Inner>,
    },
    Failed(Option<Error>),
    Done,
}

impl<T: Send + 'static> Offload<T> {
    pub(crate) fn start(
        pool: &Arc<Inner>,
        func: BoxFn<T>,
        deadline: Option<Instant>,
        reject_when_full: bool,
        location: &'static Location<'static>,
    ) -> Self {
        let called_at = Instant::now();
        let runtime = crate::caller_runtime::CallerRuntime::current();
        let site = CallSite {
            called_at,
            deadline_after: CallSite::encode_deadline(called_at, deadline),
            location,
            runtime,
            made_on_slot: crate::pool::current_slot_in(pool)
                .and_then(|slot| u32::try_from(slot).ok()),
            #[cfg(feature = "tracing")]
            span: tracing::Span::current(),
        };
        let job = Arc::new(Job::new(func, pool.interrupt_stats.clone(), site, false));
        let deadline = match deadline {
            None => None,
            // Passed already (a zero timeout, a deadline in the past): refused
            // here, before the job is accepted, so it never runs; deciding
            // later would race a worker that takes it off the queue.
            Some(at) if at <= called_at => {
                pool.count_timed_out_waiting_for_room();
                return Offload::failed(
                    job.error(ErrorKind::Timeout)
                        .with_phase(Phase::WaitingForRoom),
                );
            }
            Some(at) => Some(Deadline::new(at, called_at)),
        };
        let state = match pool.admission.clone().try_acquire_owned() {
            Ok(permit) => {
                job.set_permit(permit);
                submitted(pool, job)
            }
            Err(TryAcquireError::Closed) => {
                pool.count_shut_down();
                State::Failed(Some(
                    job.error(ErrorKind::ShutDown)
                        .with_phase(Phase::WaitingForRoom),
                ))
            }
            Err(TryAcquireError::NoPermits) if reject_when_full => {
                pool.count_rejected();
                State::Failed(Some(pool.saturated_error(&job, Phase::WaitingForRoom)))
            }
            Err(TryAcquireError::NoPermits) => State::WaitingForRoom {
                acquire: Box::pin(pool.admission.clone().acquire_owned()),
                job,
                pool: pool.clone(),
            },
        };
        Offload {
            state,
            deadline,
            hold: None,
            room: None,
        }
    }
}

impl<T: Send + 'static> Offload<T> {
    /// An offload refused before it started.
    pub(crate) fn failed(error: Error) -> Self {
        Offload {
            state: State::Failed(Some(error)),
            deadline: None,
            hold: None,
            room: None,
        }
    }
}

fn submitted<T: Send + 'static>(pool: &Arc<Inner>, job: Arc<Job<T>>) -> State<T> {
    match pool.submit(job.clone()) {
        Ok(()) => State::Submitted {
            job,
            pool: pool.clone(),
        },
        Err(_shut_down) => State::Failed(Some(
            job.error(ErrorKind::ShutDown)
                .with_phase(Phase::WaitingForRoom),
        )),
    }
}

impl<T: Send + 'static> Future for Offload<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state {
                State::Done => panic!(
                    "`Offload` polled after it resolved; each offload resolves exactly once, \
                     so poll it to completion once (use `futures::future::Fuse` to poll it again)"
                ),
                State::Failed(error) => {
                    let error = error
                        .take()
                        .expect("a failed offload holds its error until polled");
                    *this.state = State::Done;
                    return Poll::Ready(Err(error));
                }
                State::WaitingForRoom { job, pool, acquire } => match acquire.as_mut().poll(cx) {
                    Poll::Ready(Ok(permit)) => {
                        *this.room = None;
                        job.set_permit(permit);
                        let (job, pool) = (job.clone(), pool.clone());
                        *this.state = submitted(&pool, job);
                    }
                    Poll::Ready(Err(_closed)) => {
                        pool.count_shut_down();
                        let error = job
                            .error(ErrorKind::ShutDown)
                            .with_phase(Phase::WaitingForRoom);
                        *this.state = State::Done;
                        *this.hold = None;
                        *this.room = None;
                        return Poll::Ready(Err(error));
                    }
                    Poll::Pending => {
                        let passed = deadline_passed(this.deadline.as_mut(), cx);
                        // A nested offload polled by the `block_on` of a job
                        // of this pool takes that job's permit: the job waits
                        // for it, so the two count as one (`pool::loan`).
                        if !passed {
                            if let Some((permit, lender)) = crate::pool::loan::borrow(pool) {
                                *this.room = None;
                                job.set_borrowed_permit(permit, lender);
                                let (job, pool) = (job.clone(), pool.clone());
                                *this.state = submitted(&pool, job);
                                continue;
                            }
                        }
                        if !passed {
                            hold_helping(this.hold, this.deadline.is_some());
                            if this.room.is_none() {
                                *this.room = crate::pool::help::room_wanted_here(pool);
                            }
                            return Poll::Pending;
                        }
                        pool.count_timed_out_waiting_for_room();
                        let error = job
                            .error(ErrorKind::Timeout)
                            .with_phase(Phase::WaitingForRoom)
                            .with_stuck(pool.stuck());
                        *this.state = State::Done;
                        *this.hold = None;
                        *this.room = None;
                        return Poll::Ready(Err(error));
                    }
                },
                State::Submitted { job, pool } => {
                    // Take part in tokio's cooperative budget like tokio's own
                    // handles do, so a loop over ready offloads yields.
                    let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
                    job.register(cx);
                    let status = job.core().status();
                    let result = match status {
                        Status::Done => {
                            let outcome = job
                                .core()
                                .take_result()
                                .expect("DONE is published after the value is stored");
                            outcome.map_err(|payload| {
                                job.error(ErrorKind::Panicked)
                                    .with_phase(Phase::Running)
                                    .with_panic(payload)
                            })
                        }
                        Status::Cancelled(_) | Status::Abandoned(_) => Err(job
                            .ended_by_pool_error(status)
                            .expect("a cancelled or abandoned status maps to an error")),
                        Status::Queued | Status::Running | Status::Completing => {
                            if !deadline_passed(this.deadline.as_mut(), cx) {
                                hold_helping(this.hold, this.deadline.is_some());
                                return Poll::Pending;
                            }
                            match pool.give_up(job, GiveUp::Timeout) {
                                Ok(phase) => Err(job
                                    .error(ErrorKind::Timeout)
                                    .with_phase(phase)
                                    .with_stuck(pool.stuck())
                                    .with_interrupt_sent(job.interrupt_sent())),
                                // The worker is storing the value and will wake us.
                                Err(Status::Completing) => return Poll::Pending,
                                // Finished or ended by the pool meanwhile: read it.
                                Err(_) => continue,
                            }
                        }
                    };
                    coop.made_progress();
                    *this.state = State::Done;
                    *this.hold = None;
                    return Poll::Ready(result);
                }
            }
        }
    }
}

/// A pending call with a deadline, polled by a future that a pool thread
/// drives while it may help its pool: that thread must not start a job
/// (which it could not leave) before this call is resolved.
fn hold_helping(hold: &mut Option<Hold>, has_deadline: bool) {
    if has_deadline && hold.is_none() {
        *hold = crate::pool::help::hold_here();
    }
}

fn deadline_passed(deadline: Pin<&mut Option<Deadline>>, cx: &mut Context<'_>) -> bool {
    deadline
        .as_pin_mut()
        .is_some_and(|deadline| deadline.poll_passed(cx))
}

impl<T: Send + 'static> fmt::Debug for Offload<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::WaitingForRoom { .. } => "waiting for room",
            State::Submitted { job, .. } => match job.core().status() {
                Status::Queued => "queued",
                Status::Running | Status::Completing => "running",
                _ => "ended",
            },
            State::Failed(_) => "failed",
            State::Done => "done",
        };
        f.debug_struct("Offload")
            .field("state", &state)
            .field("has_deadline", &self.deadline.is_some())
            .finish()
    }
}

fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|timeout| Instant::now().checked_add(timeout))
}

impl BlockingPool {
    /// Runs `f` on the pool and returns a future of its value.
    ///
    /// The call's deadline is the pool's
    /// [`default_timeout`](crate::pool::Builder::default_timeout), if any.
    /// When the queue is full the future waits for room (the wait counts
    /// against the deadline) unless the pool was built with
    /// [`reject_when_full`](crate::pool::Builder::reject_when_full).
    ///
    /// # Errors, Cancellation, Panics
    ///
    /// See [`Offload`].
    #[track_caller]
    pub fn offload<F, T>(&self, f: F) -> Offload<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let config = &self.inner().config;
        Offload::start(
            self.inner(),
            Box::new(f),
            deadline_after(config.default_timeout),
            config.reject_when_full,
            Location::caller(),
        )
    }

    /// Like [`offload`](Self::offload), but refused at once with a
    /// saturation error when the queue is full, whatever the pool's setting.
    #[track_caller]
    pub fn try_offload<F, T>(&self, f: F) -> Offload<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Offload::start(
            self.inner(),
            Box::new(f),
            deadline_after(self.inner().config.default_timeout),
            true,
            Location::caller(),
        )
    }

    /// Like [`offload`](Self::offload) with a deadline `timeout` from now.
    /// A timeout too large to represent means no deadline.
    #[track_caller]
    pub fn offload_timeout<F, T>(&self, f: F, timeout: Duration) -> Offload<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Offload::start(
            self.inner(),
            Box::new(f),
            deadline_after(Some(timeout)),
            self.inner().config.reject_when_full,
            Location::caller(),
        )
    }

    /// Like [`offload`](Self::offload) with an absolute deadline.
    #[track_caller]
    pub fn offload_deadline<F, T>(&self, f: F, deadline: Instant) -> Offload<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Offload::start(
            self.inner(),
            Box::new(f),
            Some(deadline),
            self.inner().config.reject_when_full,
            Location::caller(),
        )
    }

    /// Runs many closures with bounded parallelism and collects one
    /// `Result` per closure, in input order; no error is lost.
    ///
    /// At most `max_threads` run at once unless [`Batch::max_in_flight`] says
    /// fewer. Each closure gets the pool's default timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let pool = colorseam::BlockingPool::builder().build().unwrap();
    /// let results = pool
    ///     .batch((0..10u32).map(|i| move || if i == 3 { panic!("bad row {i}") } else { i * i }))
    ///     .max_in_flight(4)
    ///     .await;
    /// assert_eq!(results.len(), 10);
    /// assert_eq!(*results[2].as_ref().unwrap(), 4);
    /// assert!(results[3].as_ref().unwrap_err().is_panic());
    /// # }
    /// ```
    #[track_caller]
    pub fn batch<I, F, T>(&self, jobs: I) -> Batch<T>
    where
        I: IntoIterator<Item = F>,
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Batch {
            plan: Some(Plan::new(self, jobs, Location::caller())),
            running: None,
        }
    }

    /// Like [`batch`](Self::batch), but fail-fast: resolves to all values in
    /// input order, or to the first error, at which point the jobs not yet
    /// started are never started and those in flight are cancelled
    /// (queued) or abandoned (running).
    #[track_caller]
    pub fn batch_fail_fast<I, F, T>(&self, jobs: I) -> FailFastBatch<T>
    where
        I: IntoIterator<Item = F>,
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        FailFastBatch {
            plan: Some(Plan::new(self, jobs, Location::caller())),
            running: None,
        }
    }
}

struct Plan<T> {
    pool: BlockingPool,
    jobs: Vec<BoxFn<T>>,
    limit: usize,
    location: &'static Location<'static>,
}

impl<T: Send + 'static> Plan<T> {
    fn new<I, F>(pool: &BlockingPool, jobs: I, location: &'static Location<'static>) -> Self
    where
        I: IntoIterator<Item = F>,
        F: FnOnce() -> T + Send + 'static,
    {
        Plan {
            pool: pool.clone(),
            jobs: jobs.into_iter().map(|f| Box::new(f) as BoxFn<T>).collect(),
            limit: pool.inner().config.max_threads,
            location,
        }
    }

    /// Drives the jobs with at most `limit` in flight, handing each result
    /// to `on_result`; stops early when it returns false.
    async fn run(self, mut on_result: impl FnMut(usize, Result<T, Error>) -> bool + Send) {
        let Plan {
            pool,
            jobs,
            limit,
            location,
        } = self;
        let inner = pool.inner();
        let config = &inner.config;
        let mut pending = jobs.into_iter().enumerate();
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < limit.max(1) {
                let Some((index, func)) = pending.next() else {
                    break;
                };
                let offload = Offload::start(
                    inner,
                    func,
                    deadline_after(config.default_timeout),
                    config.reject_when_full,
                    location,
                );
                in_flight.push(Indexed {
                    index,
                    offload: Box::pin(offload),
                });
            }
            match in_flight.next().await {
                Some((index, result)) => {
                    if !on_result(index, result) {
                        return; // dropping `in_flight` cancels the rest
                    }
                }
                None => return,
            }
        }
    }
}

struct Indexed<T: Send + 'static> {
    index: usize,
    offload: Pin<Box<Offload<T>>>,
}

impl<T: Send + 'static> Future for Indexed<T> {
    type Output = (usize, Result<T, Error>);
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let index = self.index;
        self.offload.as_mut().poll(cx).map(|r| (index, r))
    }
}

type Running<O> = Pin<Box<dyn Future<Output = O> + Send>>;

/// The future of [`BlockingPool::batch`]: one `Result` per job, in input order.
///
/// # Cancellation
///
/// Dropping it cancels queued jobs and abandons running ones, as dropping
/// each [`Offload`] would; jobs not yet submitted never run.
#[must_use = "a batch does nothing until awaited, and its results carry the errors"]
pub struct Batch<T> {
    plan: Option<Plan<T>>,
    running: Option<Running<Vec<Result<T, Error>>>>,
}

impl<T: Send + 'static> Batch<T> {
    /// At most `n` jobs of this batch in flight at once (queued or
    /// running). Zero is treated as one.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        if let Some(plan) = &mut self.plan {
            plan.limit = n.max(1);
        }
        self
    }
}

impl<T: Send + 'static> Future for Batch<T> {
    type Output = Vec<Result<T, Error>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(plan) = self.plan.take() {
            self.running = Some(Box::pin(async move {
                let mut results: Vec<Option<Result<T, Error>>> = std::iter::repeat_with(|| None)
                    .take(plan.jobs.len())
                    .collect();
                plan.run(|index, result| {
                    results[index] = Some(result);
                    true
                })
                .await;
                results
                    .into_iter()
                    .map(|r| r.expect("every job of a batch resolves before the batch does"))
                    .collect()
            }));
        }
        self.running
            .as_mut()
            .expect("`Batch` polled after it resolved")
            .as_mut()
            .poll(cx)
    }
}

impl<T> fmt::Debug for Batch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("started", &self.running.is_some())
            .finish_non_exhaustive()
    }
}

/// The future of [`BlockingPool::batch_fail_fast`]: all values, or the first error.
///
/// # Cancellation
///
/// On the first error, or when dropped, jobs not yet submitted never run,
/// queued ones are cancelled and running ones abandoned.
#[must_use = "a batch does nothing until awaited, and its result carries the first error"]
pub struct FailFastBatch<T> {
    plan: Option<Plan<T>>,
    running: Option<Running<Result<Vec<T>, Error>>>,
}

impl<T: Send + 'static> FailFastBatch<T> {
    /// At most `n` jobs in flight at once. Zero is treated as one.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        if let Some(plan) = &mut self.plan {
            plan.limit = n.max(1);
        }
        self
    }
}

impl<T: Send + 'static> Future for FailFastBatch<T> {
    type Output = Result<Vec<T>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(plan) = self.plan.take() {
            self.running = Some(Box::pin(async move {
                let mut values: Vec<Option<T>> = std::iter::repeat_with(|| None)
                    .take(plan.jobs.len())
                    .collect();
                let mut first_error = None;
                plan.run(|index, result| match result {
                    Ok(value) => {
                        values[index] = Some(value);
                        true
                    }
                    Err(error) => {
                        first_error = Some(error);
                        false
                    }
                })
                .await;
                match first_error {
                    Some(error) => Err(error),
                    None => Ok(values
                        .into_iter()
                        .map(|v| v.expect("without an error every job produced a value"))
                        .collect()),
                }
            }));
        }
        self.running
            .as_mut()
            .expect("`FailFastBatch` polled after it resolved")
            .as_mut()
            .poll(cx)
    }
}

impl<T> fmt::Debug for FailFastBatch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailFastBatch")
            .field("started", &self.running.is_some())
            .finish_non_exhaustive()
    }
}

/// Runs `f` on the [default pool](default_pool) and returns a future of its
/// value. No set-up needed.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let digest = colorseam::offload(|| format!("{:x}", 0xC0FFEEu32)).await.unwrap();
/// assert_eq!(digest, "c0ffee");
/// # }
/// ```
#[track_caller]
pub fn offload<F, T>(f: F) -> Offload<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    default_pool().offload(f)
}

/// Runs `f` on the [default pool](default_pool) with a deadline `timeout`
/// from now.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let hung = colorseam::offload_timeout(
///     || std::thread::sleep(Duration::from_secs(5)),
///     Duration::from_millis(10),
/// );
/// assert!(hung.await.unwrap_err().is_timeout());
/// # }
/// ```
#[track_caller]
pub fn offload_timeout<F, T>(f: F, timeout: Duration) -> Offload<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    default_pool().offload_timeout(f, timeout)
}

/// Runs `f` on the [default pool](default_pool) with an absolute deadline.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let deadline = Instant::now() + Duration::from_secs(5);
/// let (a, b) = (
///     colorseam::offload_deadline(|| 1, deadline),
///     colorseam::offload_deadline(|| 2, deadline),
/// );
/// assert_eq!(a.await.unwrap() + b.await.unwrap(), 3);
/// # }
/// ```
#[track_caller]
pub fn offload_deadline<F, T>(f: F, deadline: Instant) -> Offload<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    default_pool().offload_deadline(f, deadline)
}

/// Runs `f` on the [default pool](default_pool), refused at once with a
/// saturation error if its queue is full: `try_` never waits for room.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// match colorseam::try_offload(|| 6 * 7).await {
///     Ok(n) => assert_eq!(n, 42),
///     Err(e) if e.is_saturated() => { /* shed load: answer 503 */ }
///     Err(e) => panic!("{e}"),
/// }
/// # }
/// ```
#[track_caller]
pub fn try_offload<F, T>(f: F) -> Offload<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    default_pool().try_offload(f)
}
