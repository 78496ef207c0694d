//! The one error type of the crate, and the configuration error.

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::sync::Mutex;
use std::time::Duration;

/// What went wrong, coarsely; match on it or use the `is_*()` predicates.
///
/// New kinds may be added in minor releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The call's deadline passed before it finished; see [`Error::phase`].
    Timeout,
    /// The job panicked; the panic message is in [`Error::panic_message`].
    Panicked,
    /// The pool had no room and the call asked to fail rather than wait.
    Saturated,
    /// The pool was shut down before the job could finish: the call was
    /// refused, its queued job cancelled, or its running job released
    /// (see [`Error::phase`]).
    ShutDown,
    /// The OS refused to start a thread and no existing thread could take
    /// the job.
    SpawnFailed,
    /// A detached job returned an error of its own; see `source()`.
    Job,
    /// A blocking entry point (`block_on` and the adapters built on it) was
    /// called from async code: an async task, a runtime's `block_on`, a
    /// `LocalSet`, or a future colorseam itself is driving. Blocking there
    /// would freeze the runtime; `.await` the future instead.
    AsyncContext,
    /// A [`ThreadBound`](crate::adapter::ThreadBound) call was made from
    /// inside a call of the same adapter (in the closure, its factory, a
    /// waker or a `Drop` it runs): it would have to wait for the call that
    /// made it.
    Reentrant,
    /// A [process pool](crate::process)'s worker process died while it ran
    /// the call: a signal (abort, segfault, an OOM kill, a CPU-time limit)
    /// or an exit of its own. [`Error::signal`] or [`Error::exit_code`] says
    /// which. Only this call fails; the pool starts a replacement.
    Crashed,
    /// A [process pool](crate::process) call named a function that was not
    /// registered with [`process::Functions`](crate::process::Functions).
    NotRegistered,
}

impl ErrorKind {
    /// What happened, after the operation's name. `phase` matters only to
    /// shutdown: a call refused at the door, a queued job cancelled and a
    /// running job released are three different things to the reader.
    fn describe(self, phase: Option<Phase>) -> &'static str {
        match self {
            ErrorKind::Timeout => "timed out",
            ErrorKind::Panicked => "panicked",
            ErrorKind::Saturated => "was refused: the pool is saturated",
            ErrorKind::ShutDown => match phase {
                None | Some(Phase::WaitingForRoom) => "was refused: the pool is shut down",
                Some(Phase::Queued) => "was cancelled by shutdown",
                Some(Phase::Running) => "was released by shutdown",
            },
            ErrorKind::SpawnFailed => "failed: the OS refused to start a pool thread",
            ErrorKind::Job => "failed",
            ErrorKind::AsyncContext => {
                "was refused: called from async code (a task, a runtime's block_on, or a future \
                 colorseam is driving), where blocking would freeze the runtime (`.await` the \
                 future instead)"
            }
            ErrorKind::Reentrant => {
                "was refused: made from inside a call of the same thread-bound adapter, which \
                 would wait for itself"
            }
            ErrorKind::Crashed => "crashed: its worker process died",
            ErrorKind::NotRegistered => "was refused: no function of that name is registered",
        }
    }
}

/// Where a job was when its call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Waiting for room in a full queue: the job was never accepted.
    WaitingForRoom,
    /// Accepted and queued, not started: it was removed and will never run.
    Queued,
    /// Running on a pool thread: the thread was abandoned and the job's
    /// context reports cancellation.
    Running,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::WaitingForRoom => "waiting for room in the queue",
            Phase::Queued => "queued",
            Phase::Running => "running",
        })
    }
}

/// The error of every fallible call in colorseam.
///
/// It is opaque on purpose: ask it with the `is_*()` predicates, [`kind`],
/// [`phase`], [`elapsed`], [`pool`] and [`location`]. Its `Display` is one
/// lower-case line a person can act on, for example
/// `offload timed out after 50.2ms while running in pool "vendor-sdk" (called at src/main.rs:12:5)`.
///
/// [`kind`]: Error::kind
/// [`phase`]: Error::phase
/// [`elapsed`]: Error::elapsed
/// [`pool`]: Error::pool
/// [`location`]: Error::location
pub struct Error {
    inner: Box<Inner>,
}

