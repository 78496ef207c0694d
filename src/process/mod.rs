//! Hard deadlines: a pool of worker processes whose calls really stop at
//! the deadline (feature `process`, unix only).
//!
//! A thread cannot be killed, so a [`BlockingPool`](crate::BlockingPool)
//! job that spins forever in a vendor library keeps its thread (abandoned
//! and counted), and one that segfaults takes the whole application down.
//! A [`ProcessPool`] runs such code in worker processes instead: at the
//! deadline the worker is killed, reaped and replaced; a crash (abort,
//! segfault, OOM kill, `exit()`) fails that one call with the signal or
//! exit code; a panic is a panic error and the worker goes on.
//!
//! # Set-up: one call first thing in `main`
//!
//! Workers run the application's own binary again
//! (`std::env::current_exe()`), marked by an environment variable. The
//! functions they can run are registered by name with [`Functions`], and
//! [`Functions::init`] is the entry point: in a worker it runs the worker
//! and never returns; in the application it records the names and
//! returns. A pool built in a process where `init` was not called is
//! refused ([`ConfigError::NotInitialized`]),
//! so a forgotten `init` cannot make workers run `main` from the top.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! fn parse(input: &[u8]) -> Vec<u8> {
//!     // a legacy parser that may hang or crash on some inputs
//!     input.to_ascii_uppercase()
//! }
//!
//! fn main() {
//!     colorseam::process::Functions::new().add("parse", parse).init();
//!
//!     let pool = colorseam::process::ProcessPool::builder()
//!         .name("parsers")
//!         .max_workers(4)
//!         .default_timeout(Duration::from_secs(2))
//!         .build()
//!         .unwrap();
//!     // From a sync caller (any thread):
//!     let out = pool.call_blocking("parse", b"abc".to_vec(), Duration::from_secs(1)).unwrap();
//!     assert_eq!(out, b"ABC");
//!     // From async code: `pool.call("parse", input).await`.
//! }
//! ```
//!
//! # The contract (the same as `offload`'s)
//!
//! - **Bounded.** At most `max_workers` worker processes, at most
//!   `queue_capacity` calls waiting; a full queue makes callers wait for
//!   room (counted against their deadline) or refuses them
//!   ([`Builder::reject_when_full`]).
//! - **A deadline covers the queue and the run**, in real time. A call
//!   still queued at its deadline never runs; a running one has its worker
//!   killed with `SIGKILL` at once (by the caller's timer, and by the
//!   supervisor as a backstop). The supervisor reaps it and starts a
//!   replacement straight away, before the next queued call needs it.
//! - **Every call resolves exactly once**, to its output or to a typed
//!   [`Error`] naming the pool, the function, the call site,
//!   the phase and the elapsed time; see [`Call`].
//! - **No orphans, no zombies.** Workers talk to the pool over a Unix
//!   socket, and a worker exits as soon as its end closes, which the
//!   kernel does when the application dies, even by `SIGKILL`. Dead
//!   workers are always reaped by their supervisor thread.
//! - **Metrics** ([`ProcessPool::metrics`], and in
//!   [`metrics::all`](crate::metrics::all) under the pool's name, with
//!   workers as "threads"), `tracing` events (feature `tracing`) when a
//!   worker starts, dies or is recycled, and [shutdown](ProcessPool::shutdown)
//!   with a deadline and a report.
//! - **Limits.** Optional per-worker memory ([`Builder::memory_limit`]) and
//!   CPU time ([`Builder::cpu_time_limit`]) limits, and recycling a worker
//!   after N calls ([`Builder::recycle_after`]) for leaky libraries.
//!
//! Arguments and results cross as bytes; with the `process-serde` feature,
//! [`Functions::add_serde`] and [`ProcessPool::call_serde`] carry any
//! serde type in postcard, a compact binary format.
//!
//! # Caveats
//!
//! - Unix only. The socket is in Linux's abstract namespace (a socket file
//!   in the temp dir elsewhere), checked by a random token and the worker's
//!   pid.
//! - A worker's stdout is the application's; its stderr is forwarded to
//!   the application's stderr line by line, and its last line is kept for
//!   the error of a crash ([`Error::last_words`](crate::Error::last_words)).
//! - A worker starts like the application does: whatever runs before
//!   `main` (and in `main` before `init`) runs in every worker. Start-up
//!   costs one process spawn plus that; calls reuse workers.
//! - Only the code of the registered function is isolated. State it keeps
//!   in the worker (statics, caches) lives until the worker is replaced.

