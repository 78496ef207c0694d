//! `ForAsync<T>` and `ThreadBound<T>`: sync resources, served to async callers.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use crate::error::{ConfigError, Error, ErrorKind, Phase};
use crate::metrics::PoolMetrics;
use crate::offload::Offload;
use crate::pool::{BlockingPool, QueuedWork};
use crate::sync::lock_std;

/// The default deadline of an adapter call.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What an adapter does when the sync code it calls panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PanicPolicy {
    /// Return an error ([`Error::is_panic`]) carrying the panic message.
    #[default]
    ReturnError,
    /// Resume the panic in the async caller (with the sync code's own payload),
    /// as if the sync code had been called inline. The pool thread survives
    /// either way.
    Resume,
}

/// Settings shared by [`ForAsync`] and [`ThreadBound`].
#[derive(Debug, Clone)]
struct Settings {
    name: String,
    timeout: Duration,
    panic_policy: PanicPolicy,
}

/// Why a thread-bound call did not run its closure, decided on its thread.
enum Refusal {
    /// Made or polled from inside a call of the same adapter.
    Reentrant,
    /// Queued on a thread that got stuck before the call started.
    Stuck,
}

/// What the job of an adapter call returns.
type Ran<R> = Result<R, Refusal>;

pin_project_lite::pin_project! {
    /// The future of one adapter call. Resolves exactly once.
    ///
    /// # Errors
    ///
    /// As [`Offload`]: timeout (in any phase), panic (under
    /// [`PanicPolicy::ReturnError`]), saturation, shutdown; errors name the
    /// adapter and say `call`. A [`ThreadBound`] call can also be refused
    /// because its thread is stuck ([`Error::is_saturated`] with
    /// [`Error::stuck_threads`]) or because it was made from inside a call
    /// of the same adapter ([`Error::is_reentrant`]).
    ///
    /// # Cancellation
    ///
    /// Dropping it cancels a queued call and abandons a running one, as
    /// dropping an [`Offload`] does. Abandoning a running [`ThreadBound`]
    /// call retires its thread (see there).
    ///
    /// # Panics
    ///
    /// Under [`PanicPolicy::Resume`], resumes the sync code's panic.
    #[must_use = "the call is submitted already; dropping this future cancels it"]
    pub struct AdapterCall<R>
    where
        R: Send,
        R: 'static,
    {
        #[pin]
        offload: Offload<Ran<R>>,
        panic_policy: PanicPolicy,
        // A thread-bound call's link to its thread, to retire it if the
        // call is abandoned while it runs. Declared after `offload`, so
        // that on drop the call is abandoned first and then checked (see
        // `BoundCall`'s `Drop`).
        bound: Option<BoundCall>,
    }
}

impl<R: Send + 'static> Future for AdapterCall<R> {
    type Output = Result<R, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.offload.poll(cx));
        // Resolved: nothing is left to abandon on drop.
        let bound = this.bound.take().map(BoundCall::disarm);
        Poll::Ready(match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(refusal)) => {
                let bound = bound.expect("only thread-bound calls are refused on their thread");
                Err(match refusal {
                    Refusal::Reentrant => bound.core.reentrant(bound.location, bound.started),
                    Refusal::Stuck => {
                        bound
                            .core
                            .stuck(bound.location, bound.started, Phase::Queued)
                    }
                })
            }
            Err(error) => {
                if let Some(bound) = &bound {
                    if error.is_timeout() && error.phase() == Some(Phase::Running) {
                        bound.retire_if_running();
                    } else if error.is_shutdown() && bound.life.is_stuck() {
                        // Cancelled from the queue of a thread that got
                        // stuck: say so, rather than "shut down".
                        return Poll::Ready(Err(bound.core.stuck(
                            bound.location,
                            bound.started,
                            error.phase().unwrap_or(Phase::Queued),
                        )));
                    }
                }
                if error.is_panic() && *this.panic_policy == PanicPolicy::Resume {
                    // The sync code's own payload, as if it had run inline.
                    match error.try_into_panic() {
                        Ok(payload) => resume_unwind(payload),
                        Err(error) => return Poll::Ready(Err(error.with_operation("call"))),
                    }
                }
                Err(error.with_operation("call"))
            }
        })
    }
}

impl<R: Send + 'static> fmt::Debug for AdapterCall<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdapterCall")
            .field("offload", &self.offload)
            .field("panic_policy", &self.panic_policy)
            .field("thread_bound", &self.bound.is_some())
            .finish()
    }
}

fn refused<R: Send + 'static>(error: Error) -> AdapterCall<R> {
    AdapterCall {
        offload: Offload::failed(error),
        panic_policy: PanicPolicy::ReturnError,
        bound: None,
    }
}

