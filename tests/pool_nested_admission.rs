//! Nested offloads under a full admission bound: a job blocked in
//! `block_on` on a nested offload lends it its permit, so sandwiches
//! (async -> sync -> async -> sync) complete even when outer jobs hold every
//! permit, and the permit count stays exact through loans, abandonments and
//! shutdowns.
//!
//! Each test fails on the code before lent permits by hanging until its
//! `within` limit (the first two were found by the issue 11 review).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use colorseam::BlockingPool;
use common::{Gate, eventually, within};

const LIMIT: Duration = Duration::from_secs(60);

fn pool(name: &str, threads: usize, queue: usize) -> BlockingPool {
    BlockingPool::builder()
        .name(name)
        .max_threads(threads)
        .queue_capacity(queue)
        .build()
        .unwrap()
}

/// Two outer jobs that hold every permit of a one-thread pool with a
/// queue of one (the first runs, the second is queued), each then running
/// `inner` inside its job, where `inner` waits for nested work. Returns
/// both results, or fails the test if they do not come within `LIMIT`.
fn two_outers_on_a_full_pool<R: Send + 'static>(
    pool: &BlockingPool,
    what: &str,
    inner: impl Fn(BlockingPool) -> R + Clone + Send + Sync + 'static,
) -> (R, R) {
    let go = Gate::new();
    let (started, outer_started) = mpsc::channel();
    let outer = |started: mpsc::Sender<()>| {
        let (pool, go, inner) = (pool.clone(), go.clone(), inner.clone());
        std::thread::spawn(move || {
            let p = pool.clone();
            colorseam::block_on(pool.offload(move || {
                let _ = started.send(());
                go.wait(Duration::from_secs(20));
                inner(p)
            }))
            .unwrap()
            .unwrap()
        })
    };
    let a = outer(started.clone());
    // The second outer job is admitted (the queue's one place) while the
    // first holds the thread: every permit is held by an outer job.
    outer_started.recv_timeout(LIMIT).unwrap();
    let b = outer(started);
    assert!(eventually(LIMIT, || pool.metrics().queue_depth == 1));
    go.open();
    within(LIMIT, what, move || (a.join().unwrap(), b.join().unwrap()))
}

/// Fills every permit with gated jobs through `try_offload`, then checks
/// one more is refused: the pool has exactly `permits` of them, none lost to
/// a loan and none made by one.
fn assert_permits_exact(pool: &BlockingPool, permits: usize) {
    let gate = Gate::new();
    let p = pool.clone();
    let g = gate.clone();
    within(LIMIT, "the permit count", move || {
        colorseam::block_on(async move {
            let held: Vec<_> = (0..permits)
                .map(|_| {
                    let g = g.clone();
                    p.try_offload(move || g.wait(Duration::from_secs(20)))
                })
                .collect();
            let refused = p.try_offload(|| ()).await;
            assert!(
                refused.as_ref().is_err_and(colorseam::Error::is_saturated),
                "one more than {permits} permits was admitted: {refused:?}"
            );
            g.open();
            for job in held {
                job.await.expect("each of the permits admits a job");
            }
        })
        .unwrap();
    });
}

#[test]
fn two_sandwiches_on_one_thread_and_a_queue_of_one_both_complete() {
    let pool = pool("loan-two", 1, 1);
    let (a, b) = two_outers_on_a_full_pool(&pool, "two sandwiches on a full pool", |p| {
        colorseam::block_on(async move { p.offload(|| 1u64).await.unwrap() }).unwrap()
    });
    assert_eq!(a + b, 2);
    assert_permits_exact(&pool, 2);
}

