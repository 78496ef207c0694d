//! `ForAsync<T>` and `ThreadBound<T>`: sync resources, served to async callers.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::error::{ConfigError, Error, ErrorKind, Phase};
use crate::offload::Offload;
use crate::pool::BlockingPool;

/// The default deadline of an adapter call.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What an adapter does when the sync code it calls panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PanicPolicy {
    /// Return an error ([`Error::is_panic`]) carrying the panic message.
    #[default]
    ReturnError,
    /// Resume the panic in the async caller (with the message as payload),
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

pin_project_lite::pin_project! {
    /// The future of one adapter call. Resolves exactly once.
    ///
    /// # Errors
    ///
    /// As [`Offload`]: timeout (in any phase), panic (under
    /// [`PanicPolicy::ReturnError`]), saturation, shutdown; errors name the
    /// adapter and say `call`.
    ///
    /// # Cancellation
    ///
    /// Dropping it cancels a queued call and abandons a running one, as
    /// dropping an [`Offload`] does.
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
        offload: Offload<R>,
        panic_policy: PanicPolicy,
    }
}

impl<R: Send + 'static> Future for AdapterCall<R> {
    type Output = Result<R, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.offload.poll(cx));
        Poll::Ready(result.map_err(|error| {
            if error.is_panic() && *this.panic_policy == PanicPolicy::Resume {
                let message = error.panic_message().unwrap_or("Box<dyn Any>").to_owned();
                std::panic::resume_unwind(Box::new(message));
            }
            error.with_operation("call")
        }))
    }
}

impl<R: Send + 'static> fmt::Debug for AdapterCall<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdapterCall")
            .field("offload", &self.offload)
            .field("panic_policy", &self.panic_policy)
            .finish()
    }
}

fn refused<R: Send + 'static>(error: Error) -> AdapterCall<R> {
    AdapterCall {
        offload: Offload::failed(error),
        panic_policy: PanicPolicy::ReturnError,
    }
}

/// Owns a sync resource (a legacy SDK client, a database handle) and serves
/// it to async callers, through [`call`](Self::call) only.
///
/// Every call runs on the adapter's own bounded pool, named after the
/// adapter, so the adapter is a *bulkhead*: at most
/// [`limit`](ForAsyncBuilder::limit) calls run at once, and a dependency that
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
///     .limit(4)
///     .timeout(Duration::from_secs(2))
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
}

/// Configures a [`ForAsync`].
#[derive(Debug)]
pub struct ForAsyncBuilder {
    settings: Settings,
    limit: usize,
    max_abandoned: Option<usize>,
    queue_capacity: usize,
    reject_when_full: bool,
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
        }
    }
}

impl ForAsyncBuilder {
    /// The most calls running at once (default 8): the bulkhead.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// How many threads stuck in abandoned calls are replaced (default: as
    /// many as `limit`). See [`Builder::max_abandoned`](crate::pool::Builder::max_abandoned).
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
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// What a panic in the sync code becomes (default: an error).
    pub fn panic_policy(mut self, policy: PanicPolicy) -> Self {
        self.settings.panic_policy = policy;
        self
    }

    /// Builds the adapter around `resource`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a limit, queue or abandon budget that cannot
    /// work, or a name that cannot name a thread.
    pub fn build<T: Send + Sync + 'static>(self, resource: T) -> Result<ForAsync<T>, ConfigError> {
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
        })
    }
}

impl<T: Send + Sync + 'static> ForAsync<T> {
    /// An adapter with the default settings (limit 8, timeout 30 s).
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
        self.call_deadline(f, Instant::now().checked_add(self.settings.timeout))
    }

    /// [`call`](Self::call) with its own deadline `timeout` from now.
    #[track_caller]
    pub fn call_timeout<F, R>(&self, f: F, timeout: Duration) -> AdapterCall<R>
    where
        F: FnOnce(&T) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.call_deadline(f, Instant::now().checked_add(timeout))
    }

    #[track_caller]
    fn call_deadline<F, R>(&self, f: F, deadline: Option<Instant>) -> AdapterCall<R>
    where
        F: FnOnce(&T) -> R + Send + 'static,
        R: Send + 'static,
    {
        let resource = self.resource.clone();
        AdapterCall {
            offload: Offload::start(
                self.pool.inner(),
                Box::new(move || f(&resource)),
                deadline,
                self.pool.inner().config.reject_when_full,
                Location::caller(),
            ),
            panic_policy: self.settings.panic_policy,
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

impl<T> fmt::Debug for ForAsync<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForAsync")
            .field("name", &self.settings.name)
            .field("timeout", &self.settings.timeout)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// The resources of the `ThreadBound` adapters whose thread this is, by
    /// adapter id. Dropped with the thread, so each resource is dropped on
    /// the thread that made it.
    static BOUND: RefCell<HashMap<u64, Box<dyn Any>>> = RefCell::new(HashMap::new());
}

static NEXT_BOUND_ID: AtomicU64 = AtomicU64::new(1);

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
/// The thread is a one-thread pool that never replaces itself. When a call
/// hangs and its caller gives up, the thread is stuck; instead of letting
/// later calls queue behind it until their deadlines, they fail at once with
/// a saturation error that says the thread is stuck
/// ([`Error::stuck_threads`] is 1), until the stuck call returns.
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
    id: u64,
    factory: Arc<dyn Fn() -> T + Send + Sync>,
    pool: BlockingPool,
    settings: Settings,
}