/// Owns a sync resource (a legacy SDK client, a database handle) and serves
/// it to async callers, through [`call`](Self::call) only.
///
/// Every call runs on the adapter's own bounded pool, named after the
/// adapter, so the adapter is a *bulkhead*: at most
/// [`max_threads`](ForAsyncBuilder::max_threads) calls run at once, and a dependency that
/// hangs can take at most that many threads (plus the abandoned ones it is
/// allowed to replace), never every thread of the process. Each call has the
/// adapter's deadline (30 s unless set), real whatever the sync code does.
///
/// There is no `Deref` and no getter: async code cannot reach `T` except
/// through `call`, so it cannot call the SDK inline by mistake:
///
/// ```compile_fail
/// # let vendor = colorseam::adapter::ForAsync::new("vendor", String::new()).unwrap();
/// let inline: &String = &*vendor; // no Deref: does not compile
/// ```
///
/// `T` must be `Send + Sync` because calls run on several threads at once.
/// For a `T` that is not `Sync`, or must stay on one OS thread, use
/// [`ThreadBound`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use colorseam::adapter::ForAsync;
///
/// /// A blocking vendor client.
/// struct Vendor;
/// impl Vendor {
///     fn lookup(&self, id: u32) -> String {
///         std::thread::sleep(Duration::from_millis(1));
///         format!("record {id}")
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let vendor = ForAsync::builder("vendor")
///     .max_threads(4)
///     .default_timeout(Duration::from_secs(2))
///     .build(Vendor)
///     .unwrap();
/// let record = vendor.call(|v| v.lookup(7)).await.unwrap();
/// assert_eq!(record, "record 7");
/// # }
/// ```
pub struct ForAsync<T> {
    resource: Arc<T>,
    pool: BlockingPool,
    settings: Settings,
    interrupter: Option<MakeInterrupter<T>>,
}

/// Makes, from an adapter's resource, what stops a call blocked on it.
type MakeInterrupter<T> = Arc<MakeInterrupterFn<T>>;
type MakeInterrupterFn<T> = dyn Fn(&T) -> Box<dyn FnOnce() + Send> + Send + Sync;

fn make_interrupter<T, M, I>(make: M) -> MakeInterrupter<T>
where
    M: Fn(&T) -> I + Send + Sync + 'static,
    I: FnOnce() + Send + 'static,
{
    Arc::new(move |resource: &T| Box::new(make(resource)) as Box<dyn FnOnce() + Send>)
}

/// Runs `f` on `resource` with the interrupter `make` builds from it
/// registered for the call (see `JobContext::on_cancel`), disarmed as soon
/// as `f` returns.
fn interruptible<T: ?Sized, R>(
    resource: &T,
    make: Option<&MakeInterrupterFn<T>>,
    f: impl FnOnce(&T) -> R,
) -> R {
    let guard =
        make.and_then(|make| crate::job::current().map(|job| job.on_cancel(make(resource))));
    let value = f(resource);
    drop(guard);
    value
}

/// Configures a [`ForAsync`].
///
/// Its type parameter is `()` until an interrupter is set with
/// [`interrupt_with`](ForAsyncBuilder::interrupt_with), and then
/// [`InterruptWith<T>`], which ties the builder to the resource type `T`.
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ForAsyncBuilder<I = ()> {
    settings: Settings,
    limit: usize,
    max_abandoned: Option<usize>,
    queue_capacity: usize,
    reject_when_full: bool,
    interrupter: I,
}

/// A [`ForAsyncBuilder`] with an interrupter for resources of type `T`
/// (see [`ForAsyncBuilder::interrupt_with`]).
pub struct InterruptWith<T>(MakeInterrupter<T>);

impl<T> fmt::Debug for InterruptWith<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InterruptWith(..)")
    }
}

impl ForAsync<()> {
    /// Starts configuring an adapter named `name`.
    pub fn builder(name: impl Into<String>) -> ForAsyncBuilder {
        ForAsyncBuilder {
            settings: Settings {
                name: name.into(),
                timeout: DEFAULT_TIMEOUT,
                panic_policy: PanicPolicy::ReturnError,
            },
            limit: 8,
            max_abandoned: None,
            queue_capacity: 1024,
            reject_when_full: false,
            interrupter: (),
        }
    }
}

impl ForAsyncBuilder {
    /// Makes every call interruptible: `make` builds, from the resource,
    /// what stops a call blocked on it, and it runs when the call is
    /// abandoned (its deadline passes, its future is dropped, the
    /// adapter's pool shuts down past its deadline), as
    /// [`JobContext::on_cancel`](crate::job::JobContext::on_cancel) says.
    ///
    /// `make` runs on the pool thread at the start of each call, just
    /// before the call's closure; the interrupter it returns is disarmed as
    /// soon as the closure returns, so it never reaches a later call.
    ///
    /// # Panics
    ///
    /// A panic in `make` is the call's panic (see [`PanicPolicy`]).
    ///
    /// # Caveats
    ///
    /// The interrupter stops the *resource*, which every call running at
    /// that moment shares (up to [`max_threads`](Self::max_threads)): interrupting a
    /// connection stops every call using it, not only the abandoned one.
    /// Use `max_threads(1)`, or a resource whose interrupter reaches one call
    /// only, where that matters.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    /// use std::net::{TcpListener, TcpStream};
    /// use std::time::Duration;
    /// use colorseam::adapter::ForAsync;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let server = TcpListener::bind("127.0.0.1:0").unwrap(); // never answers
    /// let stream = TcpStream::connect(server.local_addr().unwrap()).unwrap();
    /// let upstream = ForAsync::builder("upstream")
    ///     .max_threads(1)
    ///     .default_timeout(Duration::from_millis(50))
    ///     .interrupt_with(|stream: &TcpStream| {
    ///         colorseam::interrupt::shutdown_tcp(stream).expect("a descriptor to spare")
    ///     })
    ///     .build(stream)
    ///     .unwrap();
    /// let err = upstream
    ///     .call(|mut stream| stream.read(&mut [0; 64]))
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.is_timeout() && err.interrupt_sent());
    /// # drop(server);
    /// # }
    /// ```
    pub fn interrupt_with<T, M, I>(self, make: M) -> ForAsyncBuilder<InterruptWith<T>>
    where
        M: Fn(&T) -> I + Send + Sync + 'static,
        I: FnOnce() + Send + 'static,
    {
        ForAsyncBuilder {
            settings: self.settings,
            limit: self.limit,
            max_abandoned: self.max_abandoned,
            queue_capacity: self.queue_capacity,
            reject_when_full: self.reject_when_full,
            interrupter: InterruptWith(make_interrupter(make)),
        }
    }

    /// Builds the adapter around `resource`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a thread limit, queue or abandon budget that cannot
    /// work, or a name that cannot name a thread.
    pub fn build<T: Send + Sync + 'static>(self, resource: T) -> Result<ForAsync<T>, ConfigError> {
        self.build_with(resource, None)
    }
}

