//! async → sync → async sandwiches: a pool thread that waits in `block_on`
//! for async code which offloads again to the same, saturated pool runs the
//! nested job itself instead of deadlocking.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_offload_to_the_same_saturated_pool_completes_through_block_on() {
    let pool = saturated_pool("nest-bo");
    let inner_pool = pool.clone();
    // The outer job holds the only thread; a second job fills the queue.
    let outer = pool.offload_timeout(
        move || {
            colorseam::block_on(async move {
                let nested =
                    inner_pool.offload(|| std::thread::current().name().map(str::to_owned));
                nested.await
            })
        },
        LONG,
    );
    let gate = Gate::new();
    let g = gate.clone();
    let queued = pool.offload(move || g.wait(LONG));
    let ran_on = tokio::time::timeout(Duration::from_secs(10), outer)
        .await
        .expect("the sandwich did not deadlock")
        .expect("outer offload")
        .expect("block_on")
        .expect("nested offload")
        .unwrap();
    assert!(ran_on.starts_with("nest-bo-"), "ran on {ran_on}");
    gate.open();
    queued.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_offload_made_inside_block_on_timeout_also_completes() {
    let pool = saturated_pool("nest-bt");
    let inner_pool = pool.clone();
    let outer = pool.offload_timeout(
        move || {
            colorseam::block_on_timeout(
                async move {
                    // This future runs on the async caller's runtime, not on
                    // the pool thread; the nested job still finds its way back.
                    let a = inner_pool.offload(|| 20).await?;
                    let b = inner_pool.offload(|| 22).await?;
                    Ok::<_, colorseam::Error>(a + b)
                },
                Duration::from_secs(10),
            )
        },
        LONG,
    );
    let gate = Gate::new();
    let g = gate.clone();
    let queued = pool.offload(move || g.wait(LONG));
    let sum = tokio::time::timeout(Duration::from_secs(15), outer)
        .await
        .expect("no deadlock")
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(sum, 42);
    gate.open();
    queued.await.unwrap();
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
    // The nested job ran on the outer job's thread; no thread was abandoned.
    assert!(
        eventually_async(LONG, || {
            let t = pool.metrics().threads;
            t.abandoned == 0 && t.busy == 0 && t.total == 1
        })
        .await
    );
    assert_eq!(pool.offload(|| 1).await.unwrap(), 1);
}
