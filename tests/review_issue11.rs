//! A hostile review of issue 11 (nested offloads, context without panics,
//! the caller's world inside a job, real-time deadlines): each attack kept
//! as a test. Bounds are generous: they separate "released at the deadline"
//! from "held until the job ended", never tight figures.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use colorseam::BlockingPool;
use common::{eventually, within};

const LIMIT: Duration = Duration::from_secs(60);

/// A pool of exactly two threads, both started and idle.
fn two_idle_threads(name: &str) -> BlockingPool {
    let pool = BlockingPool::builder()
        .name(name)
        .max_threads(2)
        .min_threads(2)
        .queue_capacity(64)
        .build()
        .unwrap();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let (b1, b2) = (barrier.clone(), barrier);
    colorseam::block_on(async {
        let a = pool.offload(move || {
            b1.wait();
        });
        let b = pool.offload(move || {
            b2.wait();
        });
        a.await.unwrap();
        b.await.unwrap();
    })
    .unwrap();
    assert!(eventually(Duration::from_secs(20), || pool
        .metrics()
        .threads
        .idle
        == 2));
    pool
}

/// Two nested jobs that meet (each sends, then waits for the other) on a
/// two-thread pool whose other thread is idle: the idle thread takes the
/// first, and the waiting thread, with no thread left to take the second,
/// must run it itself. When the waiting thread looks while the idle worker
/// has been woken but has not yet taken its job, it must look again once
/// that worker has taken it; else the second job stays queued until the
/// first gives up.
#[test]
fn a_waiting_thread_helps_once_the_woken_worker_has_taken_the_other_job() {
    let pool = two_idle_threads("r11-race");
    for round in 0..1000 {
        let p = pool.clone();
        let started = Instant::now();
        let (a_met, b_met) = within(LIMIT, "a meeting pair of nested jobs", move || {
            colorseam::block_on(p.clone().offload(move || {
                colorseam::block_on(async move {
                    let (to_b, from_a) = mpsc::channel();
                    let (to_a, from_b) = mpsc::channel();
                    let a = p.offload(move || {
                        let _ = to_b.send(());
                        from_b.recv_timeout(Duration::from_secs(5)).is_ok()
                    });
                    let b = p.offload(move || {
                        let _ = to_a.send(());
                        from_a.recv_timeout(Duration::from_secs(5)).is_ok()
                    });
                    (a.await.unwrap(), b.await.unwrap())
                })
            }))
            .unwrap()
            .unwrap()
            .unwrap()
        });
        assert!(
            a_met && b_met,
            "round {round}: the pair did not meet (a {a_met}, b {b_met}) after {:?}",
            started.elapsed()
        );
        assert!(eventually(Duration::from_secs(20), || pool
            .metrics()
            .threads
            .idle
            == 2));
    }
}

/// The async shutdown, awaited in `block_on` inside a job of the pool it
/// shuts down, without a deadline, with another caller's job queued behind
/// the only thread: "it never hangs on itself" (the docs of `shutdown`), as
/// `shutdown_blocking` does not in the same place.
#[test]
fn the_async_shutdown_from_the_only_thread_with_work_queued_behind_it_returns() {
    let pool = BlockingPool::builder()
        .name("r11-self-async")
        .max_threads(1)
        .queue_capacity(4)
        .build()
        .unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let p = pool.clone();
    let outer = std::thread::spawn(move || {
        colorseam::block_on(p.clone().offload(move || {
            started_tx.send(()).unwrap();
            go_rx.recv_timeout(LIMIT).unwrap();
            colorseam::block_on(
                p.shutdown(colorseam::pool::ShutdownOptions::run_queued(Duration::MAX)),
            )
        }))
    });
    started_rx.recv_timeout(LIMIT).unwrap();
    let queued = {
        let pool = pool.clone();
        std::thread::spawn(move || colorseam::block_on(pool.offload(|| "queued ran")))
    };
    assert!(eventually(LIMIT, || pool.metrics().queue_depth == 1));
    go_tx.send(()).unwrap();
    let report = within(
        Duration::from_secs(20),
        "the async shutdown from a job",
        move || outer.join().unwrap(),
    )
    .unwrap()
    .unwrap()
    .unwrap();
    assert_eq!(report.abandoned, 0, "{report:?}");
    assert_eq!(queued.join().unwrap().unwrap().unwrap(), "queued ran");
}