impl<T: Send + Sync + 'static> ForAsyncBuilder<InterruptWith<T>> {
    /// Builds the adapter around `resource`, every call interruptible (see
    /// [`interrupt_with`](ForAsyncBuilder::interrupt_with)).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a thread limit, queue or abandon budget that cannot
    /// work, or a name that cannot name a thread.
    pub fn build(self, resource: T) -> Result<ForAsync<T>, ConfigError> {
        let make = self.interrupter.0.clone();
        self.build_with(resource, Some(make))
    }
}

impl<I> ForAsyncBuilder<I> {
    /// The most calls running at once (default 8): the bulkhead, the
    /// `max_threads` of the adapter's own pool.
    pub fn max_threads(mut self, n: usize) -> Self {
        self.limit = n;
        self
    }

    /// How many threads stuck in abandoned calls are replaced (default: as
    /// many as `max_threads`). See [`Builder::max_abandoned`](crate::pool::Builder::max_abandoned).
    pub fn max_abandoned(mut self, n: usize) -> Self {
        self.max_abandoned = Some(n);
        self
    }

    /// The most calls waiting for a thread (default 1024).
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }

    /// Refuse calls at once with a saturation error when the queue is full,
    /// instead of letting them wait for room (default: wait).
    pub fn reject_when_full(mut self, reject: bool) -> Self {
        self.reject_when_full = reject;
        self
    }

    /// The deadline of every call (default 30 s), covering queue wait and
    /// run time.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// What a panic in the sync code becomes (default: an error).
    pub fn panic_policy(mut self, policy: PanicPolicy) -> Self {
        self.settings.panic_policy = policy;
        self
    }

    fn build_with<T: Send + Sync + 'static>(
        self,
        resource: T,
        interrupter: Option<MakeInterrupter<T>>,
    ) -> Result<ForAsync<T>, ConfigError> {
        let mut builder = BlockingPool::builder()
            .name(self.settings.name.clone())
            .max_threads(self.limit)
            .queue_capacity(self.queue_capacity)
            .reject_when_full(self.reject_when_full)
            .default_timeout(self.settings.timeout);
        if let Some(n) = self.max_abandoned {
            builder = builder.max_abandoned(n);
        }
        Ok(ForAsync {
            resource: Arc::new(resource),
            pool: builder.build()?,
            settings: self.settings,
            interrupter,
        })
    }
}

impl<T: Send + Sync + 'static> ForAsync<T> {
    /// An adapter with the default settings (`max_threads` 8, `default_timeout` 30 s).
    ///
    /// # Errors
    ///
    /// [`ConfigError::BadName`] if `name` cannot name a thread.
    pub fn new(name: impl Into<String>, resource: T) -> Result<Self, ConfigError> {
        ForAsync::builder(name).build(resource)
    }

    /// Runs `f(&resource)` on the adapter's pool, within its deadline.
    ///
    /// # Errors, Cancellation, Panics
    ///
    /// See [`AdapterCall`].
    #[track_caller]
    pub fn call<F, R>(&self, f: F) -> AdapterCall<R>
    where
        F: FnOnce(&T) -> R + Send + 'static,
        R: Send + 'static,
    {
        let reject = self.pool.inner().config.reject_when_full;
        self.call_at(f, Instant::now().checked_add(self.settings.timeout), reject)
    }

    /// [`call`](Self::call), but refused at once with a saturation error
    /// when the adapter's queue is full, whatever its setting (as
    /// [`BlockingPool::try_offload`]): `try_` never waits for room.
    ///
    /// # Errors, Cancellation, Panics
    ///
    /// See [`AdapterCall`].
    #[track_caller]
    pub fn try_call<F, R>(&self, f: F) -> AdapterCall<R>
    where
        F: FnOnce(&T) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.call_at(f, Instant::now().checked_add(self.settings.timeout), true)
    }

    /// [`call`](Self::call) with its own deadline `timeout` from now.
    ///
    /// # Errors, Cancellation, Panics
    ///
    /// See [`AdapterCall`].
    #[track_caller]
    pub fn call_timeout<F, R>(&self, f: F, timeout: Duration) -> AdapterCall<R>
    where
        F: FnOnce(&T) -> R + Send + 'static,
        R: Send + 'static,
    {
        let reject = self.pool.inner().config.reject_when_full;
        self.call_at(f, Instant::now().checked_add(timeout), reject)
    }

    /// [`call`](Self::call) with its own absolute deadline.
    ///
    /// # Errors, Cancellation, Panics
    ///
    /// See [`AdapterCall`].
    #[track_caller]
    pub fn call_deadline<F, R>(&self, f: F, deadline: Instant) -> AdapterCall<R>
    where
        F: FnOnce(&T) -> R + Send + 'static,
        R: Send + 'static,
    {
        let reject = self.pool.inner().config.reject_when_full;
        self.call_at(f, Some(deadline), reject)
    }

    #[track_caller]
    fn call_at<F, R>(&self, f: F, deadline: Option<Instant>, reject: bool) -> AdapterCall<R>
    where
        F: FnOnce(&T) -> R + Send + 'static,
        R: Send + 'static,
    {
        let resource = self.resource.clone();
        let interrupter = self.interrupter.clone();
        AdapterCall {
            offload: Offload::start(
                self.pool.inner(),
                Box::new(move || Ok(interruptible(&*resource, interrupter.as_deref(), f))),
                deadline,
                reject,
                Location::caller(),
            ),
            panic_policy: self.settings.panic_policy,
            bound: None,
        }
    }

    /// The adapter's name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The adapter's own pool, for its [metrics](BlockingPool::metrics) and
    /// [shutdown](BlockingPool::shutdown).
    pub fn pool(&self) -> &BlockingPool {
        &self.pool
    }
}