// An error is a value nobody mutates after it is made, so a panic cannot
// leave one half-updated; its boxed source and panic payload are what keep
// the compiler from seeing that (as with `anyhow::Error`, which says the
// same). So it can cross `catch_unwind`, as a caller's error type must.
impl std::panic::UnwindSafe for Error {}
impl std::panic::RefUnwindSafe for Error {}

struct Inner {
    kind: ErrorKind,
    operation: &'static str,
    pool: std::sync::Arc<str>,
    location: &'static Location<'static>,
    elapsed: Duration,
    phase: Option<Phase>,
    stuck_threads: usize,
    stuck_calls: Vec<crate::metrics::StuckCall>,
    interrupt_sent: bool,
    panic_message: Option<String>,
    /// The panic's own payload, for [`Error::try_into_panic`]. Behind a
    /// mutex only so that `Error` stays `Sync` (a payload is only `Send`).
    panic_payload: Mutex<Option<Box<dyn Any + Send>>>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// Set by process pools only: which function, which worker, how it ended.
    process: Option<Box<ProcessInfo>>,
}

/// What a process pool's error knows about the worker process.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProcessInfo {
    pub(crate) function: std::sync::Arc<str>,
    pub(crate) pid: Option<u32>,
    pub(crate) exit_code: Option<i32>,
    pub(crate) signal: Option<i32>,
    /// The worker was killed by the pool (deadline, dropped call, shutdown).
    pub(crate) killed: bool,
    /// The last line the worker wrote to stderr before it died, if any.
    pub(crate) last_words: Option<String>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A payload's destructor is user code: an error dropped during
        // unwinding must not panic again and abort the process.
        let payload = self
            .panic_payload
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(payload) = payload {
            if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
                std::mem::forget(again);
            }
        }
    }
}

