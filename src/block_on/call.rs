//! [`Call`]: the engine behind every blocking entry point, which picks the
//! runtime and thread by calling context.

use std::future::Future;
use std::panic::Location;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use super::context::{CallerContext, RuntimeFlavor, context};
use super::drive::{Stopped, drive};
use crate::bridge::{bridge, bridge_handle, bridge_io_handle};
use crate::error::{Error, ErrorKind, Phase};

/// How a blocking entry point treats an async caller.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum OnWorker {
    Refuse,
    BlockInPlace,
}

pub(super) fn error(
    kind: ErrorKind,
    name: Option<&Arc<str>>,
    operation: &'static str,
    location: &'static Location<'static>,
    started: Instant,
) -> Error {
    let name = name.map_or_else(unnamed, Arc::clone);
    Error::new(kind, name, location, started.elapsed()).with_operation(operation)
}

/// The shared engine behind `block_on`, `block_on_in_place` and the
/// adapters: picks the runtime and thread by calling context.
pub(crate) struct Call {
    /// The adapter's name; none for a bare `block_on` (not cloned per call:
    /// one shared `Arc` would be a contended counter across threads).
    pub(crate) name: Option<Arc<str>>,
    pub(crate) operation: &'static str,
    pub(crate) location: &'static Location<'static>,
    pub(crate) started: Instant,
    /// The sync caller's span, entered while its future is polled.
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl Call {
    #[track_caller]
    pub(crate) fn new(name: Option<Arc<str>>, operation: &'static str) -> Self {
        Call {
            name,
            operation,
            location: Location::caller(),
            started: Instant::now(),
            #[cfg(feature = "tracing")]
            span: tracing::Span::current(),
        }
    }

    /// A call made at a call site recorded earlier (an adapter's constructor).
    pub(crate) fn at(
        name: Option<Arc<str>>,
        operation: &'static str,
        location: &'static Location<'static>,
    ) -> Self {
        Call {
            name,
            operation,
            location,
            started: Instant::now(),
            #[cfg(feature = "tracing")]
            span: tracing::Span::current(),
        }
    }

    /// [`block_on`]'s rules, for the adapters.
    pub(crate) fn block_here<F: Future>(&self, future: F) -> Result<F::Output, Error> {
        self.run_here(future, OnWorker::Refuse)
    }

    /// The error for a call refused because it came from async code.
    pub(crate) fn refusal(&self) -> Error {
        self.error(ErrorKind::AsyncContext)
    }

    fn error(&self, kind: ErrorKind) -> Error {
        error(
            kind,
            self.name.as_ref(),
            self.operation,
            self.location,
            self.started,
        )
    }

    fn stopped(&self, stopped: Stopped) -> Error {
        match stopped {
            Stopped::Elapsed => self.error(ErrorKind::Timeout).with_phase(Phase::Running),
            Stopped::Panicked(message) => self
                .error(ErrorKind::Panicked)
                .with_phase(Phase::Running)
                .with_panic_message(message),
        }
    }

    /// Drives `future` on this thread (it need not be `Send`). The deadline
    /// is honoured whenever the future yields.
    pub(super) fn run_here<F: Future>(
        &self,
        future: F,
        on_worker: OnWorker,
    ) -> Result<F::Output, Error> {
        #[cfg(feature = "tracing")]
        let future = tracing::Instrument::instrument(future, self.span.clone());
        let context = context();
        match context {
            // A current-thread runtime drives its IO and timers only while
            // its own thread is in `block_on`, which nothing guarantees from
            // here: use the bridge, like a plain thread.
            CallerContext::NoRuntime
            | CallerContext::BlockingThread {
                flavor: RuntimeFlavor::CurrentThread | RuntimeFlavor::Other,
            } => {
                let handle = bridge().map_err(|_| self.error(ErrorKind::SpawnFailed))?;
                let _entered = handle.enter();
                drive(future, None, None).map_err(|s| self.stopped(s))
            }
            CallerContext::BlockingThread { .. } => {
                drive(future, None, None).map_err(|s| self.stopped(s))
            }
            CallerContext::PoolThread { .. } => self.run_on_pool_thread(future),
            CallerContext::AsyncWorker {
                flavor: RuntimeFlavor::MultiThread,
            } if on_worker == OnWorker::BlockInPlace => {
                // `context()` says `AsyncWorker` only where a runtime's
                // scheduler runs on this thread, and with a multi-thread
                // handle that is one of its workers, where `block_in_place`
                // never refuses (its refusal is for a current-thread driver
                // or a `LocalSet` on a `block_on` thread, which are judged
                // otherwise before this point).
                tokio::task::block_in_place(|| drive(future, None, None))
                    .map_err(|s| self.stopped(s))
            }
            _ => Err(self.error(ErrorKind::AsyncContext)),
        }
    }

    fn run_on_pool_thread<F: Future>(&self, future: F) -> Result<F::Output, Error> {
        let handle = self.pool_thread_runtime(bridge_io_handle)?;
        let _entered = handle.enter();
        // No deadline here: the thread may help its pool while it waits.
        let waiting = crate::pool::help::waiting_here();
        let future = crate::pool::loan::Lending::new(crate::pool::loan::lender_here(), future);
        drive(future, None, waiting.as_ref()).map_err(|s| self.stopped(s))
    }

    /// The runtime a pool thread's future runs against: the submitting
    /// caller's if it is a multi-thread runtime (its workers drive its IO
    /// and timers), else the bridge (a current-thread runtime's IO runs only
    /// while its own thread is in `block_on`, which nothing guarantees).
    /// `bridge` is the bridge's half to fall back on: the IO half for a
    /// future polled here, the spawn half for one spawned.
    fn pool_thread_runtime(&self, bridge: fn() -> Result<Handle, String>) -> Result<Handle, Error> {
        match crate::job::current().and_then(|job| job.runtime().cloned()) {
            Some(handle)
                if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                Ok(handle)
            }
            _ => bridge().map_err(|_| self.error(ErrorKind::SpawnFailed)),
        }
    }