/// Clones share the resource, the bulkhead pool and its bound, like clones
/// of a client: cheap (two reference counts), and every clone's calls count
/// against the same `max_threads` and queue.
impl<T> Clone for ForAsync<T> {
    fn clone(&self) -> Self {
        ForAsync {
            resource: self.resource.clone(),
            pool: self.pool.clone(),
            settings: self.settings.clone(),
            interrupter: self.interrupter.clone(),
        }
    }
}

impl<T> fmt::Debug for ForAsync<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForAsync")
            .field("name", &self.settings.name)
            .field("timeout", &self.settings.timeout)
            .field("pool", &self.pool)
            .field("interruptible", &self.interrupter.is_some())
            .finish_non_exhaustive()
    }
}

/// The queue of a [`ThreadBound`] thread, unless set: calls waiting behind
/// the running one.
const BOUND_QUEUE: usize = 1024;

/// How many threads stuck in abandoned calls a [`ThreadBound`] keeps while a
/// fresh one serves, unless set.
const DEFAULT_BOUND_ABANDONED: usize = 1;

thread_local! {
    /// The resources of the `ThreadBound` threads this thread is, by
    /// generation id (each generation has its own thread, so there is one
    /// entry at most; the map keeps that from being an assumption). Each
    /// resource sits in its own `RefCell`, empty while the factory runs, so
    /// a call that reaches it again from inside a call finds it borrowed.
    static BOUND: RefCell<Resources> = RefCell::new(Resources(HashMap::new()));
    /// The adapters whose call (or factory, or resource drop) this thread is
    /// running, innermost last.
    static IN_CALL: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

type Resource = Rc<RefCell<Option<Box<dyn Any>>>>;

/// The thread's resources. They are dropped explicitly, on their thread,
/// before it ends (see [`ThreadBound`]); this `Drop` is the last resort for
/// a thread that ends some other way, and keeps a resource's panicking
/// `Drop` from aborting the process during thread teardown.
struct Resources(HashMap<u64, Resource>);

impl Drop for Resources {
    fn drop(&mut self) {
        for (_, resource) in self.0.drain() {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(resource))) {
                crate::pool::task::drop_quietly(payload);
            }
        }
    }
}

static NEXT_BOUND_ID: AtomicU64 = AtomicU64::new(1);

/// Marks this thread as inside a call of an adapter until dropped (also
/// when the call unwinds).
struct InCall;

impl InCall {
    fn enter(adapter: u64) -> Self {
        IN_CALL.with(|c| c.borrow_mut().push(adapter));
        InCall
    }
}

impl Drop for InCall {
    fn drop(&mut self) {
        let _ = IN_CALL.try_with(|c| c.borrow_mut().pop());
    }
}

fn in_call_of(adapter: u64) -> bool {
    IN_CALL
        .try_with(|c| c.borrow().contains(&adapter))
        .unwrap_or(false)
}

/// Takes generation `life`'s resource off this thread and drops it here,
/// marked as inside a call of `adapter` so its `Drop` cannot call it again.
fn drop_resource(adapter: u64, life: u64) {
    let resource = BOUND
        .try_with(|b| b.borrow_mut().0.remove(&life))
        .ok()
        .flatten();
    if let Some(resource) = resource {
        let _in_call = InCall::enter(adapter);
        // Nobody waits for this value any more: a panic in its `Drop` has
        // nowhere to go, and must not take the thread's bookkeeping with it.
        if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(resource))) {
            crate::pool::task::drop_quietly(payload);
        }
    }
}

/// The per-thread life of a [`ThreadBound`]: one thread (a one-thread pool)
/// and the resource its factory made there.
struct Generation {
    id: u64,
    /// The pool: shut down from an abandoned call's future, and asked how
    /// many threads it still has once retired.
    pool: BlockingPool,
    /// Set once a call was abandoned while running here; guarded so that a
    /// call's start, its end and its abandonment are ordered.
    stuck: Mutex<bool>,
}

impl Generation {
    fn is_stuck(&self) -> bool {
        *lock_std(&self.stuck)
    }
}

/// A call's progress on its thread, for telling "abandoned while running"
/// (the thread is stuck) from "abandoned after it returned" (it is not).
const CALL_WAITING: u8 = 0;
const CALL_RUNNING: u8 = 1;
const CALL_FINISHED: u8 = 2;

/// The generation serving new calls.
struct Serving {
    life: Arc<Generation>,
    /// One admission permit held back, so the job that drops the resource
    /// at the adapter's drop always finds room, even behind a full queue.
    reserve: OwnedSemaphorePermit,
}

/// What a [`ThreadBound`] shares with its calls' futures.
struct BoundCore {
    id: u64,
    name: Arc<str>,
    state: Mutex<BoundState>,
}

