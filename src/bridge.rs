//! The bridge runtimes: where futures get IO and timers when the caller
//! has no runtime to lend. Used by `block_on`, the pool (jobs without a
//! caller's runtime), deadlines polled outside a runtime, and `ForSync`.

use std::sync::OnceLock;

use tokio::runtime::Handle;

/// The bridge's two runtimes, each started on first use and never dropped
/// (they cannot be dropped on an async worker, and cannot hold up process
/// exit: their threads are simply not joined).
///
/// They are two so that one misbehaving caller cannot stall every other
/// caller's timers and IO. A tokio runtime drives its timers and IO from
/// whichever worker is parked, so workers blocked by a future stop the
/// reactor for everyone registered with it. Futures colorseam *spawns*
/// (`block_on_timeout`'s, `ForSync`'s) may block their worker; futures a
/// plain-thread `block_on` *polls on the caller's own thread* cannot block
/// anyone else's thread, only their timers and IO are shared. So the
/// latter get a runtime of their own that colorseam spawns nothing on.
static BRIDGE_SPAWN: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();

static BRIDGE_IO: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();

fn start_bridge(
    cell: &'static OnceLock<Result<tokio::runtime::Runtime, String>>,
    name: &str,
) -> Result<&'static Handle, String> {
    cell.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map(tokio::runtime::Runtime::handle)
    .map_err(Clone::clone)
}

/// The runtime colorseam spawns futures on when the caller has none to
/// lend: `block_on_timeout`'s (which must run off the caller's thread to
/// honour its deadline) and `ForSync`'s, also from pool threads without a
/// multi-thread caller. Two workers named `colorseam-bridge`; a spawned
/// future that blocks one holds it until it yields.
pub(crate) fn bridge_handle() -> Result<Handle, String> {
    start_bridge(&BRIDGE_SPAWN, "colorseam-bridge").cloned()
}

/// The runtime a plain thread's `block_on` enters while it polls its
/// future on its own thread (so do a current-thread runtime's blocking
/// threads, and pool threads without a multi-thread caller): it lends the future a reactor (IO, timers)
/// driven by two workers named `colorseam-bridge-io` that colorseam never
/// spawns on, so futures blocking the spawn runtime's workers cannot stall
/// these timers. Tasks the future itself spawns run here. Pool jobs with no
/// caller's runtime to enter enter this one too, and deadlines polled
/// outside any runtime are timed here.
pub(crate) fn bridge() -> Result<&'static Handle, String> {
    start_bridge(&BRIDGE_IO, "colorseam-bridge-io")
}

/// [`bridge`], owned: for timers that must fire whatever spawned futures
/// do (deadlines polled outside any runtime).
pub(crate) fn bridge_io_handle() -> Result<Handle, String> {
    bridge().cloned()
}

pub(crate) fn is_bridge(handle: &Handle) -> bool {
    [&BRIDGE_SPAWN, &BRIDGE_IO].into_iter().any(|cell| {
        cell.get()
            .and_then(|rt| rt.as_ref().ok())
            .is_some_and(|rt| rt.handle().id() == handle.id())
    })
}
