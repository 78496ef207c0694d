//! Offloads composed with tokio's own tools (`JoinSet`, `tokio::spawn` and
//! `abort`, `select!`, `tokio::time::timeout`), as the README shows: each
//! resolves as tokio's futures do, and the pool counts what dropping a
//! call did to its job.

mod common;

use std::time::Duration;

use colorseam::BlockingPool;
use common::{Gate, eventually_async};
use tokio::task::JoinSet;

fn pool(name: &str) -> BlockingPool {
    BlockingPool::builder()
        .name(name)
        .max_threads(1)
        .max_abandoned(4)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_join_set_of_offloads_yields_every_result() {
    let pool = pool("compose-joinset");
    let mut set = JoinSet::new();
    for i in 0..50u64 {
        set.spawn(pool.offload(move || i));
    }
    let mut sum = 0;
    while let Some(joined) = set.join_next().await {
        sum += joined.unwrap().unwrap();
    }
    assert_eq!(sum, (0..50).sum::<u64>());
    assert_eq!(pool.metrics().outcomes.completed, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_a_spawned_offload_cancels_a_queued_job_and_abandons_a_running_one() {
    let pool = pool("compose-abort");
    let gate = Gate::new();
    let (started_tx, started) = std::sync::mpsc::channel();
    let g = gate.clone();
    let running = tokio::spawn(pool.offload(move || {
        let _ = started_tx.send(());
        g.wait(Duration::from_secs(20));
    }));
    tokio::task::spawn_blocking(move || started.recv_timeout(Duration::from_secs(20)))
        .await
        .unwrap()
        .unwrap();
    let ran_queued = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = ran_queued.clone();
    let queued =
        tokio::spawn(pool.offload(move || r.store(true, std::sync::atomic::Ordering::SeqCst)));
    assert!(eventually_async(Duration::from_secs(20), || pool.metrics().queue_depth == 1).await);
    queued.abort();
    assert!(queued.await.unwrap_err().is_cancelled());
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    assert!(
        eventually_async(Duration::from_secs(20), || {
            let o = pool.metrics().outcomes;
            o.cancelled_queued == 1 && o.cancelled_running == 1
        })
        .await,
        "{:?}",
        pool.metrics()
    );
    gate.open();
    assert!(
        eventually_async(Duration::from_secs(20), || pool.metrics().threads.abandoned
            == 0)
        .await
    );
    assert!(
        !ran_queued.load(std::sync::atomic::Ordering::SeqCst),
        "a cancelled job ran"
    );
}

#[tokio::test]
async fn tokio_timeout_around_an_offload_releases_the_caller_and_abandons_the_job() {
    let pool = pool("compose-timeout");
    let gate = Gate::new();
    let g = gate.clone();
    let started = std::time::Instant::now();
    let late = tokio::time::timeout(
        Duration::from_millis(20),
        pool.offload(move || g.wait(Duration::from_secs(20))),
    )
    .await;
    assert!(late.is_err());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        eventually_async(Duration::from_secs(20), || {
            let o = pool.metrics().outcomes;
            o.cancelled_running + o.cancelled_queued == 1
        })
        .await
    );
    gate.open();
}

#[tokio::test]
async fn select_on_a_borrowed_offload_keeps_other_branches_running() {
    let pool = pool("compose-select");
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let mut call = pool.offload(move || rx.recv_timeout(Duration::from_secs(20)).is_ok());
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    let mut n = 0;
    let mut tx = Some(tx);
    let got = loop {
        tokio::select! {
            got = &mut call => break got.unwrap(),
            _ = ticks.tick() => {
                n += 1;
                if n == 5 {
                    let _ = tx.take().map(|tx| tx.send(()));
                }
            }
        }
    };
    assert!(got);
    assert!(n >= 5);
}