mod address;
mod call;
mod frame;
mod functions;
mod job;
mod pool;

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub use call::Call;
pub use functions::Functions;

use crate::error::{ConfigError, Error, ErrorKind};
use crate::metrics::{Latency, PoolMetrics};
use crate::pool::{ShutdownOptions, ShutdownReport};
use functions::Limits;
use job::Job;
use pool::{Config, Inner};

/// A bounded pool of worker processes running the functions registered
/// with [`Functions`]; see the [module docs](self).
///
/// Cloning gives another handle to the same pool. When the last handle is
/// dropped the pool finishes its queue and stops its workers (calls in
/// flight still resolve); [`shutdown`](Self::shutdown) does it with a
/// deadline and a report.
#[derive(Clone)]
pub struct ProcessPool {
    inner: Arc<Inner>,
    _handle: Arc<LastHandle>,
}

/// Closes the pool when the last [`ProcessPool`] handle goes.
struct LastHandle(Arc<Inner>);

impl Drop for LastHandle {
    fn drop(&mut self) {
        self.0.close_when_idle();
    }
}

impl ProcessPool {
    /// A [`Builder`] with the defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    #[track_caller]
    fn start(
        &self,
        function: &str,
        input: Vec<u8>,
        deadline: Option<Instant>,
        reject: bool,
    ) -> Call {
        let inner = &self.inner;
        let job = Job::new(
            function.into(),
            input,
            inner.config.name.clone(),
            Location::caller(),
            deadline,
        );
        let known = functions::registered()
            .is_some_and(|names| names.binary_search_by(|n| n.as_str().cmp(function)).is_ok());
        if !known {
            return Call::failed(job.error(ErrorKind::NotRegistered, None));
        }
        Call::start(inner, job, reject)
    }

    /// Runs the function registered as `function` on a worker process with
    /// `input`; the future resolves to its output.
    ///
    /// The deadline is the pool's [`default_timeout`](Builder::default_timeout),
    /// if any. When the queue is full the call waits for room (counted
    /// against its deadline) unless the pool was built with
    /// [`reject_when_full`](Builder::reject_when_full).
    ///
    /// # Errors, Cancellation, Panics
    ///
    /// See [`Call`].
    #[track_caller]
    pub fn call(&self, function: &str, input: Vec<u8>) -> Call {
        let deadline = deadline_after(self.inner.config.default_timeout);
        self.start(
            function,
            input,
            deadline,
            self.inner.config.reject_when_full,
        )
    }

    /// [`call`](Self::call) with a deadline `timeout` from now (a timeout
    /// too large to add to the current instant means none).
    #[track_caller]
    pub fn call_timeout(&self, function: &str, input: Vec<u8>, timeout: Duration) -> Call {
        let deadline = deadline_after(Some(timeout));
        self.start(
            function,
            input,
            deadline,
            self.inner.config.reject_when_full,
        )
    }

    /// [`call`](Self::call) with a deadline at `deadline`.
    #[track_caller]
    pub fn call_deadline(&self, function: &str, input: Vec<u8>, deadline: Instant) -> Call {
        self.start(
            function,
            input,
            Some(deadline),
            self.inner.config.reject_when_full,
        )
    }

    /// [`call_timeout`](Self::call_timeout), refused at once with a
    /// saturation error when the queue is full.
    #[track_caller]
    pub fn try_call(&self, function: &str, input: Vec<u8>, timeout: Duration) -> Call {
        self.start(function, input, deadline_after(Some(timeout)), true)
    }

