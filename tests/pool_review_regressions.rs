//! Regression tests for bugs found in review of the pool: each failed
//! before its fix.

mod common;

use std::time::{Duration, Instant};

use colorseam::pool::ShutdownOptions;
use colorseam::{BlockingPool, Phase};
use common::{Gate, eventually_async};

const LONG: Duration = Duration::from_secs(20);

/// A caller timing out during a run-queued shutdown took the only thread
/// out of the active count, and nothing replaced it: queued work was
/// stranded and its caller waited forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_work_still_runs_when_the_running_call_is_abandoned_during_shutdown() {
    let pool = BlockingPool::builder()
        .name("rg-strand")
        .max_threads(1)
        .max_abandoned(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let hung = {
        let gate = gate.clone();
        pool.offload_timeout(
            move || {
                let _ = started_tx.send(());
                gate.wait(LONG);
            },
            Duration::from_millis(100),
        )
    };
    started_rx.await.unwrap();
    let queued = tokio::spawn(pool.offload(|| "ran"));
    let shutdown = tokio::spawn(pool.shutdown(ShutdownOptions::run_queued(LONG)));
    assert!(hung.await.unwrap_err().is_timeout());
    let value = tokio::time::timeout(Duration::from_secs(10), queued)
        .await
        .expect("the queued job was not stranded")
        .unwrap()
        .unwrap();
    assert_eq!(value, "ran");
    let report = shutdown.await.unwrap();
    assert_eq!(report.completed, 1, "{report:?}");
    gate.open();
}

/// At the shutdown deadline, queued work was neither run nor cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_work_is_cancelled_at_the_shutdown_deadline() {
    let pool = BlockingPool::builder()
        .name("rg-late")
        .max_threads(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let hung = {
        let gate = gate.clone();
        tokio::spawn(pool.offload(move || {
            let _ = started_tx.send(());
            gate.wait(LONG);
        }))
    };
    started_rx.await.unwrap();
    let queued = tokio::spawn(pool.offload(|| "never"));
    let report = pool
        .shutdown(ShutdownOptions::run_queued(Duration::from_millis(100)))
        .await;
    assert_eq!((report.abandoned, report.cancelled), (1, 1), "{report:?}");
    let err = queued.await.unwrap().unwrap_err();
    assert!(err.is_shutdown());
    assert_eq!(err.phase(), Some(Phase::Queued));
    let err = hung.await.unwrap().unwrap_err();
    assert_eq!(err.phase(), Some(Phase::Running));
    gate.open();
}

/// A second, longer shutdown was not told when the first abandoned the
/// running work, and waited for the hung job itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shutdown_waiter_learns_when_a_shorter_one_abandons_the_rest() {
    let pool = BlockingPool::builder()
        .name("rg-notify")
        .max_threads(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    pool.detach(move || g.wait(LONG)).unwrap();
    assert!(eventually_async(LONG, || pool.metrics().threads.busy == 1).await);
    let started = Instant::now();
    let long = tokio::spawn(pool.shutdown(ShutdownOptions::run_queued(Duration::from_secs(15))));
    let short = pool
        .shutdown(ShutdownOptions::run_queued(Duration::from_millis(50)))
        .await;
    assert_eq!(short.abandoned, 1);
    let long = long.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(long.abandoned, 0, "{long:?}");
    gate.open();
}

/// A value whose `Drop` panics, dropped on the worker after its caller went
/// away, killed the worker with its slot still counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_drop_of_an_unread_value_does_not_cost_the_pool_its_thread() {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("bomb dropped");
        }
    }
    let pool = BlockingPool::builder()
        .name("rg-bomb")
        .max_threads(1)
        .build()
        .unwrap();
    for _ in 0..5 {
        let gate = Gate::new();
        let g = gate.clone();
        let running = pool.offload(move || {
            g.wait(LONG);
            Bomb
        });
        // Abandoned while running: the value is dropped on the worker.
        drop(running);
        gate.open();
    }
    let value = tokio::time::timeout(Duration::from_secs(10), pool.offload(|| 7))
        .await
        .expect("the only thread survived five panicking drops");
    assert_eq!(value.unwrap(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_while_waiting_for_room_has_its_own_counter() {
    let pool = BlockingPool::builder()
        .name("rg-count")
        .max_threads(1)
        .queue_capacity(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let held = common::hold(&pool, 2, &gate);
    let err = pool
        .offload_timeout(|| (), Duration::from_millis(30))
        .await
        .unwrap_err();
    assert_eq!(err.phase(), Some(Phase::WaitingForRoom));
    let outcomes = pool.metrics().outcomes;
    assert_eq!(outcomes.timed_out_waiting_for_room, 1);
    assert_eq!(outcomes.timed_out_queued, 0);
    gate.open();
    for h in held {
        h.await.unwrap();
    }
}