impl Error {
    pub(crate) fn new(
        kind: ErrorKind,
        pool: std::sync::Arc<str>,
        location: &'static Location<'static>,
        elapsed: Duration,
    ) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                operation: "offload",
                pool,
                location,
                elapsed,
                phase: None,
                stuck_threads: 0,
                stuck_calls: Vec::new(),
                interrupt_sent: false,
                panic_message: None,
                panic_payload: Mutex::new(None),
                source: None,
                process: None,
            }),
        }
    }

    /// Names the entry point that failed (`"offload"` unless set).
    pub(crate) fn with_operation(mut self, operation: &'static str) -> Self {
        self.inner.operation = operation;
        self
    }

    pub(crate) fn with_phase(mut self, phase: Phase) -> Self {
        self.inner.phase = Some(phase);
        self
    }

    pub(crate) fn with_stuck_threads(mut self, stuck: usize) -> Self {
        self.inner.stuck_threads = stuck;
        self
    }

    pub(crate) fn with_interrupt_sent(mut self, sent: bool) -> Self {
        self.inner.interrupt_sent = sent;
        self
    }

    /// How many threads are stuck, and the first few of their calls.
    pub(crate) fn with_stuck(
        mut self,
        (stuck, calls): (usize, Vec<crate::metrics::StuckCall>),
    ) -> Self {
        self.inner.stuck_threads = stuck;
        self.inner.stuck_calls = calls;
        self
    }

    /// `None` for a payload that is not a string.
    pub(crate) fn with_panic_message(mut self, message: Option<String>) -> Self {
        self.inner.panic_message = message;
        self
    }

    /// The panic's message and its payload, kept for
    /// [`try_into_panic`](Error::try_into_panic).
    pub(crate) fn with_panic(mut self, payload: Box<dyn Any + Send>) -> Self {
        self.inner.panic_message = panic_message(&*payload);
        *self
            .inner
            .panic_payload
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(payload);
        self
    }

    pub(crate) fn with_source(mut self, source: Box<dyn std::error::Error + Send + Sync>) -> Self {
        self.inner.source = Some(source);
        self
    }

    #[cfg_attr(not(all(feature = "process", unix)), allow(dead_code))]
    pub(crate) fn with_process(mut self, info: ProcessInfo) -> Self {
        self.inner.process = Some(Box::new(info));
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// True if the call's deadline passed (in any phase).
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == ErrorKind::Timeout
    }

    /// True if the job panicked.
    pub fn is_panic(&self) -> bool {
        self.inner.kind == ErrorKind::Panicked
    }

    /// True if the pool refused the call because it had no room.
    pub fn is_saturated(&self) -> bool {
        self.inner.kind == ErrorKind::Saturated
    }

    /// True if the pool was shut down before the job could finish.
    pub fn is_shutdown(&self) -> bool {
        self.inner.kind == ErrorKind::ShutDown
    }

    /// True if a blocking entry point was refused because it was called
    /// from inside an async task.
    pub fn is_async_context(&self) -> bool {
        self.inner.kind == ErrorKind::AsyncContext
    }

    /// True if a [`ThreadBound`](crate::adapter::ThreadBound) call was
    /// refused because it was made from inside a call of the same adapter.
    pub fn is_reentrant(&self) -> bool {
        self.inner.kind == ErrorKind::Reentrant
    }

    /// True if a [process pool](crate::process)'s worker died while it ran
    /// the call (a signal or an exit of its own); see [`signal`](Self::signal)
    /// and [`exit_code`](Self::exit_code).
    pub fn is_crash(&self) -> bool {
        self.inner.kind == ErrorKind::Crashed
    }

    /// True if the pool killed the worker process that ran the call: its
    /// deadline passed while it ran (then [`is_timeout`](Self::is_timeout)
    /// too), its future was dropped, or shutdown's deadline passed.
    pub fn is_killed(&self) -> bool {
        self.inner.process.as_ref().is_some_and(|p| p.killed)
    }

    /// The signal that ended the worker process, for a
    /// [process pool](crate::process) call whose worker died of one
    /// (`6` for an abort, `11` for a segfault, `9` for a kill).
    pub fn signal(&self) -> Option<i32> {
        self.inner.process.as_ref().and_then(|p| p.signal)
    }

    /// The worker process's exit code, for a [process pool](crate::process)
    /// call whose worker exited by itself (`std::process::exit`).
    pub fn exit_code(&self) -> Option<i32> {
        self.inner.process.as_ref().and_then(|p| p.exit_code)
    }

    /// The id of the worker process that ran (or was to run) the call.
    pub fn worker_pid(&self) -> Option<u32> {
        self.inner.process.as_ref().and_then(|p| p.pid)
    }

    /// The registered function a [process pool](crate::process) call named.
    pub fn function(&self) -> Option<&str> {
        self.inner.process.as_ref().map(|p| &*p.function)
    }

    /// The last line the worker process wrote to its stderr before it
    /// died (a panic message under `panic = "abort"`, Rust's
    /// `memory allocation of N bytes failed`), if it wrote one.
    pub fn last_words(&self) -> Option<&str> {
        self.inner
            .process
            .as_ref()
            .and_then(|p| p.last_words.as_deref())
    }

    /// The entry point that failed: `"offload"`, `"block_on"`, or an
    /// adapter's operation.
    pub fn operation(&self) -> &'static str {
        self.inner.operation
    }

    /// Where the job was when the call ended, if it got that far.
    pub fn phase(&self) -> Option<Phase> {
        self.inner.phase
    }

    /// Time from the call to the error.
    pub fn elapsed(&self) -> Duration {
        self.inner.elapsed
    }

    /// The name of the pool or adapter the call went to; empty for a bare
    /// `block_on`.
    pub fn pool(&self) -> &str {
        &self.inner.pool
    }

    /// The call site that made the call.
    pub fn location(&self) -> &'static Location<'static> {
        self.inner.location
    }

    /// How many of the pool's threads were stuck in abandoned calls when this
    /// error was made. Non-zero on saturation errors caused by hung work.
    pub fn stuck_threads(&self) -> usize {
        self.inner.stuck_threads
    }

    /// The first few of those stuck calls (at most
    /// three): where each was made, how long ago, and what its thread
    /// waits on, as [`BlockingPool::stuck_calls`](crate::BlockingPool::stuck_calls)
    /// lists them. Empty when none is stuck, and for adapters' errors.
    /// `Display` lists them too.
    pub fn stuck_calls(&self) -> &[crate::metrics::StuckCall] {
        &self.inner.stuck_calls
    }

    /// True if the call's job was abandoned while it ran and the
    /// interrupters it registered
    /// ([`JobContext::on_cancel`](crate::job::JobContext::on_cancel), an
    /// adapter's `interrupt_with`) were sent to stop it: the job should
    /// return soon and give its thread back, rather than stay stuck.
    pub fn interrupt_sent(&self) -> bool {
        self.inner.interrupt_sent
    }

    /// The panic's message, when the job panicked with a string payload
    /// (what `panic!` makes); `None` for any other payload (`panic_any`,
    /// `resume_unwind` with a non-string value), which has no text.
    pub fn panic_message(&self) -> Option<&str> {
        self.inner.panic_message.as_deref()
    }

    /// The panic's own payload, to resume it with
    /// [`std::panic::resume_unwind`] as if the code had panicked here (what
    /// tokio's `JoinError::into_panic` gives), or the error back if it holds
    /// none.
    ///
    /// An error holds the payload when a job or a `block_on_timeout` future
    /// panicked and this is the error its caller got. Panics in detached
    /// jobs reach the error sink with their message only (the payload is
    /// dropped on the pool thread).
    ///
    /// # Errors
    ///
    /// `Err(self)` when the error is not a panic, or its payload is not
    /// kept.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// #[derive(Debug, PartialEq)]
    /// struct Code(u32);
    ///
    /// let err = colorseam::offload(|| std::panic::panic_any(Code(7))).await.unwrap_err();
    /// assert!(err.is_panic());
    /// assert_eq!(err.panic_message(), None); // not a string
    /// let payload = err.try_into_panic().unwrap();
    /// assert_eq!(payload.downcast_ref::<Code>(), Some(&Code(7)));
    /// # }
    /// ```
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, Error> {
        let payload = self
            .inner
            .panic_payload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        payload.ok_or(self)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        let what = inner.kind.describe(inner.phase);
        write!(f, "{}", inner.operation)?;
        if let Some(process) = &inner.process {
            write!(f, " {:?}", &*process.function)?;
        }
        write!(f, " {what}")?;
        if let Some(process) = &inner.process {
            process.describe_exit(f)?;
        }
        if let Some(message) = &inner.panic_message {
            write!(f, " with `{}`", message.escape_debug())?;
        }
        if let Some(source) = &inner.source {
            write!(f, ": {source}")?;
        }
        // A refusal is immediate: its elapsed time is noise, and its phase
        // (it never got in) is already said by "refused".
        let refusal = matches!(
            inner.kind,
            ErrorKind::AsyncContext
                | ErrorKind::Saturated
                | ErrorKind::Reentrant
                | ErrorKind::NotRegistered
        );
        if !refusal {
            write!(f, " after {:.1?}", inner.elapsed)?;
            if let Some(phase) = inner.phase {
                write!(f, " while {phase}")?;
            }
        }
        if !inner.pool.is_empty() {
            let what = match inner.operation {
                "offload" => "pool",
                "process call" => "process pool",
                _ => "adapter",
            };
            write!(f, " in {what} {:?}", &*inner.pool)?;
        }
        if inner.interrupt_sent {
            write!(f, " (an interrupt was sent)")?;
        }
        match inner.stuck_threads {
            0 => {}
            1 => write!(f, " (1 thread is stuck in an abandoned call")?,
            n => write!(f, " ({n} threads are stuck in abandoned calls")?,
        }
        if inner.stuck_threads > 0 {
            for (i, call) in inner.stuck_calls.iter().enumerate() {
                write!(f, "{} {call}", if i == 0 { ":" } else { ";" })?;
            }
            write!(f, ")")?;
        }
        write!(f, " (called at {})", inner.location)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("Error")
            .field("kind", &inner.kind)
            .field("operation", &inner.operation)
            .field("pool", &inner.pool)
            .field("location", &format_args!("{}", inner.location))
            .field("elapsed", &inner.elapsed)
            .field("phase", &inner.phase)
            .field("stuck_threads", &inner.stuck_threads)
            .field("stuck_calls", &inner.stuck_calls)
            .field("interrupt_sent", &inner.interrupt_sent)
            .field("panic_message", &inner.panic_message)
            .field("source", &inner.source)
            .field("process", &inner.process)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// How many stuck calls an error lists: enough to name the culprit, few
/// enough that a refusal under overload reads `/proc` only a few times.
pub(crate) const STUCK_CALLS_SHOWN: usize = 3;

impl ProcessInfo {
    /// How the worker ended, after the kind's words: `with signal 6
    /// (SIGABRT)`, `with exit code 3`, `; the worker was killed`.
    fn describe_exit(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.killed {
            return f.write_str("; its worker process was killed");
        }
        if let Some(signal) = self.signal {
            match signal_name(signal) {
                Some(name) => write!(f, " with signal {signal} ({name})")?,
                None => write!(f, " with signal {signal}")?,
            }
        } else if let Some(code) = self.exit_code {
            write!(f, " with exit code {code}")?;
        }
        if let Some(words) = &self.last_words {
            write!(f, ", its last words `{}`", words.escape_debug())?;
        }
        Ok(())
    }
}

/// The usual name of a Linux signal number, for messages.
fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        _ => return None,
    })
}

