//! How a pool grows: on demand up to the core count, past it only for
//! workers that block (or run one job for a long time), and never past
//! `max_threads`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use colorseam::BlockingPool;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_trivial_jobs_runs_on_no_more_threads_than_cores_plus_two() {
    let pool = BlockingPool::builder()
        .name("growth-trivial")
        .max_threads(64)
        .queue_capacity(20_000)
        .build()
        .unwrap();
    let calls: Vec<_> = (0..20_000u64)
        .map(|i| pool.offload(move || i * 2))
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap(), i as u64 * 2);
    }
    let peak = pool.metrics().threads.peak;
    // The eager limit is the core count; a worker preempted inside a job
    // for 20 ms (a very busy machine) may add one more now and then.
    assert!(
        peak <= cores() + 2,
        "trivial jobs grew the pool to {peak} threads on {} cores",
        cores()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_that_block_get_a_thread_each_up_to_max_threads() {
    const JOBS: usize = 16;
    let pool = BlockingPool::builder()
        .name("growth-blocking")
        .max_threads(JOBS)
        .build()
        .unwrap();
    // Every job waits until all of them are running: only a thread per job
    // lets this finish, and they sleep in the OS meanwhile.
    let all_running = Arc::new(Barrier::new(JOBS));
    let started = Instant::now();
    let calls: Vec<_> = (0..JOBS)
        .map(|_| {
            let all_running = all_running.clone();
            pool.offload_timeout(
                move || {
                    all_running.wait();
                },
                Duration::from_secs(20),
            )
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    let metrics = pool.metrics();
    assert_eq!(metrics.threads.peak, JOBS);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "growth took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_that_spin_waiting_for_each_other_still_get_their_threads() {
    // Spinning jobs look busy to the OS; they get more threads only once
    // they have run long enough to count as long-running. Without that
    // rule this would spin forever on `cores` threads.
    let jobs = cores() + 2;
    let pool = BlockingPool::builder()
        .name("growth-spinning")
        .max_threads(jobs)
        .build()
        .unwrap();
    let arrived = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..jobs)
        .map(|_| {
            let arrived = arrived.clone();
            pool.offload_timeout(
                move || {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    let give_up = Instant::now() + Duration::from_secs(20);
                    while arrived.load(Ordering::SeqCst) < jobs && Instant::now() < give_up {
                        std::hint::spin_loop();
                    }
                    arrived.load(Ordering::SeqCst)
                },
                Duration::from_secs(30),
            )
        })
        .collect();
    for call in calls {
        assert_eq!(
            call.await.unwrap(),
            jobs,
            "a job gave up waiting for the others"
        );
    }
    assert_eq!(pool.metrics().threads.peak, jobs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_blocked_workers_grows_while_it_is_blocked_not_after() {
    // Two jobs hold the eager threads (on a 2-core machine) on a gate; the
    // third must start while they are still blocked.
    let pool = BlockingPool::builder()
        .name("growth-while-blocked")
        .max_threads(cores() + 1)
        .build()
        .unwrap();
    let gate = common::Gate::new();
    let held = common::hold(&pool, cores(), &gate);
    let third = pool.offload_timeout(|| "ran", Duration::from_secs(10));
    assert_eq!(third.await.unwrap(), "ran");
    assert_eq!(pool.metrics().threads.peak, cores() + 1);
    common::release(&gate, held).await;
}
