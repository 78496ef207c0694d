//! The executor `block_on` polls a future with on the caller's own thread:
//! one waker per thread, spin-before-park, and the deadline check.

use std::cell::Cell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::error::panic_message;
use crate::pool::help::Waiting;
use crate::spin::SpinBudget;

thread_local! {
    /// Set while colorseam polls a future on this thread.
    static DRIVING: Cell<bool> = const { Cell::new(false) };
    /// How many `drive` calls are active on this thread.
    static DRIVE_DEPTH: Cell<usize> = const { Cell::new(0) };
    /// How long this thread spins in `block_on` before parking.
    static SPIN_BUDGET: Cell<SpinBudget> = const { Cell::new(SpinBudget::new(SPIN_BEFORE_PARK)) };
    /// The waker of this thread's executor, built once.
    static SIGNAL: (Arc<Signal>, Waker) = {
        let signal = Arc::new(Signal {
            thread: std::thread::current(),
            woken: AtomicBool::new(false),
            woken_at: AtomicU64::new(0),
        });
        let waker = Waker::from(signal.clone());
        (signal, waker)
    };
}

/// True while colorseam polls a future on this thread (false during the
/// thread's teardown).
pub(super) fn is_driving() -> bool {
    DRIVING.try_with(Cell::get).unwrap_or(false)
}

struct Signal {
    thread: Thread,
    woken: AtomicBool,
    /// When it was last woken (a `stamp`), to learn how long to spin.
    woken_at: AtomicU64,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if self.woken.load(Ordering::Relaxed) {
            return;
        }
        // Stamped before the flag is set, so a waiter that sees the flag
        // never reads the previous wake's time.
        self.woken_at
            .store(crate::stamp::stamp_now(), Ordering::Relaxed);
        if !self.woken.swap(true, Ordering::Release) {
            self.thread.unpark();
        }
    }
}

/// Leaves a drive: one level down, and if an outer drive is waiting, a
/// wake for it in case this one consumed its signal.
struct RestoreDepth<'a>(&'a Signal);

impl Drop for RestoreDepth<'_> {
    fn drop(&mut self) {
        let depth = DRIVE_DEPTH.with(|d| {
            d.set(d.get().saturating_sub(1));
            d.get()
        });
        if depth > 0 {
            self.0.woken.store(true, Ordering::Release);
        }
    }
}

/// Tunes this thread's spin from a wait that began at `since` and ended
/// when the waker woke it (not when the OS ran this thread again).
fn learn_spin(since: Instant, signal: &Signal) {
    // A wake stamped before the wait began (an outer drive's signal handed
    // on by `RestoreDepth` is not stamped) says nothing about this wait.
    let stamp = signal.woken_at.load(Ordering::Relaxed);
    let woken = crate::stamp::from_stamp(stamp);
    if stamp == 0 || woken < since {
        return;
    }
    let waited = woken.saturating_duration_since(since);
    SPIN_BUDGET.with(|b| {
        let mut budget = b.get();
        budget.after_wait(waited);
        b.set(budget);
    });
}

/// Why driving a future stopped without its value.
pub(super) enum Stopped {
    Elapsed,
    Panicked(Option<String>),
}

/// Polls `future` to completion on this thread, parking between polls.
/// Returns at the deadline if the future is pending then. A pool thread
/// `waiting` (only ever without a deadline) may help its pool between polls,
/// on the pool's terms (`pool::help`). The future is dropped here, before
/// returning, and a panic in its `Drop` is caught like one in its `poll`.
pub(super) fn drive<F: Future>(
    future: F,
    deadline: Option<Instant>,
    waiting: Option<&Waiting>,
) -> Result<F::Output, Stopped> {
    // In an `Option` so it can be dropped in place, under `catch_unwind`.
    let mut slot = pin!(Some(future));
    let result = SIGNAL.with(|(signal, waker)| {
        let mut cx = Context::from_waker(waker);
        // One signal per thread serves nested drives too (a job this thread
        // helps with may call `block_on` while the outer drive waits). A nested
        // drive must not swallow a wake meant for the outer future, so it
        // neither clears the flag on entry nor leaves it clear on exit:
        // at worst the outer future is polled once more than needed.
        let depth = DRIVE_DEPTH.with(|d| {
            d.set(d.get() + 1);
            d.get()
        });
        if depth == 1 {
            signal.woken.store(false, Ordering::Relaxed);
        }
        let _restore = RestoreDepth(signal);
        loop {
            DRIVING.with(|d| d.set(true));
            let polled = catch_unwind(AssertUnwindSafe(|| {
                slot.as_mut()
                    .as_pin_mut()
                    .expect("the future is only taken out after it completes")
                    .poll(&mut cx)
            }));
            DRIVING.with(|d| d.set(false));
            match polled {
                Ok(Poll::Ready(value)) => return Ok(value),
                Ok(Poll::Pending) => {}
                Err(payload) => {
                    let message = panic_message(&*payload);
                    crate::pool::task::drop_quietly(payload);
                    return Err(Stopped::Panicked(message));
                }
            }
            let mut pending_since = None;
            loop {
                // Help first, every time round (when the pool says it must):
                // a future that keeps waking itself must not starve the job
                // it waits for. One job per turn, then the future again.
                let helped = waiting.is_some_and(Waiting::try_help);
                if signal.woken.swap(false, Ordering::Acquire) {
                    if let Some(since) = pending_since.filter(|_| !helped) {
                        learn_spin(since, signal);
                    }
                    break;
                }
                if helped {
                    pending_since = None;
                    continue;
                }
                if pending_since.is_none() {
                    let now = Instant::now();
                    pending_since = Some(now);
                    let budget = SPIN_BUDGET.with(|b| b.get().get());
                    let budget =
                        deadline.map_or(budget, |d| d.saturating_duration_since(now).min(budget));
                    if crate::spin::spin_until(now, budget, || signal.woken.load(Ordering::Relaxed))
                    {
                        continue;
                    }
                }
                match deadline {
                    None => std::thread::park(),
                    Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => std::thread::park_timeout(left),
                        _ => return Err(Stopped::Elapsed),
                    },
                }
            }
        }
    });
    match catch_unwind(AssertUnwindSafe(|| slot.as_mut().set(None))) {
        Ok(()) => result,
        Err(payload) => {
            let message = panic_message(&*payload);
            crate::pool::task::drop_quietly(payload);
            drop(result);
            Err(Stopped::Panicked(message))
        }
    }
}

/// How long a waiting `block_on` spins before it parks, at most: about
/// one cross-thread wake-up, which a future woken from another thread (a
/// pool worker, a runtime worker) then costs once rather than twice.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(40);