    /// A call for sync code, from any thread: blocks until the output, an
    /// error, or the deadline `timeout` from now (after which the worker
    /// is killed).
    ///
    /// Driven by [`block_on`](crate::block_on), so it is refused (not a
    /// freeze) from async code, and works on a plain thread, a
    /// `spawn_blocking` thread or a [`BlockingPool`](crate::BlockingPool)
    /// job.
    ///
    /// # Errors
    ///
    /// As for [`Call`], plus [`ErrorKind::AsyncContext`] from async code.
    ///
    /// # Examples
    ///
    /// See the [module docs](self).
    #[track_caller]
    pub fn call_blocking(
        &self,
        function: &str,
        input: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, Error> {
        let call = self.call_timeout(function, input, timeout);
        crate::block_on(call)?
    }

    /// A typed call (feature `process-serde`): `arg` and the result cross
    /// as postcard. The function must be registered with
    /// [`Functions::add_serde`] with the same types.
    ///
    /// # Errors
    ///
    /// As for [`Call`]; an argument that does not encode or a result that
    /// does not decode as `R` is an error of kind [`ErrorKind::Job`].
    #[cfg(feature = "process-serde")]
    #[cfg_attr(docsrs, doc(cfg(feature = "process-serde")))]
    #[track_caller]
    pub fn call_serde<A, R>(&self, function: &str, arg: &A, timeout: Duration) -> CallSerde<R>
    where
        A: serde::Serialize + ?Sized,
        R: serde::de::DeserializeOwned,
    {
        let location = Location::caller();
        let call = match postcard::to_stdvec(arg) {
            Ok(input) => self.start(
                function,
                input,
                deadline_after(Some(timeout)),
                self.inner.config.reject_when_full,
            ),
            Err(e) => {
                let job = Job::new(
                    function.into(),
                    Vec::new(),
                    self.inner.config.name.clone(),
                    location,
                    None,
                );
                Call::failed(
                    job.error(ErrorKind::Job, None)
                        .with_source(format!("the argument did not encode: {e}").into()),
                )
            }
        };
        CallSerde {
            call,
            function: function.into(),
            pool: self.inner.config.name.clone(),
            location,
            called_at: Instant::now(),
            _result: std::marker::PhantomData,
        }
    }

    /// A snapshot of the pool: the [`PoolMetrics`] every pool has (workers
    /// counted as threads) and the figures of worker processes.
    pub fn metrics(&self) -> ProcessMetrics {
        self.inner.snapshot().1
    }

    /// Stops the pool: new calls are refused at once, queued calls run or
    /// are cancelled ([`ShutdownOptions`]), running calls get until the
    /// deadline, and at the deadline their workers are killed (their
    /// callers get a shut-down error, [`Error::is_killed`]). Resolves to
    /// the report once every worker process is reaped (or shortly after
    /// the deadline): `abandoned` counts the calls whose workers were
    /// killed.
    ///
    /// The waiting is done on a thread of its own, so the future needs no
    /// runtime.
    ///
    /// # Cancellation
    ///
    /// Dropping the future does not undo the shutdown.
    pub fn shutdown(&self, options: ShutdownOptions) -> Shutdown {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let inner = self.inner.clone();
        let waiting = std::thread::Builder::new()
            .name(format!("{}-shutdown", inner.config.name))
            .spawn(move || {
                let _caller_left = tx.send(inner.shutdown_blocking(options));
            });
        match waiting {
            Ok(_) => Shutdown {
                rx: Some(rx),
                ready: None,
            },
            // No thread: do it here, blocking, rather than not at all.
            Err(_) => Shutdown {
                rx: None,
                ready: Some(self.inner.shutdown_blocking(options)),
            },
        }
    }

    /// [`shutdown`](Self::shutdown) for sync callers: blocks until done.
    pub fn shutdown_blocking(&self, options: ShutdownOptions) -> ShutdownReport {
        self.inner.shutdown_blocking(options)
    }
}

/// The most worker processes a pool may have (as a pool's threads).
const MAX_WORKERS_LIMIT: usize = 10_000;
/// The largest queue (as a pool's).
const MAX_QUEUE_LIMIT: usize = 1 << 32;

fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|timeout| Instant::now().checked_add(timeout))
}

impl fmt::Debug for ProcessPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.inner.config;
        f.debug_struct("ProcessPool")
            .field("name", &config.name)
            .field("max_workers", &config.max_workers)
            .field("queue_capacity", &config.queue_capacity)
            .finish_non_exhaustive()
    }
}

/// The future of [`ProcessPool::shutdown`].
#[must_use = "the shutdown has begun; await this to wait for it and get the report"]
pub struct Shutdown {
    rx: Option<tokio::sync::oneshot::Receiver<ShutdownReport>>,
    ready: Option<ShutdownReport>,
}

impl Future for Shutdown {
    type Output = ShutdownReport;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ShutdownReport> {
        if let Some(report) = self.ready.take() {
            return Poll::Ready(report);
        }
        let rx = self
            .rx
            .as_mut()
            .expect("a shutdown is polled until it resolves, once");
        match Pin::new(rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(report) => {
                self.rx = None;
                // The waiting thread cannot drop its sender without
                // sending unless it panicked, which it does not.
                Poll::Ready(report.unwrap_or_default())
            }
        }
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown").finish_non_exhaustive()
    }
}

