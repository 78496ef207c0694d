//! Make blocking calls from async code loud: `assert_blocking_allowed()`.
//!
//! Put [`assert_blocking_allowed`] at the top of every function that blocks
//! (a sync SDK call, a file read, a `std::thread::sleep`). When such a
//! function is called from async code running on a runtime worker (where it
//! would freeze every task on that worker), the guard reports a violation
//! naming the call site; elsewhere it is silent and costs a thread-local
//! read or two.
//!
//! | caller | guard |
//! | --- | --- |
//! | plain thread, `spawn_blocking` thread, `Handle::enter` thread | silent |
//! | colorseam pool thread | silent |
//! | a future colorseam's `block_on` drives on the caller's own thread | silent: the thread is the sync caller's own |
//! | async task on a worker, a current-thread runtime's `block_on`, a `LocalSet` on either, bridge runtime worker | violation |
//! | a multi-thread runtime's `block_on` future (`#[tokio::main]`), a `LocalSet` it drives | silent: see below |
//!
//! The guard learns where it runs from [`context()`](crate::context), which
//! raises no panic and installs no hook, so it works the same under
//! `panic = "abort"` and next to any panic hook. Where tokio's public state
//! leaves two contexts alike, the guard takes the side that never reports a
//! thread where blocking is fine (a false violation would panic in debug
//! builds): a multi-thread runtime's `block_on` future looks like a
//! `Handle::enter` thread, and a `LocalSet` task on that thread like a
//! `spawn_blocking` thread, so both are silent; blocking there holds up
//! only that thread's futures, never the runtime's workers. Code inside a
//! raw `tokio::task::block_in_place` closure is silent too: tokio has moved
//! the worker's other tasks away and left its scheduler there, which is
//! what makes blocking fine. [`crate::CallerContext`] lists every case.
//!
//! What a violation does is a process-wide [`Policy`]: by default a panic
//! in debug builds (so tests catch it) and a warning in release builds (a
//! `tracing` event with that feature, otherwise one line on stderr), so
//! production keeps serving while it tells you where to look.
//!
//! # Examples
//!
//! ```
//! fn read_config() -> String {
//!     colorseam::guard::assert_blocking_allowed();
//!     std::fs::read_to_string("/dev/null").unwrap()
//! }
//!
//! // Fine from sync code...
//! read_config();
//! // ...and from async code, through colorseam:
//! # let rt = tokio::runtime::Runtime::new().unwrap();
//! # rt.block_on(async {
//! colorseam::offload(read_config).await.unwrap();
//! # });
//! ```

use std::panic::Location;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::block_on::{CallerContext, context};

/// What the guard does about a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Policy {
    /// Panic with the call site and the fix (the default in debug builds).
    Panic,
    /// Report it (a `tracing` warning with that feature, else stderr) and
    /// go on (the default in release builds).
    Warn,
    /// Count it and say nothing.
    Ignore,
}

const UNSET: u8 = 0;
const PANIC: u8 = 1;
const WARN: u8 = 2;
const IGNORE: u8 = 3;

static POLICY: AtomicU8 = AtomicU8::new(UNSET);
static VIOLATIONS: AtomicU64 = AtomicU64::new(0);

/// Sets what violations do, for the whole process.
pub fn set_policy(policy: Policy) {
    let code = match policy {
        Policy::Panic => PANIC,
        Policy::Warn => WARN,
        Policy::Ignore => IGNORE,
    };
    POLICY.store(code, Ordering::Relaxed);
}

/// The policy in force.
pub fn policy() -> Policy {
    match POLICY.load(Ordering::Relaxed) {
        PANIC => Policy::Panic,
        WARN => Policy::Warn,
        IGNORE => Policy::Ignore,
        _ if cfg!(debug_assertions) => Policy::Panic,
        _ => Policy::Warn,
    }
}

/// How many violations the guard has seen in this process, whatever the
/// policy (a counter).
pub fn violations() -> u64 {
    VIOLATIONS.load(Ordering::Relaxed)
}

/// Reports a violation if the caller is async code on a runtime worker,
/// where blocking would freeze the runtime. Silent anywhere blocking is
/// fine; see the [module docs](self) for the cases tokio leaves alike and
/// which side the guard takes. It raises no panic to find out.
///
/// # Panics
///
/// Under [`Policy::Panic`] (the default in debug builds), when called from
/// async code. The message names the call site and the fix.
#[track_caller]
pub fn assert_blocking_allowed() {
    let here = context();
    // `InsideBlockOn` is fine: that future is polled on the sync caller's
    // own thread, which no other task shares.
    let violated = matches!(
        here,
        CallerContext::AsyncWorker { .. } | CallerContext::BridgeThread
    );
    if violated {
        violation(Location::caller(), &here);
    }
}

#[cold]
fn violation(location: &'static Location<'static>, here: &CallerContext) {
    VIOLATIONS.fetch_add(1, Ordering::Relaxed);
    let message = format!(
        "blocking call at {location} from async code ({here:?}): it freezes every task on this \
         worker; move it off the runtime with colorseam::offload or an adapter::ForAsync"
    );
    match policy() {
        Policy::Panic => panic!("{message}"),
        Policy::Warn => {
            #[cfg(feature = "tracing")]
            tracing::warn!(%location, "colorseam guard: {message}");
            #[cfg(not(feature = "tracing"))]
            eprintln!("colorseam guard: {message}");
        }
        Policy::Ignore => {}
    }
}
