//! async → sync → async sandwiches: a pool thread that waits in `block_on`
//! for async code which offloads again to the same pool. The nested job is
//! queued like any other; when no other thread can take it, the waiting
//! thread runs it itself instead of deadlocking.

mod common;

use std::time::Duration;

use colorseam::BlockingPool;
use common::{Gate, eventually_async};

const LONG: Duration = Duration::from_secs(20);

fn saturated_pool(name: &str) -> BlockingPool {
    BlockingPool::builder()
        .name(name)
        .max_threads(1)
        .queue_capacity(1)
        .build()
        .unwrap()
}

/// Admission applies to nested work as to any other: with the queue full, a
/// nested offload waits for room. Here the only thread, waiting in
/// `block_on`, runs the queued job itself (nothing else could), which frees
/// the room; then it runs the nested job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_offload_to_a_full_pool_waits_for_room_like_any_other() {
    let pool = saturated_pool("nest-bo");
    let inner_pool = pool.clone();
    let filled = Gate::new();
    let release = Gate::new();
    let (f, r) = (filled.clone(), release.clone());
    // The outer job holds the only thread; a second job fills the queue.
    let outer = pool.offload_timeout(
        move || {
            f.wait(LONG);
            colorseam::block_on(async move {
                let mut nested = Box::pin(
                    inner_pool.offload(|| std::thread::current().name().map(str::to_owned)),
                );
                // The queued job holds the last permit.
                let waiting = format!("{nested:?}").contains("waiting for room");
                r.open();
                (waiting, nested.as_mut().await)
            })
        },
        LONG,
    );
    let r = release.clone();
    let queued = pool.offload(move || r.wait(LONG));
    filled.open();
    let (waited_for_room, ran_on) = tokio::time::timeout(Duration::from_secs(10), outer)
        .await
        .expect("the sandwich did not deadlock")
        .expect("outer offload")
        .expect("block_on");
    assert!(waited_for_room);
    let ran_on = ran_on.expect("nested offload").unwrap();
    assert!(ran_on.starts_with("nest-bo-"), "ran on {ran_on}");
    queued.await.unwrap();
}

/// `block_on_timeout` has a deadline, so the waiting thread never helps:
/// its nested offloads run on the pool's free workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_offload_made_inside_block_on_timeout_runs_on_a_free_worker() {
    let pool = BlockingPool::builder()
        .name("nest-bt")
        .max_threads(2)
        .queue_capacity(2)
        .build()
        .unwrap();
    let inner_pool = pool.clone();
    let outer = pool.offload_timeout(
        move || {
            let outer_thread = std::thread::current().id();
            colorseam::block_on_timeout(
                async move {
                    // This future runs on the async caller's runtime, not on
                    // the pool thread; its offloads are queued as usual.
                    let on = |v| move || (v, std::thread::current().id());
                    let (a, ta) = inner_pool.offload(on(20)).await?;
                    let (b, tb) = inner_pool.offload(on(22)).await?;
                    assert!(ta != outer_thread && tb != outer_thread);
                    Ok::<_, colorseam::Error>(a + b)
                },
                Duration::from_secs(10),
            )
        },
        LONG,
    );
    let sum = tokio::time::timeout(Duration::from_secs(15), outer)
        .await
        .expect("no deadlock")
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(sum, 42);
}

/// On a one-thread pool, `block_on_timeout` (which never helps) around a
/// nested offload times out: nothing can run the nested job meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_one_thread_pool_block_on_timeout_around_a_nested_offload_times_out() {
    let pool = saturated_pool("nest-bt1");
    let inner_pool = pool.clone();
    let outer = pool.offload_timeout(
        move || {
            colorseam::block_on_timeout(
                async move { inner_pool.offload(|| 1).await },
                Duration::from_millis(100),
            )
        },
        LONG,
    );
    let err = tokio::time::timeout(Duration::from_secs(15), outer)
        .await
        .expect("no deadlock")
        .unwrap()
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // The nested job was cancelled with its future: nothing is left queued.
    assert!(eventually_async(LONG, || pool.metrics().queue_depth == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_thread_of_a_pool_can_wait_on_nested_work_at_once() {
    let pool = BlockingPool::builder()
        .name("nest-all")
        .max_threads(3)
        .queue_capacity(3)
        .build()
        .unwrap();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
    let outers: Vec<_> = (0..3)
        .map(|i| {
            let (pool2, barrier) = (pool.clone(), barrier.clone());
            pool.offload_timeout(
                move || {
                    // All three threads are inside block_on before any nests.
                    barrier.wait();
                    colorseam::block_on(async move { pool2.offload(move || i * 10).await })
                },
                LONG,
            )
        })
        .collect();
    for (i, outer) in outers.into_iter().enumerate() {
        let value = tokio::time::timeout(Duration::from_secs(10), outer)
            .await
            .expect("no deadlock")
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(value, i * 10);
    }
    assert!(pool.metrics().threads.peak <= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_job_that_times_out_is_abandoned_without_corrupting_thread_counts() {
    let pool = saturated_pool("nest-to");
    let inner_pool = pool.clone();
    let outer = pool.offload_timeout(
        move || {
            colorseam::block_on_timeout(
                async move {
                    inner_pool
                        .offload_timeout(
                            || std::thread::sleep(Duration::from_millis(300)),
                            Duration::from_millis(20),
                        )
                        .await
                },
                Duration::from_secs(10),
            )
        },
        LONG,
    );
    let nested = outer.await.unwrap().unwrap();
    assert!(nested.unwrap_err().is_timeout());
    // The nested job timed out in the queue; no thread was abandoned.
    assert!(
        eventually_async(LONG, || {
            let t = pool.metrics().threads;
            t.abandoned == 0 && t.busy == 0 && t.total == 1
        })
        .await
    );
    assert_eq!(pool.offload(|| 1).await.unwrap(), 1);
}
