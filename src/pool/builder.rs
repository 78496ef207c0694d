//! Configuration of a [`BlockingPool`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::BlockingPool;
use crate::error::{ConfigError, Error};

/// The most threads a pool may run at once.
pub(crate) const MAX_THREADS_LIMIT: usize = 10_000;
/// The most abandoned threads a pool may keep on top of `max_threads`.
pub(crate) const MAX_ABANDONED_LIMIT: usize = 10_000;
/// The largest queue; far beyond any sane use, and well inside what tokio's
/// semaphore can count.
pub(crate) const MAX_QUEUE_LIMIT: usize = 1 << 32;
/// Keep-alives are clamped to this so timed condition-variable waits never
/// overflow the platform's clock arithmetic.
const MAX_KEEP_ALIVE: Duration = Duration::from_secs(365 * 24 * 3600);

pub(crate) type ErrorSink = Arc<dyn Fn(&Error) + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) name: Arc<str>,
    pub(crate) max_threads: usize,
    pub(crate) min_threads: usize,
    pub(crate) queue_capacity: usize,
    pub(crate) max_abandoned: usize,
    pub(crate) keep_alive: Duration,
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) reject_when_full: bool,
    pub(crate) error_sink: Option<ErrorSink>,
    pub(crate) stack_size: Option<usize>,
}

/// Builds a [`BlockingPool`]; every setting is checked by [`build`](Self::build).
///
/// | setting | default |
/// | --- | --- |
/// | [`name`](Self::name) | `"colorseam"` |
/// | [`max_threads`](Self::max_threads) | 64 |
/// | [`min_threads`](Self::min_threads) | 0 |
/// | [`queue_capacity`](Self::queue_capacity) | 1024 |
/// | [`max_abandoned`](Self::max_abandoned) | same as `max_threads` |
/// | [`keep_alive`](Self::keep_alive) | 10 s |
/// | [`default_timeout`](Self::default_timeout) | none |
/// | [`reject_when_full`](Self::reject_when_full) | false: callers wait for room |
/// | [`error_sink`](Self::error_sink) | one line on stderr (and a `tracing` event with that feature) |
/// | [`stack_size`](Self::stack_size) | std's default |
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder {
    name: String,
    max_threads: usize,
    min_threads: usize,
    queue_capacity: usize,
    max_abandoned: Option<usize>,
    keep_alive: Duration,
    default_timeout: Option<Duration>,
    reject_when_full: bool,
    error_sink: Option<ErrorSink>,
    stack_size: Option<usize>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            name: "colorseam".to_owned(),
            max_threads: 64,
            min_threads: 0,
            queue_capacity: 1024,
            max_abandoned: None,
            keep_alive: Duration::from_secs(10),
            default_timeout: None,
            reject_when_full: false,
            error_sink: None,
            stack_size: None,
        }
    }
}

impl Builder {
    pub(crate) fn new() -> Self {
        Builder::default()
    }

    /// Names the pool: its threads are called `<name>-<n>`, and every error,
    /// metric and event carries the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The most threads that run jobs at once (1 to 10,000).
    ///
    /// Threads start when work arrives and no thread is idle, at once up to
    /// the number of cores. Past the core count a thread starts only when
    /// queued work waits behind workers that are blocked: asleep in the OS
    /// (a read, a lock, a sleep) or in one job for 20 ms or more. A monitor
    /// thread looks every 100 µs to 10 ms while work waits, so a pool of
    /// blocking jobs reaches `max_threads` within a few milliseconds, and a
    /// burst of trivial or CPU-bound jobs runs on as many threads as cores
    /// instead of contending on `max_threads` of them.
    ///
    /// At `max_threads`, a pool thread waiting in [`block_on`](crate::block_on)
    /// for its own nested offloads runs those *without a deadline* itself,
    /// so nested async → sync → async work completes even with one thread.
    /// Jobs with a deadline (and everything under `block_on_timeout`) are
    /// never run that way: on a one-thread pool whose thread waits, they
    /// time out in the queue.
    pub fn max_threads(mut self, n: usize) -> Self {
        self.max_threads = n;
        self
    }

    /// Threads kept alive when idle, however long the idleness (at most
    /// `max_threads`). Threads above the floor exit after [`keep_alive`](Self::keep_alive).
    pub fn min_threads(mut self, n: usize) -> Self {
        self.min_threads = n;
        self
    }

    /// The most jobs that wait for a thread (1 to 2^32). Past it, callers wait
    /// for room, or are refused with [`reject_when_full`](Self::reject_when_full).
    ///
    /// # Nested offloads
    ///
    /// An offload made inside `block_on` on a thread of the same pool (a
    /// *sandwich*) is admitted under this bound too, but it never needs a
    /// second slot: the outer job waits for it, so when the pool is full it
    /// borrows the outer job's slot and gives it back when it ends. So
    /// sandwiches complete even when outer jobs hold every slot, and the
    /// queue may hold up to one more job than this per job blocked in
    /// `block_on`. The thread bound is not affected.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }

