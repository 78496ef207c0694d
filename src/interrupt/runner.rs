//! The threads that run interrupters: `colorseam-interrupt`.
//!
//! A call is released where it is abandoned (the caller's poll, a
//! shutdown), which is often an async worker: its interrupters are handed
//! here instead, so they run on a thread of their own with no crate lock
//! held, and the release never waits for them.
//!
//! One thread starts at the first interrupt of the process. An interrupter
//! that takes long (or never returns) must not hold up the next ones: when
//! an interrupter is queued and no interrupt thread is idle, another
//! starts, up to [`MAX_THREADS`]; past that, interrupters wait for the
//! first thread to come free. Threads idle for [`KEEP_ALIVE`] exit.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::registry::{Entry, Fired, Stats, claim, run_claimed};
use crate::sync::lock_std as lock;

/// The most interrupt threads at once: as many slow interrupters can run
/// side by side before the next waits for one of them.
pub(crate) const MAX_THREADS: usize = 16;
/// An interrupt thread with nothing to run this long exits.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

struct Queue {
    items: VecDeque<(Arc<dyn Entry>, Arc<Stats>, Fired)>,
    /// Threads waiting for an item.
    idle: usize,
    /// Threads alive (or starting).
    threads: usize,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    items: VecDeque::new(),
    idle: 0,
    threads: 0,
});
static WORK: Condvar = Condvar::new();

/// Hands claimed interrupters to the interrupt threads. Never waits for
/// one to run: a lock, a push, and a wake-up or a thread start.
pub(crate) fn dispatch(entries: Vec<Arc<dyn Entry>>, stats: &Arc<Stats>, fired: &Fired) {
    if entries.is_empty() {
        return;
    }
    let mut queue = lock(&QUEUE);
    queue.items.extend(
        entries
            .into_iter()
            .map(|entry| (entry, stats.clone(), fired.clone())),
    );
    // Every idle thread takes one item; start threads for the rest.
    let wanted = queue.items.len().saturating_sub(queue.idle);
    let starts = wanted.min(MAX_THREADS.saturating_sub(queue.threads));
    queue.threads += starts;
    let wake = queue.items.len().min(queue.idle);
    drop(queue);
    for _ in 0..wake {
        WORK.notify_one();
    }
    for _ in 0..starts {
        start_thread();
    }
}

fn start_thread() {
    let started = std::thread::Builder::new()
        .name("colorseam-interrupt".to_owned())
        .spawn(run);
    if let Err(_error) = started {
        let mut queue = lock(&QUEUE);
        queue.threads -= 1;
        let stranded = queue.threads == 0 && !queue.items.is_empty();
        drop(queue);
        // Left queued: the next dispatch tries to start a thread again, and
        // a guard dropped meanwhile disarms its entry.
        #[cfg(feature = "tracing")]
        tracing::warn!(error = %_error, stranded, "colorseam could not start an interrupt thread");
        #[cfg(not(feature = "tracing"))]
        let _ = stranded;
    }
}

fn run() {
    let mut queue = lock(&QUEUE);
    loop {
        if let Some((entry, stats, fired)) = queue.items.pop_front() {
            drop(queue);
            if claim(&*entry) {
                fired.store(true, std::sync::atomic::Ordering::Release);
                run_claimed(&*entry, &stats);
            }
            // The entry's last handle may hold the interrupter's captures.
            crate::pool::task::drop_quietly((entry, stats, fired));
            queue = lock(&QUEUE);
            continue;
        }
        queue.idle += 1;
        let (guard, wait) = WORK
            .wait_timeout(queue, KEEP_ALIVE)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        queue = guard;
        queue.idle -= 1;
        if wait.timed_out() && queue.items.is_empty() {
            queue.threads -= 1;
            return;
        }
    }
}