struct BoundState {
    serving: Option<Serving>,
    /// The pool of the latest generation, for metrics and for counting
    /// refusals while no generation serves.
    latest: BlockingPool,
    /// Pools of the generations retired as stuck that still have their
    /// thread, as the pool counts it: the stuck threads.
    retired: Vec<BlockingPool>,
    /// The adapter was dropped.
    closed: bool,
}

impl BoundState {
    /// Threads still held by generations retired as stuck. A retired pool
    /// counts its thread until the thread has left, so the adapter's bound
    /// is as exact as the pool's own.
    fn stuck_threads(&mut self) -> usize {
        self.retired.retain(|pool| pool.metrics().threads.total > 0);
        self.retired.len()
    }
}

impl BoundCore {
    fn stuck_threads(&self) -> usize {
        lock_std(&self.state).stuck_threads()
    }

    fn stuck(&self, location: &'static Location<'static>, started: Instant, phase: Phase) -> Error {
        Error::new(
            ErrorKind::Saturated,
            self.name.clone(),
            location,
            started.elapsed(),
        )
        .with_operation("call")
        .with_phase(phase)
        .with_stuck_threads(self.stuck_threads().max(1))
    }

    fn reentrant(&self, location: &'static Location<'static>, started: Instant) -> Error {
        Error::new(
            ErrorKind::Reentrant,
            self.name.clone(),
            location,
            started.elapsed(),
        )
        .with_operation("call")
    }

    /// Retires `life`, whose thread is stuck in an abandoned call: later
    /// calls go to a fresh generation (or are refused), and the calls
    /// queued behind the stuck one are cancelled now.
    fn retire_stuck(&self, life: &Generation) {
        let serving = {
            let mut state = lock_std(&self.state);
            state.retired.push(life.pool.clone());
            match &state.serving {
                Some(s) if s.life.id == life.id => state.serving.take(),
                _ => None,
            }
        };
        #[cfg(feature = "tracing")]
        tracing::warn!(adapter = %self.name, "colorseam thread-bound adapter's thread is stuck in an abandoned call; retiring it");
        // Cancelling the queue wakes its callers (user code): no lock held.
        let _cancelled = life.pool.inner().begin_shutdown(QueuedWork::Cancel);
        drop(serving);
    }
}

/// A thread-bound call's future's link to its generation.
struct BoundCall {
    core: Arc<BoundCore>,
    life: Arc<Generation>,
    progress: Arc<AtomicU8>,
    location: &'static Location<'static>,
    started: Instant,
    /// Check for a stuck thread when dropped (the future was dropped
    /// before it resolved).
    armed: bool,
}

impl Drop for BoundCall {
    fn drop(&mut self) {
        // The `Offload` beside it has been dropped already, abandoning a
        // running call: a call abandoned before it started sees that and
        // never runs, one already under way is found running here.
        if self.armed {
            self.retire_if_running();
        }
    }
}

impl BoundCall {
    fn disarm(mut self) -> Self {
        self.armed = false;
        self
    }

    /// Retires the generation if this call is running on it: called when
    /// its caller gives up (deadline or drop).
    fn retire_if_running(&self) {
        {
            let mut stuck = lock_std(&self.life.stuck);
            if *stuck || self.progress.load(Ordering::Acquire) != CALL_RUNNING {
                return;
            }
            *stuck = true;
        }
        self.core.retire_stuck(&self.life);
    }
}

/// A sync resource that lives on one dedicated OS thread, served to async
/// callers in submission order.
///
/// For SDK objects that are not `Sync` (or not even `Send`: SQLite
/// connections, some C libraries, thread-affine GUI or COM handles): the
/// resource is made *on* its thread by a factory, and every
/// [`call`](Self::call) runs there, one at a time, in the order calls were
/// made, with `&mut` access. Deadlines work as everywhere in colorseam: the
/// caller is released at its deadline whatever the resource does.
///
/// # When a call hangs
///
/// When a caller gives up on a running call (its deadline passes, or its
/// future is dropped), the thread is *stuck*, and retired:
///
/// - calls already queued behind the stuck one fail at once with a
///   saturation error that says a thread is stuck
///   ([`Error::stuck_threads`]), and never run;
/// - new calls go to a fresh thread, on which the factory makes a fresh
///   resource, as long as no more than
///   [`max_abandoned`](ThreadBoundBuilder::max_abandoned) threads (1 by default)
///   are stuck; past that they fail at once the same way, until a stuck call
///   returns;
/// - the stuck thread finishes its call, drops *its* resource there (it is
///   never used again: a call that was abandoned half-way may have left it
///   in any state), and ends.
///
/// So the adapter holds at most `1 + max_abandoned` threads, counted as its
/// pools count them: a retired thread counts until its pool lets it go.
///
/// # Re-entrancy
///
/// A call made from inside a call of the same adapter (in the closure, in
/// the factory, in a waker or a `Drop` they run, also while unwinding)
/// would have to wait for the call that made it. It is refused at once
/// with [`Error::is_reentrant`], as is a call made elsewhere and awaited
/// from inside one.
///
/// # Drop
///
/// Dropping the adapter lets the calls already made run, then drops the
/// resource on its thread, as a job of its own: thread-locals are all still
/// there, so a `Drop` that calls [`block_on`](crate::block_on) (to flush, to
/// say goodbye to a server) works. The thread then ends.
///
/// # Caveats
///
/// A thread stuck in a call that never returns is never reclaimed (nothing
/// can stop a thread from outside); the adapter goes on without it, within
/// its budget. Its resource is then never dropped.
///
/// Each thread has its own one-thread pool, so [`metrics`](Self::metrics)
/// describes the thread serving now: a fresh thread starts from zero.
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
/// use colorseam::adapter::ThreadBound;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // `Rc` is neither Send nor Sync: it is made on, and never leaves, its thread.
/// let counter = ThreadBound::new("counter", || Rc::new(std::cell::Cell::new(0))).unwrap();
/// for _ in 0..3 {
///     counter.call(|c| c.set(c.get() + 1)).await.unwrap();
/// }
/// assert_eq!(counter.call(|c| c.get()).await.unwrap(), 3);
/// # }
/// ```
pub struct ThreadBound<T> {
    core: Arc<BoundCore>,
    factory: Arc<dyn Fn() -> T + Send + Sync>,
    settings: Settings,
    max_abandoned: usize,
    /// Calls that may wait behind the running one, on each generation.
    queue_capacity: usize,
    interrupter: Option<MakeInterrupter<T>>,
}

