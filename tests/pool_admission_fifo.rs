//! Callers waiting for room in a full pool are admitted first come, first
//! served, and each slot that frees wakes one of them, not all: so the
//! cost of admission stays flat however many callers wait (issue 15's
//! callers curve), and none of them starves.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll};

use colorseam::BlockingPool;

/// An offload that counts how often it is polled and says when it was
/// first polled (which is when it joins the line for room).
struct Counted<F> {
    call: F,
    polls: usize,
    in_line: Option<tokio::sync::oneshot::Sender<()>>,
}

impl<F: Future + Unpin> Future for Counted<F> {
    type Output = (F::Output, usize);
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.polls += 1;
        let polled = Pin::new(&mut self.call).poll(cx);
        if let Some(in_line) = self.in_line.take() {
            let _ = in_line.send(());
        }
        let polls = self.polls;
        polled.map(|out| (out, polls))
    }
}

#[test]
fn callers_waiting_for_room_are_admitted_in_the_order_they_came_and_a_freed_slot_wakes_one() {
    const WAITERS: usize = 200;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let pool = BlockingPool::builder()
        .name("admission-fifo")
        .max_threads(1)
        .queue_capacity(1)
        .build()
        .expect("a valid pool");
    let ran = Arc::new(Mutex::new(Vec::new()));
    let (polls, order) = rt.block_on(async {
        // The pool's one thread held, and its one queue slot taken: every
        // call made now waits for room.
        let (open, gate) = mpsc::channel::<()>();
        let (held_tx, held) = tokio::sync::oneshot::channel();
        let gate_call = pool.offload(move || {
            let _ = held_tx.send(());
            let _ = gate.recv();
        });
        held.await.expect("the gate job holds the pool's thread");
        let filler = pool.offload(|| ());

        // Each waiter is its own task, in line (first polled) before the
        // next one is made.
        let mut waiters = Vec::with_capacity(WAITERS);
        for i in 0..WAITERS {
            let ran = ran.clone();
            let (in_line_tx, in_line_rx) = tokio::sync::oneshot::channel();
            let call = Counted {
                call: pool.offload(move || ran.lock().expect("never poisoned").push(i)),
                polls: 0,
                in_line: Some(in_line_tx),
            };
            waiters.push(tokio::spawn(call));
            in_line_rx.await.expect("the waiter was polled");
        }

        let _ = open.send(());
        gate_call.await.expect("the gate job returns once opened");
        filler.await.expect("the filler runs");
        let mut polls = Vec::with_capacity(WAITERS);
        for waiter in waiters {
            let (result, polled) = waiter.await.expect("a waiter task panicked");
            result.expect("every waiter's call runs");
            polls.push(polled);
        }
        let order = ran.lock().expect("never poisoned").clone();
        (polls, order)
    });
    let expected: Vec<usize> = (0..WAITERS).collect();
    assert_eq!(
        order, expected,
        "admitted out of the order the callers came in"
    );
    // In line, admitted, done: three polls each, and a spurious one spared.
    // A wake-all admission would poll the last waiter about WAITERS times.
    let most = polls.iter().copied().max().unwrap_or(0);
    assert!(
        most <= 4,
        "a waiter was polled {most} times: woken for slots that went to others ({polls:?})"
    );
    assert_eq!(pool.metrics().queue_depth, 0);
}