#[test]
fn six_callers_making_twenty_sandwiches_each_on_two_threads_and_a_queue_of_one_all_complete() {
    let pool = pool("loan-six", 2, 1);
    let callers: Vec<_> = (0..6u64)
        .map(|caller| {
            let p = pool.clone();
            std::thread::spawn(move || {
                let mut sum = 0;
                for round in 0..20u64 {
                    let q = p.clone();
                    sum += colorseam::block_on(p.offload(move || {
                        colorseam::block_on(async move {
                            q.offload(move || caller * 100 + round).await.unwrap()
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
    let total = within(LIMIT, "six callers' sandwiches", move || {
        callers.into_iter().map(|c| c.join().unwrap()).sum::<u64>()
    });
    let expected: u64 = (0..6u64)
        .map(|c| (0..20u64).map(|r| c * 100 + r).sum::<u64>())
        .sum();
    assert_eq!(total, expected);
    assert_permits_exact(&pool, 3);
}

/// The offload future built in the job, before `block_on` polls it, has no
/// room when it is built; polled by `block_on` it borrows all the same.
#[test]
fn a_nested_offload_built_before_block_on_polls_it_borrows_its_jobs_permit() {
    let pool = pool("loan-built-before", 1, 1);
    let (a, b) = two_outers_on_a_full_pool(&pool, "sandwiches built before block_on", |p| {
        let nested = p.offload(|| 10u64);
        colorseam::block_on(nested).unwrap().unwrap()
    });
    assert_eq!(a + b, 20);
    assert_permits_exact(&pool, 2);
}

/// async -> sync -> async -> sync -> async -> sync on a full pool: each
/// level lends its own job's permit to the level below.
#[test]
fn a_three_level_sandwich_on_a_full_one_thread_pool_completes() {
    let pool = pool("loan-deep", 1, 1);
    let (a, b) = two_outers_on_a_full_pool(&pool, "two three-level sandwiches", |p1| {
        let p2 = p1.clone();
        colorseam::block_on(async move {
            p1.offload(move || {
                colorseam::block_on(async move { p2.offload(|| 3u32).await.unwrap() }).unwrap() * 2
            })
            .await
            .unwrap()
        })
        .unwrap()
    });
    assert_eq!(a + b, 12);
    assert_permits_exact(&pool, 2);
}

/// Two nested offloads joined in one `block_on` on a full pool: the first
/// borrows, the second waits for room like any other (one loan per job),
/// and the thread frees room by running what is queued.
#[test]
fn two_joined_nested_offloads_of_one_job_take_one_loan_and_both_complete() {
    let pool = pool("loan-joined", 1, 1);
    let (a, b) = two_outers_on_a_full_pool(&pool, "joined nested offloads on a full pool", |p| {
        colorseam::block_on(async move {
            let (a, b) = futures::join!(p.offload(|| 1u32), p.offload(|| 2u32));
            a.unwrap() + b.unwrap()
        })
        .unwrap()
    });
    assert_eq!(a + b, 6);
    assert_permits_exact(&pool, 2);
}

/// While a sandwich's outer job lends its permit, the pool admits no more
/// than before: an outsider's `try_offload` is refused while every permit
/// is held (one by a queued job, one lent to the nested job), and every
/// permit is back once the sandwich is done.
#[test]
fn a_loan_admits_no_outsider_while_the_pool_is_full() {
    let pool = pool("loan-outsider", 1, 1);
    let (go, nested_gate, blocker_gate) = (Gate::new(), Gate::new(), Gate::new());
    let (started, outer_started) = mpsc::channel();
    let (nested_running, nested_runs) = mpsc::channel();
    let outer = {
        let (p, pool, go, g) = (pool.clone(), pool.clone(), go.clone(), nested_gate.clone());
        std::thread::spawn(move || {
            colorseam::block_on(pool.offload(move || {
                let _ = started.send(());
                go.wait(Duration::from_secs(20));
                colorseam::block_on(async move {
                    p.offload(move || {
                        let _ = nested_running.send(());
                        g.wait(Duration::from_secs(20));
                    })
                    .await
                    .unwrap()
                })
                .unwrap()
            }))
            .unwrap()
            .unwrap()
        })
    };
    outer_started.recv_timeout(LIMIT).unwrap();
    let blocker = {
        let (pool, g) = (pool.clone(), blocker_gate.clone());
        std::thread::spawn(move || {
            colorseam::block_on(pool.offload(move || g.wait(Duration::from_secs(20))))
                .unwrap()
                .unwrap()
        })
    };
    assert!(eventually(LIMIT, || pool.metrics().queue_depth == 1));
    go.open();
    nested_runs.recv_timeout(LIMIT).unwrap();
    let refused = colorseam::block_on(pool.try_offload(|| ())).unwrap();
    assert!(
        refused.as_ref().is_err_and(colorseam::Error::is_saturated),
        "an outsider was admitted past the bound: {refused:?}"
    );
    nested_gate.open();
    blocker_gate.open();
    within(LIMIT, "the sandwich and the queued job", move || {
        outer.join().unwrap();
        blocker.join().unwrap();
    });
    assert_permits_exact(&pool, 2);
}

/// An outer job abandoned within budget (its future dropped) while its
/// permit is lent: the permit is released only once the nested job gives it
/// back, so meanwhile the pool admits nobody past its bound, and afterwards
/// it has exactly its bound.
#[test]
fn an_outer_job_abandoned_while_its_permit_is_lent_releases_it_once_the_nested_job_ends() {
    let pool = BlockingPool::builder()
        .name("loan-abandoned")
        .max_threads(1)
        .queue_capacity(1)
        .max_abandoned(4)
        .build()
        .unwrap();
    let (go, nested_gate, blocker_gate) = (Gate::new(), Gate::new(), Gate::new());
    let (started, outer_started) = mpsc::channel();
    let (nested_running, nested_runs) = mpsc::channel();
    let (drop_outer, dropped) = tokio::sync::oneshot::channel::<()>();
    let outer = {
        let (p, pool, go, g) = (pool.clone(), pool.clone(), go.clone(), nested_gate.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let call = pool.offload(move || {
                let _ = started.send(());
                go.wait(Duration::from_secs(20));
                colorseam::block_on(async move {
                    p.offload(move || {
                        let _ = nested_running.send(());
                        g.wait(Duration::from_secs(20));
                    })
                    .await
                })
            });
            runtime.block_on(async move {
                tokio::select! {
                    result = call => panic!("the outer job ended first: {result:?}"),
                    _ = dropped => {}
                }
            });
        })
    };
    outer_started.recv_timeout(LIMIT).unwrap();
    let blocker = {
        let (pool, g) = (pool.clone(), blocker_gate.clone());
        std::thread::spawn(move || {
            colorseam::block_on(pool.offload(move || g.wait(Duration::from_secs(20))))
                .unwrap()
                .unwrap()
        })
    };
    assert!(eventually(LIMIT, || pool.metrics().queue_depth == 1));
    // Full: the outer job runs, the blocker is queued. The nested offload
    // borrows the outer job's permit, and runs.
    go.open();
    nested_runs.recv_timeout(LIMIT).unwrap();
    drop_outer.send(()).unwrap();
    within(LIMIT, "dropping the outer call", move || {
        outer.join().unwrap()
    });
    assert!(eventually(LIMIT, || pool
        .metrics()
        .outcomes
        .cancelled_running
        >= 1));
    let refused = colorseam::block_on(pool.try_offload(|| ())).unwrap();
    assert!(
        refused.as_ref().is_err_and(colorseam::Error::is_saturated),
        "the abandoned outer job's lent permit was released twice: {refused:?}"
    );
    nested_gate.open();
    blocker_gate.open();
    within(LIMIT, "the blocker", move || blocker.join().unwrap());
    assert!(eventually(LIMIT, || {
        let m = pool.metrics();
        m.threads.abandoned == 0 && m.threads.busy == 0
    }));
    assert_permits_exact(&pool, 2);
}

/// Sandwiches and plain jobs from many threads, some outer jobs timing out
/// while their nested jobs run, some nested futures dropped: every call
/// resolves, and the permits come back exactly.
#[test]
fn mixed_sandwiches_timeouts_and_drops_leave_the_permit_count_exact() {
    let pool = BlockingPool::builder()
        .name("loan-mixed")
        .max_threads(2)
        .queue_capacity(2)
        .max_abandoned(8)
        .build()
        .unwrap();
    let resolved = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..4u64)
        .map(|caller| {
            let (p, resolved) = (pool.clone(), resolved.clone());
            std::thread::spawn(move || {
                for round in 0..25u64 {
                    let q = p.clone();
                    let kind = (caller + round) % 3;
                    let outer = move || {
                        colorseam::block_on(async move {
                            let nested = q.offload(move || {
                                std::thread::sleep(Duration::from_millis(kind * 3));
                                round
                            });
                            if kind == 2 {
                                // Dropped while queued or running.
                                let _ =
                                    tokio::time::timeout(Duration::from_millis(1), nested).await;
                                0
                            } else {
                                nested.await.unwrap_or(0)
                            }
                        })
                        .unwrap_or(0)
                    };
                    let result = if kind == 1 {
                        colorseam::block_on(p.offload_timeout(outer, Duration::from_millis(2)))
                    } else {
                        colorseam::block_on(p.offload(outer))
                    };
                    // Each call resolves once, as a value or an error.
                    let _ = result.unwrap();
                    resolved.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    within(LIMIT, "mixed sandwiches", move || {
        for caller in callers {
            caller.join().unwrap();
        }
    });
    assert_eq!(resolved.load(Ordering::Relaxed), 100);
    assert!(eventually(LIMIT, || {
        let m = pool.metrics();
        m.threads.busy == 0 && m.threads.abandoned == 0 && m.queue_depth == 0
    }));
    assert_permits_exact(&pool, 4);
}