/// A fresh generation: a one-thread pool that never replaces its thread
/// (the adapter does), started on first use, whose queue holds
/// `queue_capacity` calls.
fn generation(name: &str, queue_capacity: usize) -> Result<Serving, ConfigError> {
    let pool = BlockingPool::builder()
        .name(name)
        .max_threads(1)
        .min_threads(1)
        .max_abandoned(0)
        // One more than calls may use: the reserve.
        .queue_capacity(queue_capacity.saturating_add(1))
        .build()?;
    let reserve = pool
        .inner()
        .admission
        .clone()
        .try_acquire_owned()
        .expect("a fresh pool has every admission permit free");
    Ok(Serving {
        life: Arc::new(Generation {
            id: NEXT_BOUND_ID.fetch_add(1, Ordering::Relaxed),
            pool,
            stuck: Mutex::new(false),
        }),
        reserve,
    })
}

/// Configures a [`ThreadBound`]: made by [`ThreadBound::builder`], which
/// takes the resource's factory, so that
/// [`interrupt_with`](Self::interrupt_with) knows the resource's type.
#[must_use = "a builder does nothing until `build` is called"]
pub struct ThreadBoundBuilder<T> {
    name: String,
    factory: Arc<dyn Fn() -> T + Send + Sync>,
    settings: Settings,
    max_abandoned: usize,
    queue_capacity: usize,
    interrupter: Option<MakeInterrupter<T>>,
}

impl<T> fmt::Debug for ThreadBoundBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadBoundBuilder")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("max_abandoned", &self.max_abandoned)
            .field("queue_capacity", &self.queue_capacity)
            .field("interruptible", &self.interrupter.is_some())
            .finish_non_exhaustive()
    }
}

impl<T: 'static> ThreadBound<T> {
    /// A thread-bound adapter with the default settings (`default_timeout`
    /// 30 s, `max_abandoned` 1), whose resource `factory` makes on its
    /// thread at the first call (and again after a call in which it
    /// panicked, and on each fresh thread after a hang).
    ///
    /// # Errors
    ///
    /// [`ConfigError::BadName`] if `name` cannot name a thread.
    pub fn new(
        name: impl Into<String>,
        factory: impl Fn() -> T + Send + Sync + 'static,
    ) -> Result<Self, ConfigError> {
        ThreadBound::builder(name, factory).build()
    }

    /// A builder for a thread-bound adapter whose resource `factory` makes,
    /// as [`new`](Self::new) says.
    pub fn builder(
        name: impl Into<String>,
        factory: impl Fn() -> T + Send + Sync + 'static,
    ) -> ThreadBoundBuilder<T> {
        let name: String = name.into();
        ThreadBoundBuilder {
            settings: Settings {
                name: name.clone(),
                timeout: DEFAULT_TIMEOUT,
                panic_policy: PanicPolicy::ReturnError,
            },
            name,
            factory: Arc::new(factory),
            max_abandoned: DEFAULT_BOUND_ABANDONED,
            queue_capacity: BOUND_QUEUE,
            interrupter: None,
        }
    }
}

