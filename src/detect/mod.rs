//! Make a blocked runtime speak up while it is blocked.
//!
//! The worst part of a frozen async service is the silence: the runtime
//! cannot log that it is stuck, because logging is one of the things that is
//! stuck. This module watches from outside the runtime.
//!
//! - [`instrument`] wraps a future so that every poll is timed: polls over a
//!   threshold are reported with the task's name and call site, and
//!   [`TaskStats`] counts them. While an instrumented poll runs, the thread
//!   it runs on is marked with the task.
//! - [`Watchdog`] runs on its own OS thread (not a task: it must speak while
//!   the runtime cannot). It watches the runtime's workers through those
//!   marks and through a heartbeat task, and reports a stall *while it is
//!   happening*: which worker, for how long so far, and the instrumented
//!   task being polled there with its call site; then the stall's end and
//!   total length.
//! - [`LagMonitor`] measures scheduler lag: how late a periodic tick runs,
//!   as p50/p99/max, for dashboards and tests.
//!
//! Reports go to a callback and, with the `tracing` feature, to `tracing`
//! events.
//!
//! # Caveats
//!
//! tokio exposes no stable per-poll hook, so colorseam sees *inside* a
//! worker only through instrumented futures. A stall in an uninstrumented
//! task is still reported when it stops the runtime's heartbeat (always on
//! a current-thread runtime; on a multi-thread runtime, when the heartbeat
//! cannot be scheduled), but without a task name, and on a multi-thread
//! runtime whose other workers keep scheduling it may go unseen. Instrument
//! the tasks you care about. It costs two clock reads per poll and a few
//! plain stores (no locked instructions): about 55 ns per poll on a 2-core
//! VM whose clock read takes ~25 ns, so almost all of it is the clock.

mod instrument;
mod lag;
mod watchdog;

pub use instrument::{Instrumented, TaskStats, instrument, set_slow_poll_hook};
pub use lag::LagMonitor;
pub use watchdog::{StallReport, StallState, Watchdog, WatchdogBuilder};
