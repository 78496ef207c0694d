//! Futures shared by the benches and `examples/compare/`, so every
//! measurement of the same scenario measures the same thing. Included with
//! `#[path]`; each includer uses only some of them.
#![allow(dead_code)]

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::task::{Context, Poll, Waker};
use std::thread;

/// A future that is pending `remaining` times, then ready.
pub(crate) struct Yields {
    pub(crate) remaining: u64,
}

impl Future for Yields {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.remaining == 0 {
            Poll::Ready(())
        } else {
            self.remaining = black_box(self.remaining - 1);
            Poll::Pending
        }
    }
}

/// A long-lived std thread that counts, then wakes, every waker it is
/// sent, so a future can tell a real wake from a spurious poll.
pub(crate) struct WakerThread {
    wakers: mpsc::Sender<Waker>,
    woken: Arc<AtomicU64>,
}

impl WakerThread {
    pub(crate) fn start() -> Self {
        Self::start_with_delay(std::time::Duration::ZERO)
    }

    /// A helper that sleeps `delay` before each wake: a future that is
    /// pending for a while, as IO is.
    pub(crate) fn start_with_delay(delay: std::time::Duration) -> Self {
        let (wakers, rx) = mpsc::channel::<Waker>();
        let woken = Arc::new(AtomicU64::new(0));
        let counter = woken.clone();
        thread::Builder::new()
            .name("fixture-waker".to_owned())
            .spawn(move || {
                for waker in rx {
                    if !delay.is_zero() {
                        thread::sleep(delay);
                    }
                    counter.fetch_add(1, Ordering::Release);
                    waker.wake();
                }
            })
            .expect("the waker thread starts");
        WakerThread { wakers, woken }
    }

    /// A future that is woken once from the helper thread.
    pub(crate) fn wake_once(&self) -> WokenElsewhere<'_> {
        WokenElsewhere {
            helper: self,
            target: None,
        }
    }
}

/// Pending until the helper thread has woken it once.
pub(crate) struct WokenElsewhere<'a> {
    helper: &'a WakerThread,
    target: Option<u64>,
}

impl Future for WokenElsewhere<'_> {
    type Output = u64;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        match self.target {
            None => {
                let target = self.helper.woken.load(Ordering::Acquire) + 1;
                self.target = Some(target);
                self.helper
                    .wakers
                    .send(cx.waker().clone())
                    .expect("the waker thread is alive");
                Poll::Pending
            }
            Some(target) if self.helper.woken.load(Ordering::Acquire) >= target => {
                Poll::Ready(target)
            }
            Some(_) => Poll::Pending,
        }
    }
}