impl<T: 'static> ThreadBound<T> {
    /// A thread-bound adapter whose resource `factory` makes on its thread
    /// at the first call (and again after a call in which it panicked).
    ///
    /// # Errors
    ///
    /// [`ConfigError::BadName`] if `name` cannot name a thread.
    pub fn new(
        name: impl Into<String>,
        factory: impl Fn() -> T + Send + Sync + 'static,
    ) -> Result<Self, ConfigError> {
        Self::with_settings(
            Settings {
                name: name.into(),
                timeout: DEFAULT_TIMEOUT,
                panic_policy: PanicPolicy::ReturnError,
            },
            factory,
            1024,
        )
    }

    fn with_settings(
        settings: Settings,
        factory: impl Fn() -> T + Send + Sync + 'static,
        queue_capacity: usize,
    ) -> Result<Self, ConfigError> {
        let pool = BlockingPool::builder()
            .name(settings.name.clone())
            .max_threads(1)
            .min_threads(1)
            .max_abandoned(0)
            .queue_capacity(queue_capacity)
            .build()?;
        Ok(ThreadBound {
            id: NEXT_BOUND_ID.fetch_add(1, Ordering::Relaxed),
            factory: Arc::new(factory),
            pool,
            settings,
        })
    }

    /// Sets the deadline of every call (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// Sets what a panic in a call becomes (default: an error). A panic
    /// leaves the resource in place; a panic in the factory means the next
    /// call tries the factory again.
    pub fn with_panic_policy(mut self, policy: PanicPolicy) -> Self {
        self.settings.panic_policy = policy;
        self
    }

    /// Runs `f(&mut resource)` on the adapter's thread, after every call made
    /// before it, within the adapter's deadline.
    ///
    /// # Errors, Cancellation, Panics
    ///
    /// See [`AdapterCall`]; plus a saturation error at once while the
    /// thread is stuck in an abandoned call.
    #[track_caller]
    pub fn call<F, R>(&self, f: F) -> AdapterCall<R>
    where
        F: FnOnce(&mut T) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.call_deadline(f, Instant::now().checked_add(self.settings.timeout))
    }

    /// [`call`](Self::call) with its own deadline `timeout` from now.
    #[track_caller]
    pub fn call_timeout<F, R>(&self, f: F, timeout: Duration) -> AdapterCall<R>
    where
        F: FnOnce(&mut T) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.call_deadline(f, Instant::now().checked_add(timeout))
    }

    #[track_caller]
    fn call_deadline<F, R>(&self, f: F, deadline: Option<Instant>) -> AdapterCall<R>
    where
        F: FnOnce(&mut T) -> R + Send + 'static,
        R: Send + 'static,
    {
        let location = Location::caller();
        let inner = self.pool.inner();
        let stuck = inner.stuck_threads();
        if stuck > 0 {
            let error = Error::new(
                ErrorKind::Saturated,
                inner.name().clone(),
                location,
                Duration::ZERO,
            )
            .with_operation("call")
            .with_phase(Phase::WaitingForRoom)
            .with_stuck_threads(stuck);
            inner.count_rejected();
            #[cfg(feature = "tracing")]
            tracing::warn!(adapter = %self.settings.name, "colorseam thread-bound adapter is stuck in an abandoned call; refusing");
            return refused(error);
        }
        let (id, factory) = (self.id, self.factory.clone());
        AdapterCall {
            offload: Offload::start(
                inner,
                Box::new(move || {
                    BOUND.with(|bound| {
                        let mut bound = bound.borrow_mut();
                        let slot = bound.entry(id).or_insert_with(|| Box::new(factory()));
                        let resource = slot
                            .downcast_mut::<T>()
                            .expect("a bound slot holds the type its adapter made");
                        f(resource)
                    })
                }),
                deadline,
                true,
                location,
            ),
            panic_policy: self.settings.panic_policy,
        }
    }

    /// The adapter's name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The adapter's one-thread pool, for its metrics.
    pub fn pool(&self) -> &BlockingPool {
        &self.pool
    }
}

impl<T> fmt::Debug for ThreadBound<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadBound")
            .field("name", &self.settings.name)
            .field("timeout", &self.settings.timeout)
            .finish_non_exhaustive()
    }
}
