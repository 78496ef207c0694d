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
//!   total length. One freeze is one stall with one id and one end, however
//!   it was first seen. On Linux each report of an ongoing stall also says
//!   what the stuck thread is waiting on ([`ThreadWait`]): the system call
//!   by name (`read`, `recvfrom`, `futex`, `clock_nanosleep`, `connect`…),
//!   the socket's local and peer address or the file's path, or that it is
//!   running on a CPU, read from `/proc` for that one thread at that
//!   moment.
//! - [`deny_blocking`] makes a test fail when a worker of its runtime
//!   blocks longer than a threshold while it runs, naming the system call
//!   and the socket or file: run a dependency's async API under it to find
//!   hidden blocking before production does.
//! - [`LagMonitor`] measures scheduler lag: how long a woken task waits to
//!   be polled, as p50/p99/max, for dashboards and tests.
//!
//! Neither uses a tokio timer: both wake their task from a thread of their
//! own. So they work on a runtime built without timers and under a paused
//! clock (`start_paused`), and measure real time there. (tokio offers no
//! way to ask whether a runtime has timers short of a panic.)
//!
//! Reports go to a callback and, with the `tracing` feature, to `tracing`
//! events.
//!
//! # Caveats
//!
//! tokio exposes no stable per-poll hook, so colorseam sees *inside* a
//! worker only through instrumented futures. A stall in an uninstrumented
//! task is still reported, without a task name: when it stops the runtime
//! from running the heartbeat (always on a current-thread runtime; on a
//! multi-thread runtime, when no worker is free to run it), and on a
//! multi-thread runtime whose other workers keep serving, from tokio's
//! stable per-worker counts: a worker that is not parked and whose
//! park/unpark count and busy time have not moved for the threshold. tokio
//! publishes those counts when a worker parks and every 61 polls, so a
//! worker running fewer than 61 polls that add up to the threshold
//! without parking (polls averaging over 1/61 of it) is reported too. The
//! thread is the one last seen running that worker (by the heartbeat, an
//! instrumented poll, or small probe tasks spawned while the thread is not
//! known); failing that, on Linux, the only thread bearing the workers'
//! name not known to run another worker. When several could be it (a
//! runtime's blocking threads share its workers' name; so do the workers
//! of every runtime left with tokio's default name), the report names the
//! worker by index only and says nothing of what it waits on: give each
//! runtime's threads a name of their own (`thread_name`) for the best
//! reports. Only polls on a runtime's workers are watched: a slow poll on a
//! blocking thread, a colorseam pool thread, or the thread in a
//! multi-thread runtime's `block_on` (not a worker) stalls no worker, and
//! is counted and reported as a slow poll but not as a stall. A poll that
//! blocks inside `tokio::task::block_in_place` is still reported: tokio
//! hands the worker's queue to another thread then, but does not let us
//! see that it did. Instrument
//! the tasks you care about. It costs two clock reads per poll, two
//! thread-local reads and a few plain stores (no locked instructions); see
//! `benches/detect.rs`.
//!
//! What a thread waits on comes from `/proc/self/task/<tid>/syscall`,
//! `/proc/self/fd` and `/proc/self/net`: Linux only, and only where those
//! are readable. Elsewhere (other systems, a sandbox that hides `/proc`)
//! [`StallReport::wait`] is `None` and the reports read as before: nothing
//! is guessed. System calls are named on x86_64 and aarch64; on other
//! architectures only their numbers are given. `/proc` is read only for a
//! thread already past the threshold, once per report.
//!
//! Idle is told from blocked where tokio lets us: a runtime whose workers
//! are all parked (tokio's park/unpark counts) is idle, and one that was
//! watched from outside and has not run yet is not stalled. What tokio does
//! not tell is whether anyone is driving a current-thread runtime: after a
//! `block_on` call returns, the runtime sits undriven, and to the heartbeat
//! that looks exactly like a thread blocked inside it. So on a
//! current-thread runtime driven only now and then, the gaps between
//! `block_on` calls are reported as uninstrumented stalls. Install the
//! watchdog inside the `block_on` it should watch and drop it before that
//! returns (or keep the runtime driven, as `#[tokio::main]` does).

mod deny;
mod instrument;
mod lag;
mod watchdog;

#[doc(hidden)]
pub use crate::procfs::override_proc_root;
pub use crate::procfs::{FdTarget, Syscall, ThreadWait};
pub use deny::{DenyBlocking, HiddenBlocking, deny_blocking};
pub use instrument::{Instrumented, TaskStats, instrument, set_slow_poll_hook};
pub use lag::LagMonitor;
pub use watchdog::{StallReport, StallState, Watchdog, WatchdogBuilder};