impl<T: 'static> ThreadBoundBuilder<T> {
    /// Builds the adapter; its thread starts at the first call.
    ///
    /// # Errors
    ///
    /// [`ConfigError::BadName`] if the name cannot name a thread, and
    /// [`ConfigError::QueueTooLarge`] for a
    /// [`queue_capacity`](Self::queue_capacity) past a pool's limit.
    pub fn build(self) -> Result<ThreadBound<T>, ConfigError> {
        let serving = generation(&self.name, self.queue_capacity)?;
        let latest = serving.life.pool.clone();
        Ok(ThreadBound {
            core: Arc::new(BoundCore {
                id: NEXT_BOUND_ID.fetch_add(1, Ordering::Relaxed),
                name: Arc::from(self.name.as_str()),
                state: Mutex::new(BoundState {
                    serving: Some(serving),
                    latest,
                    retired: Vec::new(),
                    closed: false,
                }),
            }),
            factory: self.factory,
            settings: self.settings,
            max_abandoned: self.max_abandoned,
            queue_capacity: self.queue_capacity,
            interrupter: self.interrupter,
        })
    }

    /// The deadline of every call made with [`call`](ThreadBound::call)
    /// (default 30 s).
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// What a panic in a call becomes (default: an error). A panic leaves
    /// the resource in place; a panic in the factory means the next call
    /// tries the factory again.
    pub fn panic_policy(mut self, policy: PanicPolicy) -> Self {
        self.settings.panic_policy = policy;
        self
    }

    /// How many threads stuck in abandoned calls the adapter keeps while a
    /// fresh thread (with a fresh resource) serves (default 1, at most
    /// 10,000). With 0, calls fail fast from the first hang until the stuck
    /// call returns. The adapter holds at most `1 + n` OS threads.
    pub fn max_abandoned(mut self, n: usize) -> Self {
        self.max_abandoned = n.min(10_000);
        self
    }

    /// How many calls may wait behind the running one (default 1024). A
    /// call made when that many wait is refused at once with a saturation
    /// error ([`Error::is_saturated`]): a thread-bound call never waits for
    /// room. Raise it for a resource that many tasks share at once (a
    /// connection serving thousands of requests in flight); each waiting
    /// call holds its closure and a few hundred bytes until it runs.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }

    /// Makes every call interruptible: `make` builds, from the resource,
    /// what stops a call blocked on it (a SQLite connection's
    /// `InterruptHandle`, a socket's shutdown), and it runs when the call is
    /// abandoned while it runs, as
    /// [`JobContext::on_cancel`](crate::job::JobContext::on_cancel) says.
    ///
    /// `make` runs on the adapter's thread at the start of each call, just
    /// before the call's closure; the interrupter is disarmed as soon as
    /// the closure returns, so it never reaches a later call. The factory
    /// is not interruptible.
    ///
    /// An abandoned call still retires its thread and its resource (a call
    /// stopped half-way may have left the resource in any state, see
    /// [When a call hangs](Self#when-a-call-hangs)): what the interrupter
    /// changes is that the thread returns at once, so it stops counting
    /// against [`max_abandoned`](Self::max_abandoned), and the
    /// fresh thread serving the next call does not wait for it.
    ///
    /// # Panics
    ///
    /// A panic in `make` is the call's panic (see [`PanicPolicy`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Read;
    /// use std::net::{TcpListener, TcpStream};
    /// use std::time::Duration;
    /// use colorseam::adapter::ThreadBound;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let server = TcpListener::bind("127.0.0.1:0").unwrap(); // never answers
    /// let addr = server.local_addr().unwrap();
    /// let upstream = ThreadBound::builder("upstream", move || TcpStream::connect(addr).unwrap())
    ///     .default_timeout(Duration::from_millis(50))
    ///     .interrupt_with(|stream: &TcpStream| {
    ///         colorseam::interrupt::shutdown_tcp(stream).expect("a descriptor to spare")
    ///     })
    ///     .build()
    ///     .unwrap();
    /// let err = upstream.call(|stream| stream.read(&mut [0; 64])).await.unwrap_err();
    /// assert!(err.is_timeout() && err.interrupt_sent());
    /// # drop(server);
    /// # }
    /// ```
    pub fn interrupt_with<M, I>(mut self, make: M) -> Self
    where
        M: Fn(&T) -> I + Send + Sync + 'static,
        I: FnOnce() + Send + 'static,
    {
        self.interrupter = Some(make_interrupter(make));
        self
    }
}

