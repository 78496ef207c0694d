//! User code the pool runs on its callers' behalf (wakers, the drops of
//! wakers and values, error sinks) runs with no lock of the pool held, so it
//! may call back into the pool: read its metrics, offload, shut it down.
//! And a panicking waker is contained: it never stops the pool releasing
//! its other callers.
//!
//! Each scenario runs whole under `within` (its pools too, so a failing
//! test never waits on a lock a stuck thread holds): a deadlock fails in
//! seconds.

mod common;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::task::Waker;
use std::time::Duration;

use colorseam::pool::ShutdownOptions;
use colorseam::{BlockingPool, Offload};
use common::{Gate, Reentrant, poll_once, within};

const LONG: Duration = Duration::from_secs(20);
/// How long a scenario may take before it counts as deadlocked.
const STUCK: Duration = Duration::from_secs(10);

/// What a waker does to the pool when it runs.
#[derive(Debug, Clone, Copy)]
enum Reenter {
    ReadMetrics,
    Offload,
    ShutDown,
}

const EVERY_WAY: [Reenter; 3] = [Reenter::ReadMetrics, Reenter::Offload, Reenter::ShutDown];

fn reenter(pool: &BlockingPool, how: Reenter) {
    match how {
        Reenter::ReadMetrics => {
            let _ = pool.metrics();
        }
        // Submitting, and giving up at once (the drop): both take the lock.
        Reenter::Offload => drop(pool.try_offload(|| ())),
        Reenter::ShutDown => drop(pool.shutdown(ShutdownOptions::cancel_queued(Duration::ZERO))),
    }
}

fn reentrant_waker(pool: &BlockingPool, how: Reenter) -> (Arc<Reentrant>, Waker) {
    let pool = pool.clone();
    let reentrant = Reentrant::waker(move || reenter(&pool, how));
    let waker = Waker::from(reentrant.clone());
    (reentrant, waker)
}