/// A [`BlockingPool`](crate::BlockingPool) configuration that cannot work.
///
/// Returned by [`Builder::build`](crate::pool::Builder::build); nothing in
/// the builder panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_threads` was zero: no job could ever run.
    #[error("max_threads must be at least 1 (got 0)")]
    ZeroThreads,
    /// `max_threads` above the supported ceiling.
    #[error("max_threads must be at most {max} (got {got})")]
    TooManyThreads {
        /// The value given.
        got: usize,
        /// The ceiling.
        max: usize,
    },
    /// `queue_capacity` was zero; use `reject_when_full` to refuse instead of wait.
    #[error("queue_capacity must be at least 1 (got 0)")]
    ZeroQueue,
    /// `queue_capacity` above the supported ceiling.
    #[error("queue_capacity must be at most {max} (got {got})")]
    QueueTooLarge {
        /// The value given.
        got: usize,
        /// The ceiling.
        max: usize,
    },
    /// `max_abandoned` above the supported ceiling, which would let hung
    /// calls pile up threads without a real bound.
    #[error("max_abandoned must be at most {max} (got {got})")]
    TooManyAbandoned {
        /// The value given.
        got: usize,
        /// The ceiling.
        max: usize,
    },
    /// `min_threads` above `max_threads`.
    #[error("min_threads ({min}) must not exceed max_threads ({max})")]
    MinAboveMax {
        /// The floor given.
        min: usize,
        /// The ceiling given.
        max: usize,
    },
    /// The pool name is empty or contains a NUL byte (it names OS threads).
    #[error("pool name must be non-empty and contain no NUL byte (got {0:?})")]
    BadName(String),
    /// The default pool was already created, so its configuration is fixed.
    #[error("the default pool is already running; configure it before its first use")]
    DefaultAlreadySet,
    /// A [process pool](crate::process)'s `max_workers` was zero.
    #[error("max_workers must be at least 1 (got 0)")]
    ZeroWorkers,
    /// A [process pool](crate::process) was built in a process where
    /// [`Functions::init`](crate::process::Functions::init) was not called:
    /// its workers would run `main` from the top.
    #[error(
        "colorseam::process::Functions::init() was not called in this process; call it first \
         thing in main (a worker runs this binary again)"
    )]
    NotInitialized,
    /// The program a [process pool](crate::process) runs as its worker is
    /// not known (`std::env::current_exe` failed).
    #[error("the worker program is not known: {0}")]
    NoProgram(String),
}

