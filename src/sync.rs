//! The primitives the job state machine is built on, switchable to loom.
//!
//! Under `--cfg colorseam_loom` these resolve to loom's model-checked versions so the
//! transitions in `pool::state`, the caller's waker and an interrupter's
//! registration (`interrupt::registry`) can be explored exhaustively;
//! otherwise they are the std types (and futures' `AtomicWaker`). Only the
//! state machines go through here: the pool's
//! scheduler uses std directly because loom cannot model OS threads parked on
//! a real condition variable for seconds at a time.

#[cfg(colorseam_loom)]
pub(crate) use loom::future::AtomicWaker;
#[cfg(colorseam_loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, Ordering};
#[cfg(colorseam_loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

#[cfg(not(colorseam_loom))]
pub(crate) use futures_util::task::AtomicWaker;
#[cfg(not(colorseam_loom))]
pub(crate) use std::sync::atomic::{AtomicU8, Ordering};
#[cfg(not(colorseam_loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

/// Locks a mutex, ignoring poisoning.
///
/// No crate lock is ever held while user code runs, and every critical
/// section leaves its data consistent before anything that could panic, so a
/// poisoned lock carries no broken invariant and recovering it is sound.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`lock`] for the std mutexes of the scheduler, which loom does not model.
pub(crate) fn lock_std<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Registers `waker` in `slot` (loom's `AtomicWaker` takes it by value).
pub(crate) fn register(slot: &AtomicWaker, waker: &std::task::Waker) {
    #[cfg(colorseam_loom)]
    slot.register_by_ref(waker);
    #[cfg(not(colorseam_loom))]
    slot.register(waker);
}
