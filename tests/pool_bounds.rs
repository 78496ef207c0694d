//! The pool's bounds hold: at most `max_threads` jobs run, at most
//! `queue_capacity` wait, and a full queue makes callers wait or refuses them.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use colorseam::{BlockingPool, Phase};
use common::Gate;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_than_max_threads_jobs_run_at_once() {
    let pool = BlockingPool::builder()
        .name("bound-run")
        .max_threads(3)
        .queue_capacity(100)
        .build()
        .unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let results = pool
        .batch((0..40).map(|_| {
            let (running, peak) = (running.clone(), peak.clone());
            move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
                running.fetch_sub(1, Ordering::SeqCst);
            }
        }))
        .max_in_flight(40)
        .await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(
        peak.load(Ordering::SeqCst),
        3,
        "all three threads were used, never more"
    );
    assert!(pool.metrics().threads.peak <= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_try_offload_at_once_with_a_saturation_error() {
    let pool = BlockingPool::builder()
        .name("bound-rej")
        .max_threads(1)
        .queue_capacity(2)
        .build()
        .unwrap();
    let gate = Gate::new();
    let held = common::hold(&pool, 3, &gate);
    // One running, two queued: the pool is full.
    let err = pool.try_offload(|| ()).await.unwrap_err();
    assert!(err.is_saturated(), "{err}");
    assert_eq!(err.phase(), Some(Phase::WaitingForRoom));
    assert_eq!(err.pool(), "bound-rej");
    assert_eq!(pool.metrics().outcomes.rejected, 1);
    common::release(&gate, held).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_when_full_makes_offload_refuse_instead_of_wait() {
    let pool = BlockingPool::builder()
        .name("bound-rwf")
        .max_threads(1)
        .queue_capacity(1)
        .reject_when_full(true)
        .build()
        .unwrap();
    let gate = Gate::new();
    let held = common::hold(&pool, 2, &gate);
    assert!(pool.offload(|| ()).await.unwrap_err().is_saturated());
    common::release(&gate, held).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_makes_offload_wait_for_room_and_then_run() {
    let pool = BlockingPool::builder()
        .name("bound-wait")
        .max_threads(1)
        .queue_capacity(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let held = common::hold(&pool, 2, &gate);
    let waiting = tokio::spawn(pool.offload(|| "got room"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiting.is_finished(),
        "the third call waits while the pool is full"
    );
    assert_eq!(
        pool.metrics().queue_depth,
        1,
        "the waiter is not queued past capacity"
    );
    common::release(&gate, held).await;
    assert_eq!(waiting.await.unwrap().unwrap(), "got room");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_room_counts_against_the_deadline() {
    let pool = BlockingPool::builder()
        .name("bound-dl")
        .max_threads(1)
        .queue_capacity(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let held = common::hold(&pool, 2, &gate);
    let ran = Arc::new(AtomicUsize::new(0));
    let ran2 = ran.clone();
    let started = std::time::Instant::now();
    let err = pool
        .offload_timeout(
            move || {
                ran2.fetch_add(1, Ordering::SeqCst);
            },
            Duration::from_millis(50),
        )
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(err.is_timeout(), "{err}");
    assert_eq!(err.phase(), Some(Phase::WaitingForRoom));
    common::release(&gate, held).await;
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "a call that never got room never runs"
    );
}