/// The message of a panic payload: the `&str` or `String` that `panic!`
/// makes, or `None` for any other payload (`panic_any`, `resume_unwind`),
/// which has no text to show.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> Option<String> {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        Some((*s).to_owned())
    } else {
        payload.downcast_ref::<String>().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [ErrorKind; 10] = [
        ErrorKind::Crashed,
        ErrorKind::NotRegistered,
        ErrorKind::Reentrant,
        ErrorKind::Timeout,
        ErrorKind::Panicked,
        ErrorKind::Saturated,
        ErrorKind::ShutDown,
        ErrorKind::SpawnFailed,
        ErrorKind::Job,
        ErrorKind::AsyncContext,
    ];
    const PHASES: [Option<Phase>; 4] = [
        None,
        Some(Phase::WaitingForRoom),
        Some(Phase::Queued),
        Some(Phase::Running),
    ];

    fn text(kind: ErrorKind, phase: Option<Phase>, operation: &'static str, pool: &str) -> String {
        let mut error = Error::new(
            kind,
            pool.into(),
            Location::caller(),
            Duration::from_millis(12),
        )
        .with_operation(operation);
        if let Some(phase) = phase {
            error = error.with_phase(phase);
        }
        error.to_string()
    }

    #[test]
    fn every_kind_in_every_phase_reads_as_one_lower_case_line() {
        for kind in KINDS {
            for phase in PHASES {
                for (operation, pool) in [("offload", "db"), ("block_on", ""), ("call", "sdk")] {
                    let text = text(kind, phase, operation, pool);
                    assert!(!text.contains('\n'), "{text}");
                    assert!(text.starts_with(&format!("{operation} ")), "{text}");
                    assert!(
                        text.chars().next().is_some_and(char::is_lowercase),
                        "{text}"
                    );
                    assert!(text.ends_with(')'), "ends with the call site: {text}");
                    let refusal = matches!(
                        kind,
                        ErrorKind::AsyncContext
                            | ErrorKind::Saturated
                            | ErrorKind::Reentrant
                            | ErrorKind::NotRegistered
                    );
                    match phase {
                        Some(phase) if !refusal => {
                            assert!(text.contains(&format!(" while {phase}")), "{text}");
                        }
                        _ => assert!(!text.contains(" while "), "{text}"),
                    }
                }
            }
        }
    }

    #[test]
    fn shutdown_says_refused_cancelled_or_released_by_phase() {
        let refused = "offload was refused: the pool is shut down";
        assert!(text(ErrorKind::ShutDown, None, "offload", "p").starts_with(refused));
        assert!(
            text(
                ErrorKind::ShutDown,
                Some(Phase::WaitingForRoom),
                "offload",
                "p"
            )
            .starts_with(refused)
        );
        let queued = text(ErrorKind::ShutDown, Some(Phase::Queued), "offload", "p");
        assert!(
            queued.starts_with("offload was cancelled by shutdown after 12.0ms while queued"),
            "{queued}"
        );
        let running = text(ErrorKind::ShutDown, Some(Phase::Running), "offload", "p");
        assert!(
            running.starts_with("offload was released by shutdown after 12.0ms while running"),
            "{running}"
        );
    }

    #[test]
    fn a_panic_without_a_message_shows_none() {
        let error = Error::new(
            ErrorKind::Panicked,
            "p".into(),
            Location::caller(),
            Duration::ZERO,
        )
        .with_phase(Phase::Running)
        .with_panic_message(None);
        assert_eq!(error.panic_message(), None);
        let text = error.to_string();
        assert!(text.starts_with("offload panicked after "), "{text}");
    }
}