    /// Runs `future` on a runtime (never on this thread) and waits for it
    /// until `deadline`, whatever the future does; at the deadline the
    /// future is cancelled on the runtime that owns it.
    pub(crate) fn run_until<F>(
        &self,
        future: F,
        deadline: Option<Instant>,
        on: Runtime,
    ) -> Result<F::Output, Error>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let Some(deadline) = deadline else {
            return self.run_here(future, OnWorker::Refuse);
        };
        let bridge = || bridge_handle().map_err(|_| self.error(ErrorKind::SpawnFailed));
        // A wait with a deadline never helps its pool (`pool::help`): nested
        // offloads of this future go to the pool's queue like any other.
        let handle = match context() {
            CallerContext::NoRuntime => bridge()?,
            CallerContext::BlockingThread { flavor } => {
                // A current-thread runtime runs spawned tasks only while its
                // own thread is in `block_on`, which nothing guarantees here.
                match (on, flavor) {
                    (Runtime::Caller, RuntimeFlavor::MultiThread) => Handle::current(),
                    _ => bridge()?,
                }
            }
            CallerContext::PoolThread { .. } => match on {
                Runtime::Caller => self.pool_thread_runtime(bridge_handle)?,
                Runtime::Bridge => bridge()?,
            },
            _ => return Err(self.error(ErrorKind::AsyncContext)),
        };
        // Polled elsewhere, but on behalf of the job blocked here, if any:
        // its nested offloads may borrow the job's permit (`pool::loan`).
        let future = crate::pool::loan::Lending::new(crate::pool::loan::lender_here(), future);
        #[cfg(feature = "tracing")]
        let future = tracing::Instrument::instrument(future, self.span.clone());
        let task = handle.spawn(future);
        let abort = task.abort_handle();
        let result = drive(task, Some(deadline), None);
        if result.is_err() {
            abort.abort();
        }
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(join_error)) if join_error.is_panic() => Err(self
                .error(ErrorKind::Panicked)
                .with_phase(Phase::Running)
                .with_panic(join_error.into_panic())),
            // Cancelled without us asking: its runtime shut down.
            Ok(Err(_cancelled)) => Err(self.error(ErrorKind::ShutDown).with_phase(Phase::Running)),
            Err(stopped) => Err(self.stopped(stopped)),
        }
    }
}

/// Which runtime a spawned call runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Runtime {
    /// The caller's, where it has a usable one; else the bridge.
    Caller,
    /// Always the bridge (resources built for the bridge, like `ForSync`'s).
    Bridge,
}

/// The empty name of a bare `block_on` (no pool, no adapter), shared so a
/// call does not allocate one.
pub(crate) fn unnamed() -> Arc<str> {
    static EMPTY: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));
    EMPTY.clone()
}

/// A deadline far enough away to mean "none" without overflowing.
pub(crate) fn far_future() -> Instant {
    let now = Instant::now();
    now.checked_add(Duration::from_secs(86_400 * 365 * 30))
        .unwrap_or(now)
}