/// A snapshot of a [`ProcessPool`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessMetrics {
    /// What every pool reports: workers as threads (`total` live worker
    /// processes, `busy` running a call, `peak`), queue depth, outcomes
    /// (`completed` includes calls whose function returned an error),
    /// latencies.
    pub pool: PoolMetrics,
    /// Worker processes started and not yet reaped (gauge).
    pub workers: usize,
    /// Their pids (gauge).
    pub worker_pids: Vec<u32>,
    /// Worker processes started (counter).
    pub started: u64,
    /// Worker starts that failed (counter).
    pub start_failures: u64,
    /// Calls whose worker died under them (counter).
    pub crashed: u64,
    /// Workers killed by the pool: deadlines, dropped calls, shutdown (counter).
    pub killed: u64,
    /// Workers ended after [`recycle_after`](Builder::recycle_after) calls (counter).
    pub recycled: u64,
    /// Calls whose function returned an error (counter).
    pub failed: u64,
    /// Time from spawning a worker to its first word on the socket.
    pub start_time: Latency,
}

/// Builds a [`ProcessPool`]; every setting is checked by [`build`](Self::build).
///
/// | setting | default |
/// | --- | --- |
/// | [`name`](Self::name) | `"colorseam-process"` |
/// | [`max_workers`](Self::max_workers) | the number of cores |
/// | [`queue_capacity`](Self::queue_capacity) | 1024 |
/// | [`default_timeout`](Self::default_timeout) | none |
/// | [`reject_when_full`](Self::reject_when_full) | false: callers wait for room |
/// | [`memory_limit`](Self::memory_limit) | none |
/// | [`cpu_time_limit`](Self::cpu_time_limit) | none |
/// | [`recycle_after`](Self::recycle_after) | never |
/// | [`start_timeout`](Self::start_timeout) | 10 s |
/// | [`program`](Self::program) | `std::env::current_exe()` |
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder {
    name: String,
    max_workers: Option<usize>,
    queue_capacity: usize,
    default_timeout: Option<Duration>,
    reject_when_full: bool,
    limits: Limits,
    recycle_after: Option<u64>,
    start_timeout: Duration,
    program: Option<PathBuf>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            name: "colorseam-process".to_owned(),
            max_workers: None,
            queue_capacity: 1024,
            default_timeout: None,
            reject_when_full: false,
            limits: Limits::default(),
            recycle_after: None,
            start_timeout: Duration::from_secs(10),
            program: None,
        }
    }
}

