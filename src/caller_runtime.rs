//! The runtime a job was submitted from, and whether it still runs.
//!
//! A job records its caller's tokio handle so the closure can run with that
//! runtime entered (as a `spawn_blocking` closure does) and so a `block_on`
//! inside it polls against that runtime. A handle outlives its runtime,
//! though: once the runtime has shut down, its timers and IO fail with
//! "context is being shutdown" and tasks spawned on it never run. tokio has
//! no public "is shut down" query, so colorseam asks the runtime itself:
//! the first time it sees a runtime it spawns one *sentinel* task there, a
//! future that is never woken and never completes, holding a flag. A
//! runtime drops every task when it shuts down (and drops a task spawned
//! after that at once), so the sentinel's `Drop` clearing the flag is the
//! runtime's own word that it is gone.
//!
//! Cost: one idle task per runtime for the runtime's life (it shows in
//! `RuntimeMetrics::num_alive_tasks`), a lookup in a small thread-local
//! cache per call, and one flag read where the handle is used.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use tokio::runtime::{Handle, Id};

use crate::sync::lock_std;

/// A caller's runtime: its handle, and the flag its sentinel clears.
#[derive(Clone)]
pub(crate) struct CallerRuntime {
    handle: Handle,
    alive: Arc<AtomicBool>,
}

impl CallerRuntime {
    /// The runtime current on this thread, if any.
    pub(crate) fn current() -> Option<Self> {
        let handle = Handle::try_current().ok()?;
        let alive = alive_flag(&handle);
        Some(CallerRuntime { handle, alive })
    }

    /// The handle, while its runtime has not shut down.
    pub(crate) fn handle(&self) -> Option<&Handle> {
        self.alive.load(Ordering::Acquire).then_some(&self.handle)
    }
}

/// Never completes and is never woken; its drop is the runtime's shutdown.
struct Sentinel(Arc<AtomicBool>);

impl Future for Sentinel {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Flags of the runtimes seen, by runtime id; one sentinel each.
static FLAGS: Mutex<Vec<(Id, Weak<AtomicBool>)>> = Mutex::new(Vec::new());

thread_local! {
    /// This thread's view of `FLAGS`: most threads see one runtime or two.
    static SEEN: RefCell<Vec<(Id, Arc<AtomicBool>)>> = const { RefCell::new(Vec::new()) };
}

/// The flag of `handle`'s runtime, spawning its sentinel the first time.
fn alive_flag(handle: &Handle) -> Arc<AtomicBool> {
    let id = handle.id();
    let cached = SEEN
        .try_with(|seen| {
            seen.borrow()
                .iter()
                .find(|(seen_id, _)| *seen_id == id)
                .map(|(_, flag)| flag.clone())
        })
        .ok()
        .flatten();
    if let Some(flag) = cached {
        return flag;
    }
    let (flag, first) = {
        let mut flags = lock_std(&FLAGS);
        flags.retain(|(_, flag)| flag.strong_count() > 0);
        match flags
            .iter()
            .find(|(flag_id, _)| *flag_id == id)
            .and_then(|(_, flag)| flag.upgrade())
        {
            Some(flag) => (flag, false),
            None => {
                let flag = Arc::new(AtomicBool::new(true));
                flags.push((id, Arc::downgrade(&flag)));
                (flag, true)
            }
        }
    };
    if first {
        // Outside the lock: spawning runs tokio's hooks. One runtime gets
        // one sentinel, since the entry above is made first. The task is
        // dropped at once if the runtime is shut down already, and the flag
        // then reads "gone" before this call returns.
        drop(handle.spawn(Sentinel(flag.clone())));
    }
    let _ = SEEN.try_with(|seen| {
        let mut seen = seen.borrow_mut();
        // Runtimes that are gone never come back (ids are not reused).
        seen.retain(|(_, flag)| flag.load(Ordering::Relaxed));
        seen.push((id, flag.clone()));
    });
    flag
}

#[cfg(all(test, not(colorseam_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_reads_alive_until_it_is_dropped() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let caller = rt.block_on(async { CallerRuntime::current() }).unwrap();
        let again = rt.block_on(async { CallerRuntime::current() }).unwrap();
        assert!(
            Arc::ptr_eq(&caller.alive, &again.alive),
            "one flag per runtime"
        );
        assert!(caller.handle().is_some());
        drop(rt);
        assert!(caller.handle().is_none());
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let caller = current
            .block_on(async { CallerRuntime::current() })
            .unwrap();
        assert!(caller.handle().is_some());
        drop(current);
        assert!(caller.handle().is_none());
    }

    #[test]
    fn no_runtime_no_caller() {
        assert!(CallerRuntime::current().is_none());
    }
}