impl<T: 'static> ThreadBound<T> {
    /// Runs `f(&mut resource)` on the adapter's thread, after every call made
    /// before it, within the adapter's deadline.
    ///
    /// # Errors, Cancellation, Panics
    ///
    /// See [`AdapterCall`]; plus a saturation error at once while the
    /// thread is stuck in an abandoned call and no fresh one may start, and
    /// [`Error::is_reentrant`] from inside a call of this adapter.
    #[track_caller]
    pub fn call<F, R>(&self, f: F) -> AdapterCall<R>
    where
        F: FnOnce(&mut T) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.call_deadline(f, bound_deadline(self.settings.timeout))
    }

    /// [`call`](Self::call) with its own deadline `timeout` from now (a
    /// timeout too large to represent means a deadline decades away).
    #[track_caller]
    pub fn call_timeout<F, R>(&self, f: F, timeout: Duration) -> AdapterCall<R>
    where
        F: FnOnce(&mut T) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.call_deadline(f, bound_deadline(timeout))
    }

    /// The generation that takes a new call, starting a fresh one if the
    /// last got stuck and the budget allows; else the refusal.
    fn serving(
        &self,
        location: &'static Location<'static>,
        started: Instant,
    ) -> Result<Arc<Generation>, Error> {
        let core = &self.core;
        let mut state = lock_std(&core.state);
        if state.serving.is_none() && !state.closed && state.stuck_threads() <= self.max_abandoned {
            let serving = generation(&core.name, self.queue_capacity)
                .expect("a name that built the adapter's first pool builds the next");
            state.latest = serving.life.pool.clone();
            state.serving = Some(serving);
        }
        if let Some(serving) = &state.serving {
            return Ok(serving.life.clone());
        }
        let (stuck, latest) = (state.stuck_threads(), state.latest.clone());
        drop(state);
        latest.inner().count_rejected();
        #[cfg(feature = "tracing")]
        tracing::warn!(adapter = %core.name, stuck, "colorseam thread-bound adapter is stuck in abandoned calls; refusing");
        Err(Error::new(
            ErrorKind::Saturated,
            core.name.clone(),
            location,
            started.elapsed(),
        )
        .with_operation("call")
        .with_phase(Phase::WaitingForRoom)
        .with_stuck_threads(stuck.max(1)))
    }

    /// [`call`](Self::call) with its own absolute deadline.
    ///
    /// A thread-bound call never waits for room (its queue refuses at
    /// once when full), so there is no `try_call`: every call is one.
    ///
    /// # Errors, Cancellation, Panics
    ///
    /// As for [`call`](Self::call).
    #[track_caller]
    pub fn call_deadline<F, R>(&self, f: F, deadline: Instant) -> AdapterCall<R>
    where
        F: FnOnce(&mut T) -> R + Send + 'static,
        R: Send + 'static,
    {
        let location = Location::caller();
        let started = Instant::now();
        let core = &self.core;
        if in_call_of(core.id) {
            return refused(core.reentrant(location, started));
        }
        let life = match self.serving(location, started) {
            Ok(life) => life,
            Err(error) => return refused(error),
        };
        let progress = Arc::new(AtomicU8::new(CALL_WAITING));
        let job = {
            let (core, life, progress) = (core.clone(), life.clone(), progress.clone());
            let factory = self.factory.clone();
            let interrupter = self.interrupter.clone();
            move || -> Ran<R> {
                {
                    let stuck = lock_std(&life.stuck);
                    if *stuck {
                        return Err(Refusal::Stuck);
                    }
                    // Abandoned between the pool starting the job and here:
                    // nobody waits, and its caller saw it "waiting", so it
                    // must not run (it could get stuck unnoticed).
                    if crate::job::current().is_some_and(|job| job.is_cancelled()) {
                        return Err(Refusal::Stuck);
                    }
                    progress.store(CALL_RUNNING, Ordering::Release);
                }
                let in_call = InCall::enter(core.id);
                let ran = catch_unwind(AssertUnwindSafe(|| {
                    with_resource(life.id, &*factory, |resource| {
                        let guard = interrupter.as_deref().and_then(|make| {
                            crate::job::current().map(|job| job.on_cancel(make(resource)))
                        });
                        let value = f(resource);
                        drop(guard);
                        value
                    })
                }));
                let (stuck, retire_here) = {
                    let mut stuck = lock_std(&life.stuck);
                    progress.store(CALL_FINISHED, Ordering::Release);
                    // Abandoned while it ran and back already (an
                    // interrupter stopped it) before its caller looked: the
                    // caller would now find it finished and keep the
                    // resource, which the interrupted call may have left in
                    // any state. Retired here instead; under the same lock
                    // as the caller's check, so exactly one side retires.
                    let retire_here =
                        !*stuck && crate::job::current().is_some_and(|job| job.is_cancelled());
                    if retire_here {
                        *stuck = true;
                    }
                    (*stuck, retire_here)
                };
                drop(in_call);
                if retire_here {
                    core.retire_stuck(&life);
                }
                if stuck {
                    // Abandoned while it ran: the resource is retired with
                    // its thread, and dropped here while the thread is whole.
                    drop_resource(core.id, life.id);
                }
                match ran {
                    Ok(ran) => ran,
                    Err(payload) => resume_unwind(payload),
                }
            }
        };
        AdapterCall {
            offload: Offload::start(
                life.pool.inner(),
                Box::new(job),
                Some(deadline),
                true,
                location,
            ),
            panic_policy: self.settings.panic_policy,
            bound: Some(BoundCall {
                core: core.clone(),
                life,
                progress,
                location,
                started,
                armed: true,
            }),
        }
    }

    /// The adapter's name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// A snapshot of the metrics of the adapter's current thread (its
    /// one-thread pool; a fresh thread after a hang starts from zero).
    pub fn metrics(&self) -> PoolMetrics {
        let latest = lock_std(&self.core.state).latest.clone();
        latest.metrics()
    }
}

/// A thread-bound call's deadline, `timeout` from now. Always one, even for
/// a timeout too large to represent: a pool thread waiting in `block_on`
/// may run queued jobs of its pool that have no deadline itself, and a
/// call run inside the call that waits would break submission order (and
/// find the resource borrowed).
fn bound_deadline(timeout: Duration) -> Instant {
    Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(crate::block_on::far_future)
}

/// Runs `f` on this thread's resource of generation `life`, made by
/// `factory` if there is none yet.
fn with_resource<T: 'static, R>(
    life: u64,
    factory: &dyn Fn() -> T,
    f: impl FnOnce(&mut T) -> R,
) -> Ran<R> {
    let slot = BOUND.with(|b| b.borrow_mut().0.entry(life).or_default().clone());
    // Borrowed for the whole call (and the factory): a call that reaches
    // here again from inside it finds it borrowed.
    let Ok(mut slot) = slot.try_borrow_mut() else {
        return Err(Refusal::Reentrant);
    };
    let resource = match &mut *slot {
        Some(resource) => resource,
        // A factory that panics leaves the slot empty: the next call tries
        // again.
        empty @ None => empty.insert(Box::new(factory())),
    };
    let resource = resource
        .downcast_mut::<T>()
        .expect("a generation's slot holds the type its adapter made");
    Ok(f(resource))
}

impl<T> Drop for ThreadBound<T> {
    fn drop(&mut self) {
        let serving = {
            let mut state = lock_std(&self.core.state);
            state.closed = true;
            state.serving.take()
        };
        let Some(serving) = serving else {
            return; // retired as stuck: its stuck call drops the resource
        };
        let Serving { life, reserve } = serving;
        let pool = &life.pool;
        // No call can be made any more, so the permit freed here is the
        // one the drop job takes: behind the calls already queued, it drops
        // the resource on its thread, with every thread-local still there.
        drop(reserve);
        let (adapter, id) = (self.core.id, life.id);
        let _refused_only_if_stuck_meanwhile = pool.detach(move || drop_resource(adapter, id));
        // Run what is queued, then let the thread go.
        let _none_cancelled = pool.inner().begin_shutdown(QueuedWork::Run);
    }
}

impl<T> fmt::Debug for ThreadBound<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadBound")
            .field("name", &self.settings.name)
            .field("timeout", &self.settings.timeout)
            .field("interruptible", &self.interrupter.is_some())
            .finish_non_exhaustive()
    }
}