    /// How many threads stuck in abandoned calls are replaced (0 to 10,000).
    ///
    /// When a caller gives up on a running job, its thread is abandoned and,
    /// while fewer than `max_abandoned` threads are abandoned, a replacement
    /// takes its place so capacity survives a hung dependency. The pool never
    /// holds more than `max_threads + max_abandoned` OS threads, counting a
    /// thread until the OS has torn it down: a replacement for a thread
    /// that is still exiting starts once it is gone. Beyond the
    /// cap, stuck threads keep their slots and new work waits or is refused
    /// with an error saying how many threads are stuck.
    pub fn max_abandoned(mut self, n: usize) -> Self {
        self.max_abandoned = Some(n);
        self
    }

    /// How long an idle thread above the floor waits for work before it
    /// exits. Clamped to one year.
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// The deadline [`offload`](BlockingPool::offload) gives every call,
    /// measured from the call and covering queue wait and run time. A
    /// timeout too large to add to the current instant means no deadline.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

    /// When true, [`offload`](BlockingPool::offload) fails at once with a
    /// saturation error when the queue is full, instead of waiting for room.
    pub fn reject_when_full(mut self, reject: bool) -> Self {
        self.reject_when_full = reject;
        self
    }

    /// The stack size of the pool's threads, in bytes (default: std's).
    ///
    /// If the OS refuses to start a thread of this size (or at all), the job
    /// that needed it fails with [`ErrorKind::SpawnFailed`](crate::ErrorKind::SpawnFailed)
    /// unless another pool thread can take it; nothing panics.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Where failures of [detached](BlockingPool::detach) jobs go, since no
    /// caller is waiting for them. A panicking sink is caught and ignored.
    pub fn error_sink(mut self, sink: impl Fn(&Error) + Send + Sync + 'static) -> Self {
        self.error_sink = Some(Arc::new(sink));
        self
    }

    /// Checks the configuration and starts the pool. No thread starts until
    /// the first job (or `min_threads` of them do, lazily, as work arrives).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first setting that cannot work.
    pub fn build(self) -> Result<BlockingPool, ConfigError> {
        Ok(BlockingPool::from_config(self.into_config()?))
    }

    /// Builds this pool and makes it the default pool behind
    /// [`colorseam::offload`](crate::offload).
    ///
    /// # Errors
    ///
    /// [`ConfigError::DefaultAlreadySet`] if the default pool was already
    /// created (by an earlier call or by a first use), or the configuration's
    /// own error.
    pub fn install_default(self) -> Result<BlockingPool, ConfigError> {
        let pool = self.build()?;
        super::default::install_default(pool.clone())?;
        Ok(pool)
    }

    pub(crate) fn into_config(self) -> Result<Config, ConfigError> {
        if self.name.is_empty() || self.name.contains('\0') {
            return Err(ConfigError::BadName(self.name));
        }
        if self.max_threads == 0 {
            return Err(ConfigError::ZeroThreads);
        }
        if self.max_threads > MAX_THREADS_LIMIT {
            return Err(ConfigError::TooManyThreads {
                got: self.max_threads,
                max: MAX_THREADS_LIMIT,
            });
        }
        if self.min_threads > self.max_threads {
            return Err(ConfigError::MinAboveMax {
                min: self.min_threads,
                max: self.max_threads,
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
        let max_abandoned = self.max_abandoned.unwrap_or(self.max_threads);
        if max_abandoned > MAX_ABANDONED_LIMIT {
            return Err(ConfigError::TooManyAbandoned {
                got: max_abandoned,
                max: MAX_ABANDONED_LIMIT,
            });
        }
        Ok(Config {
            name: self.name.into(),
            max_threads: self.max_threads,
            min_threads: self.min_threads,
            queue_capacity: self.queue_capacity,
            max_abandoned,
            keep_alive: self.keep_alive.min(MAX_KEEP_ALIVE),
            default_timeout: self.default_timeout,
            reject_when_full: self.reject_when_full,
            error_sink: self.error_sink,
            stack_size: self.stack_size,
        })
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("max_threads", &self.max_threads)
            .field("min_threads", &self.min_threads)
            .field("queue_capacity", &self.queue_capacity)
            .field("max_abandoned", &self.max_abandoned)
            .field("keep_alive", &self.keep_alive)
            .field("default_timeout", &self.default_timeout)
            .field("reject_when_full", &self.reject_when_full)
            .field("error_sink", &self.error_sink.as_ref().map(|_| ".."))
            .field("stack_size", &self.stack_size)
            .finish()
    }
}