impl Builder {
    /// Names the pool: errors, metrics, events and the supervisor threads
    /// (`<name>-sup-<n>`) carry it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The most worker processes at once (1 to 10,000). Workers start as
    /// calls need them and then stay, until shutdown.
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// The most calls that wait for a worker (1 to 2^32).
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }

    /// The deadline [`call`](ProcessPool::call) gives every call.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

    /// When true, a call finding the queue full fails at once with a
    /// saturation error.
    pub fn reject_when_full(mut self, reject: bool) -> Self {
        self.reject_when_full = reject;
        self
    }

    /// Limits each worker's address space to `bytes` (`RLIMIT_AS`, set by
    /// the worker on itself before its first call).
    ///
    /// A function that allocates past it fails to allocate, which Rust
    /// turns into an abort: the call fails with [`Error::is_crash`],
    /// signal 6, and [`Error::last_words`] saying `memory allocation of N
    /// bytes failed`. The pool goes on.
    ///
    /// # Caveats
    ///
    /// It limits virtual memory, not resident memory: every thread's stack
    /// and every reservation counts, so leave room above what the worker
    /// really touches (a plain worker reserves a few MiB; one that starts
    /// a tokio runtime, more).
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.limits.memory = Some(bytes);
        self
    }

    /// Limits each worker's CPU time (`RLIMIT_CPU`, whole seconds, rounded
    /// up): past it the kernel sends `SIGXCPU` (signal 24), and the call
    /// that was running fails with [`Error::is_crash`].
    ///
    /// # Caveats
    ///
    /// The limit is the kernel's, per worker process over its whole life,
    /// not per call. For a per-call limit, add
    /// [`recycle_after(1)`](Self::recycle_after) (a fresh worker per call),
    /// or use a deadline, which is per call and much finer.
    pub fn cpu_time_limit(mut self, limit: Duration) -> Self {
        let seconds = limit.as_secs() + u64::from(limit.subsec_nanos() > 0);
        self.limits.cpu_seconds = Some(seconds.max(1));
        self
    }

    /// Replaces a worker after it has run `n` calls (at least 1), for
    /// libraries that leak.
    pub fn recycle_after(mut self, n: u64) -> Self {
        self.recycle_after = Some(n.max(1));
        self
    }

    /// How long a new worker may take to start and reach the pool before
    /// it is killed and the call that needed it fails with
    /// [`ErrorKind::SpawnFailed`].
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// The binary to run as worker (default: this one). It must call
    /// [`Functions::init`] first thing in `main`, with the functions the
    /// pool's callers name.
    pub fn program(mut self, path: impl Into<PathBuf>) -> Self {
        self.program = Some(path.into());
        self
    }

    /// Checks the configuration and makes the pool. No worker starts until
    /// the first call.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first setting that cannot work, or
    /// [`ConfigError::NotInitialized`] if [`Functions::init`] was not
    /// called in this process.
    pub fn build(self) -> Result<ProcessPool, ConfigError> {
        if self.name.is_empty() || self.name.contains('\0') {
            return Err(ConfigError::BadName(self.name));
        }
        let max_workers = match self.max_workers {
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        if max_workers == 0 {
            return Err(ConfigError::ZeroWorkers);
        }
        if max_workers > MAX_WORKERS_LIMIT {
            return Err(ConfigError::TooManyThreads {
                got: max_workers,
                max: MAX_WORKERS_LIMIT,
            });
        }
        if self.queue_capacity == 0 {
            return Err(ConfigError::ZeroQueue);
        }
        if self.queue_capacity > MAX_QUEUE_LIMIT {
            return Err(ConfigError::QueueTooLarge {
                got: self.queue_capacity,
                max: MAX_QUEUE_LIMIT,
            });
        }
        if functions::registered().is_none() {
            return Err(ConfigError::NotInitialized);
        }
        let program = match self.program {
            Some(program) => program,
            None => std::env::current_exe().map_err(|e| ConfigError::NoProgram(e.to_string()))?,
        };
        let inner = Inner::new(Config {
            name: self.name.into(),
            max_workers,
            queue_capacity: self.queue_capacity,
            reject_when_full: self.reject_when_full,
            default_timeout: self.default_timeout,
            limits: self.limits,
            recycle_after: self.recycle_after,
            start_timeout: self.start_timeout,
            program,
        });
        let source: Arc<dyn crate::metrics::Source> = inner.clone();
        crate::metrics::register(Arc::downgrade(&source));
        Ok(ProcessPool {
            _handle: Arc::new(LastHandle(inner.clone())),
            inner,
        })
    }
}

#[cfg(feature = "process-serde")]
pin_project_lite::pin_project! {
    #[cfg_attr(docsrs, doc(cfg(feature = "process-serde")))]
    /// The future of [`ProcessPool::call_serde`]: a [`Call`] whose output
    /// is decoded from postcard.
    ///
    /// # Errors, Cancellation, Panics
    ///
    /// See [`Call`].
    #[must_use = "a process call is submitted already; dropping this future cancels it"]
    pub struct CallSerde<R> {
        #[pin]
        call: Call,
        function: Arc<str>,
        pool: Arc<str>,
        location: &'static Location<'static>,
        called_at: Instant,
        _result: std::marker::PhantomData<fn() -> R>,
    }
}

#[cfg(feature = "process-serde")]
impl<R: serde::de::DeserializeOwned> Future for CallSerde<R> {
    type Output = Result<R, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let bytes = std::task::ready!(this.call.poll(cx))?;
        Poll::Ready(postcard::from_bytes(&bytes).map_err(|e| {
            let job = Job::new(
                this.function.clone(),
                Vec::new(),
                this.pool.clone(),
                this.location,
                None,
            );
            job.error(ErrorKind::Job, None)
                .with_phase(crate::Phase::Running)
                .with_source(format!("the result did not decode: {e}").into())
        }))
    }
}

#[cfg(feature = "process-serde")]
impl<R> fmt::Debug for CallSerde<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallSerde")
            .field("call", &self.call)
            .finish()
    }
}
