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
            common::meeting_pair_in_a_job(&p)
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

/// A shutdown made by a job that its thread runs while it helps (a nested
/// job run by the waiting thread itself) settles everything but that
/// thread's jobs (the helped one and the one that waits for it) and
/// returns; both then finish.
#[test]
fn a_shutdown_from_a_helped_job_settles_the_rest_and_returns() {
    let pool = BlockingPool::builder()
        .name("r11-helped-shutdown")
        .max_threads(1)
        .queue_capacity(4)
        .build()
        .unwrap();
    let p = pool.clone();
    let (report, outer_thread, helped_thread) =
        within(LIMIT, "a helped job's shutdown", move || {
            colorseam::block_on(p.clone().offload(move || {
                let outer_thread = std::thread::current().id();
                let (report, helped_thread) = colorseam::block_on(p.clone().offload(move || {
                    (
                        p.shutdown_blocking(colorseam::pool::ShutdownOptions::run_queued(
                            Duration::MAX,
                        )),
                        std::thread::current().id(),
                    )
                }))
                .unwrap()
                .unwrap();
                (report, outer_thread, helped_thread)
            }))
            .unwrap()
            .unwrap()
        });
    assert_eq!(outer_thread, helped_thread, "a one-thread pool: helped");
    assert_eq!(report.abandoned, 0, "{report:?}");
    assert_eq!(report.cancelled, 0, "{report:?}");
}

/// `block_on_in_place` from a `Drop` that runs while a task on a
/// multi-thread worker unwinds: no panic hook is touched, so the process
/// does not abort and the future runs to completion.
#[test]
fn block_on_in_place_from_a_drop_during_unwinding_on_a_worker_completes() {
    struct OnDrop(std::sync::mpsc::Sender<Result<u8, colorseam::Error>>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            assert!(std::thread::panicking());
            let _ = self.0.send(colorseam::block_on_in_place(async {
                tokio::task::yield_now().await;
                9u8
            }));
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let joined = rt.block_on(async move {
        tokio::spawn(async move {
            let _guard = OnDrop(tx);
            std::panic::panic_any("unwinding through a guard");
        })
        .await
    });
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(rx.recv_timeout(LIMIT).unwrap().unwrap(), 9);
}

/// Inside a raw `tokio::task::block_in_place` closure tokio has left the
/// runtime's scheduler context (the worker's other tasks moved away), so
/// blocking is fine there: `context()` says a blocking thread of that
/// runtime, `block_on` runs, and the guard is silent.
#[test]
fn inside_a_raw_block_in_place_closure_blocking_is_allowed() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (context, ran, new_violations) = rt.block_on(async {
        tokio::spawn(async {
            assert!(colorseam::context().is_async(), "a task on a worker");
            tokio::task::block_in_place(|| {
                let before = colorseam::guard::violations();
                colorseam::guard::assert_blocking_allowed();
                let new_violations = colorseam::guard::violations() - before;
                (
                    colorseam::context(),
                    colorseam::block_on(async {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        3u8
                    })
                    .map_err(|e| e.to_string()),
                    new_violations,
                )
            })
        })
        .await
        .unwrap()
    });
    assert_eq!(
        context,
        colorseam::CallerContext::BlockingThread {
            flavor: colorseam::RuntimeFlavor::MultiThread
        }
    );
    assert_eq!(ran, Ok(3));
    assert_eq!(new_violations, 0);
}

/// Another executor on a plain thread: an offload's deadline releases the
/// caller at the deadline (no tokio runtime current at the call or poll).
#[test]
fn under_futures_executor_a_nested_sandwich_and_a_deadline_both_hold() {
    let pool = BlockingPool::builder()
        .name("r11-futures")
        .max_threads(1)
        .build()
        .unwrap();
    let p = pool.clone();
    let (took, timed_out, nested) = within(LIMIT, "futures::executor", move || {
        let started = Instant::now();
        let gate = common::Gate::new();
        let g = gate.clone();
        let err = futures::executor::block_on(
            p.offload_timeout(move || g.wait(LIMIT), Duration::from_millis(50)),
        )
        .unwrap_err();
        let took = started.elapsed();
        gate.open();
        let q = p.clone();
        let nested = futures::executor::block_on(p.offload(move || {
            colorseam::block_on(async move { q.offload(|| 4u8).await.unwrap() }).unwrap()
        }))
        .unwrap();
        (took, err.is_timeout(), nested)
    });
    assert!(timed_out);
    assert!(took < Duration::from_secs(10), "released after {took:?}");
    assert_eq!(nested, 4);
}

/// Many threads on one pool: eight callers, each making sandwiches (async
/// -> sync -> async -> sync) in a loop on a two-thread pool whose queue has
/// room for all of them; every round completes (no lost wake-up leaves a
/// nested job queued with its waiting thread parked).
#[test]
fn eight_callers_making_sandwiches_on_a_two_thread_pool_all_complete() {
    let pool = BlockingPool::builder()
        .name("r11-many")
        .max_threads(2)
        .queue_capacity(256)
        .build()
        .unwrap();
    let callers: Vec<_> = (0..8u64)
        .map(|caller| {
            let p = pool.clone();
            std::thread::spawn(move || {
                let mut sum = 0;
                for round in 0..50u64 {
                    let q = p.clone();
                    sum += colorseam::block_on(p.offload(move || {
                        colorseam::block_on(async move {
                            let (a, b) = (q.offload(move || caller), q.offload(move || round));
                            a.await.unwrap() + b.await.unwrap()
                        })
                        .unwrap()
                    }))
                    .unwrap()
                    .unwrap();
                }
                sum
            })
        })
        .collect();
    let total = within(LIMIT, "eight callers' sandwiches", move || {
        callers.into_iter().map(|c| c.join().unwrap()).sum::<u64>()
    });
    let expected: u64 = (0..8u64).map(|c| 50 * c + (0..50).sum::<u64>()).sum();
    assert_eq!(total, expected);
}

/// A paused test clock around a sandwich: neither the outer offload's
/// deadline nor the nested one's (made and polled on the pool thread) is
/// cut short while the jobs really run.
#[tokio::test(start_paused = true)]
async fn under_a_paused_clock_nested_deadlines_do_not_cut_running_jobs_short() {
    let pool = BlockingPool::builder()
        .name("r11-paused")
        .max_threads(2)
        .build()
        .unwrap();
    let p = pool.clone();
    let started = Instant::now();
    let nested = pool
        .offload_timeout(
            move || {
                colorseam::block_on(async move {
                    p.offload_timeout(
                        || std::thread::sleep(Duration::from_millis(50)),
                        Duration::from_secs(3),
                    )
                    .await
                })
            },
            Duration::from_secs(3),
        )
        .await;
    let nested = nested
        .expect("the outer deadline held")
        .expect("block_on ran");
    assert!(nested.is_ok(), "the nested deadline held: {nested:?}");
    assert!(started.elapsed() >= Duration::from_millis(50));
}