/// One thread, one queue slot: a running job (returned, with its gate) and
/// the slot filled, so the next call waits for room.
fn full_pool(name: &str) -> (BlockingPool, Gate, Offload<()>, Offload<()>) {
    let pool = BlockingPool::builder()
        .name(name)
        .max_threads(1)
        .queue_capacity(1)
        .max_abandoned(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let g = gate.clone();
    let running = pool.offload(move || {
        let _ = started_tx.send(());
        g.wait(LONG);
    });
    started_rx.recv_timeout(LONG).expect("the job starts");
    let g = gate.clone();
    let queued = pool.offload(move || g.wait(LONG));
    (pool, gate, running, queued)
}

#[test]
fn a_waker_woken_by_a_permit_a_dropped_running_call_gives_back_may_reenter_the_pool() {
    for how in EVERY_WAY {
        within(STUCK, "dropping a running call", move || drop_running(how));
    }
}

fn drop_running(how: Reenter) {
    {
        let (pool, gate, running, queued) = full_pool("re-drop");
        let mut waiting = Box::pin(pool.offload(|| 2));
        let (reentrant, waker) = reentrant_waker(&pool, how);
        assert!(poll_once(waiting.as_mut(), &waker).is_pending(), "{how:?}");
        // Abandoned within budget: its permit goes back at once, which wakes
        // the caller waiting for room, on this thread.
        drop(running);
        assert!(
            reentrant.woken() >= 1,
            "{how:?}: the waiter was never woken"
        );
        gate.open();
        let result = futures::executor::block_on(waiting);
        match how {
            Reenter::ShutDown => assert!(result.unwrap_err().is_shutdown()),
            _ => assert_eq!(result.unwrap(), 2, "{how:?}"),
        }
        drop(queued);
    }
}

#[test]
fn a_waker_woken_by_shutdown_refusing_a_caller_waiting_for_room_may_reenter_the_pool() {
    for how in EVERY_WAY {
        within(STUCK, "shutdown", move || refuse_waiter(how));
    }
}

fn refuse_waiter(how: Reenter) {
    {
        let (pool, gate, _running, _queued) = full_pool("re-close");
        let mut waiting = Box::pin(pool.offload(|| 2));
        let (reentrant, waker) = reentrant_waker(&pool, how);
        assert!(poll_once(waiting.as_mut(), &waker).is_pending(), "{how:?}");
        drop(pool.shutdown(ShutdownOptions::run_queued(LONG)));
        assert!(
            reentrant.woken() >= 1,
            "{how:?}: the waiter was never woken"
        );
        let err = futures::executor::block_on(waiting).unwrap_err();
        assert!(err.is_shutdown(), "{how:?}: {err}");
        gate.open();
    }
}

#[test]
fn a_waker_woken_by_shutdown_abandoning_a_running_call_may_reenter_the_pool() {
    for how in EVERY_WAY {
        within(STUCK, "shutdown at its deadline", move || {
            abandon_running(how)
        });
    }
}

fn abandon_running(how: Reenter) {
    {
        let pool = BlockingPool::builder()
            .name("re-abandon")
            .max_threads(1)
            .build()
            .unwrap();
        let gate = Gate::new();
        let g = gate.clone();
        let (started_tx, started_rx) = mpsc::channel();
        let mut running = Box::pin(pool.offload(move || {
            let _ = started_tx.send(());
            g.wait(LONG);
        }));
        started_rx.recv_timeout(LONG).expect("the job starts");
        let (reentrant, waker) = reentrant_waker(&pool, how);
        assert!(poll_once(running.as_mut(), &waker).is_pending());
        let report = pool.shutdown_blocking(ShutdownOptions::run_queued(Duration::from_millis(20)));
        assert_eq!(report.abandoned, 1, "{how:?}");
        assert!(
            reentrant.woken() >= 1,
            "{how:?}: the caller was never woken"
        );
        let err = futures::executor::block_on(running).unwrap_err();
        assert!(err.is_shutdown(), "{how:?}: {err}");
        gate.open();
    }
}

#[test]
fn queued_calls_given_up_drop_their_wakers_with_no_lock_held_when_the_queue_is_compacted() {
    within(STUCK, "giving up on queued calls", compacted);
}

fn compacted() {
    const QUEUED: usize = 200;
    let pool = BlockingPool::builder()
        .name("re-compact")
        .max_threads(1)
        .queue_capacity(QUEUED)
        .build()
        .unwrap();
    let gate = Gate::new();
    let held = common::hold(&pool, 1, &gate);
    assert!(common::eventually(LONG, || pool.metrics().threads.busy == 1));
    let dropped = Arc::new(AtomicUsize::new(0));
    let calls: Vec<Pin<Box<Offload<()>>>> = (0..QUEUED)
        .map(|_| {
            let mut call = Box::pin(pool.offload(|| ()));
            let (p, dropped) = (pool.clone(), dropped.clone());
            // The waker's last clone lives in the job, then in the queue's
            // tombstone: it goes when the queue is compacted.
            let waker = Waker::from(Reentrant::dropping(move || {
                let _ = p.metrics();
                drop(p.try_offload(|| ()));
                dropped.fetch_add(1, Ordering::SeqCst);
            }));
            assert!(poll_once(call.as_mut(), &waker).is_pending());
            call
        })
        .collect();
    drop(calls);
    assert!(
        dropped.load(Ordering::SeqCst) > 0,
        "no tombstone was compacted away: the test did not test"
    );
    gate.open();
    for job in held {
        futures::executor::block_on(job).unwrap();
    }
    assert!(common::eventually(LONG, || dropped.load(Ordering::SeqCst) == QUEUED));
}

/// A waker that panics when woken.
fn panicking_waker() -> Waker {
    Waker::from(Reentrant::waker(|| panic!("a waker that panics")))
}

#[test]
fn a_panicking_waker_does_not_stop_shutdown_releasing_the_other_callers() {
    within(STUCK, "shutdown", shutdown_with_a_panicking_waker);
}

fn shutdown_with_a_panicking_waker() {
    let pool = BlockingPool::builder()
        .name("re-panic-sd")
        .max_threads(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let held = common::hold(&pool, 1, &gate);
    assert!(common::eventually(LONG, || pool.metrics().threads.busy == 1));
    let mut first = Box::pin(pool.offload(|| 1));
    let mut second = Box::pin(pool.offload(|| 2));
    assert!(poll_once(first.as_mut(), &panicking_waker()).is_pending());
    let flag = Reentrant::waker(|| {});
    assert!(poll_once(second.as_mut(), &Waker::from(flag.clone())).is_pending());
    let report = pool.shutdown_blocking(ShutdownOptions::cancel_queued(Duration::ZERO));
    assert_eq!(report.cancelled, 2, "{report:?}");
    assert_eq!(flag.woken(), 1, "the second caller was never released");
    let err = futures::executor::block_on(second).unwrap_err();
    assert!(err.is_shutdown(), "{err}");
    let err = futures::executor::block_on(first).unwrap_err();
    assert!(err.is_shutdown(), "{err}");
    gate.open();
    drop(held);
}

#[test]
fn a_panicking_waker_woken_by_a_permit_does_not_panic_the_caller_that_gave_it_back() {
    within(
        STUCK,
        "dropping a running call",
        permit_with_a_panicking_waker,
    );
}

fn permit_with_a_panicking_waker() {
    let (pool, gate, running, _queued) = full_pool("re-panic-permit");
    let mut waiting = Box::pin(pool.offload(|| 2));
    assert!(poll_once(waiting.as_mut(), &panicking_waker()).is_pending());
    drop(running);
    // The drop's bookkeeping finished: the abandoned thread was replaced,
    // so the queued job runs once the gate opens.
    gate.open();
    assert_eq!(futures::executor::block_on(waiting).unwrap(), 2);
    assert_eq!(pool.metrics().outcomes.cancelled_running, 1);
}

#[test]
fn a_waker_woken_by_a_finished_job_may_reenter_the_pool() {
    for how in EVERY_WAY {
        within(STUCK, "a job finishing", move || {
            let pool = BlockingPool::builder()
                .name("re-done")
                .max_threads(1)
                .build()
                .unwrap();
            let gate = Gate::new();
            let g = gate.clone();
            let mut call = Box::pin(pool.offload(move || {
                g.wait(LONG);
                7
            }));
            let (reentrant, waker) = reentrant_waker(&pool, how);
            assert!(poll_once(call.as_mut(), &waker).is_pending());
            gate.open();
            // Woken on the worker as the job's value is published.
            assert!(common::eventually(LONG, || reentrant.woken() >= 1));
            assert_eq!(futures::executor::block_on(call).unwrap(), 7, "{how:?}");
        });
    }
}

#[test]
fn an_error_sink_may_reenter_the_pool_that_calls_it() {
    for how in EVERY_WAY {
        within(STUCK, "a detached failure", move || {
            let pool_slot: Arc<std::sync::Mutex<Option<BlockingPool>>> = Arc::default();
            let (tx, rx) = mpsc::channel();
            let slot = pool_slot.clone();
            let pool = BlockingPool::builder()
                .name("re-sink")
                .max_threads(1)
                .error_sink(move |_error| {
                    let pool = slot.lock().unwrap().clone();
                    if let Some(pool) = pool {
                        reenter(&pool, how);
                    }
                    let _ = tx.send(());
                })
                .build()
                .unwrap();
            *pool_slot.lock().unwrap() = Some(pool.clone());
            pool.detach(|| -> Result<(), std::io::Error> { Err(std::io::Error::other("bad row")) })
                .unwrap();
            rx.recv_timeout(LONG).expect("the sink ran");
            // The pool still works (or is shut down, if the sink did that).
            let after = futures::executor::block_on(pool.offload(|| 1));
            match how {
                Reenter::ShutDown => assert!(after.unwrap_err().is_shutdown()),
                _ => assert_eq!(after.unwrap(), 1),
            }
            // The sink reaches the pool through this slot: empty it, so the
            // pool is not kept alive by its own sink.
            pool_slot.lock().unwrap().take();
        });
    }
}
