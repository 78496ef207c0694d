//! Abandoned threads are replaced up to `max_abandoned`; the pool never
//! holds more than `max_threads + max_abandoned` OS threads; past that, new
//! work waits or is refused with an error that says how many are stuck.

mod common;

use std::time::{Duration, Instant};

use colorseam::{BlockingPool, Phase};
use common::{Gate, eventually_async, os_threads_named};

const LONG: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_dependency_does_not_eat_the_pool_while_the_abandon_budget_lasts() {
    let pool = BlockingPool::builder()
        .name("ab-repl")
        .max_threads(2)
        .max_abandoned(2)
        .build()
        .unwrap();
    let hang = Gate::new();
    // Two calls hang and time out: both threads are abandoned and replaced.
    for _ in 0..2 {
        let hang = hang.clone();
        let err = pool
            .offload_timeout(move || hang.wait(LONG), Duration::from_millis(30))
            .await
            .unwrap_err();
        assert_eq!(err.phase(), Some(Phase::Running));
    }
    assert_eq!(pool.metrics().threads.abandoned, 2);
    // Full capacity remains: two jobs still run side by side.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let both: Vec<_> = (0..2)
        .map(|_| {
            let barrier = barrier.clone();
            pool.offload_timeout(move || barrier.wait().is_leader(), LONG)
        })
        .collect();
    let mut leaders = 0;
    for job in both {
        leaders += usize::from(job.await.unwrap());
    }
    assert_eq!(
        leaders, 1,
        "both ran at once on the two replacement threads"
    );
    assert!(os_threads_named("ab-repl-") <= 4);
    assert!(pool.metrics().threads.total <= 4);
    hang.open();
    assert!(eventually_async(LONG, || pool.metrics().threads.abandoned == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_abandon_budget_new_work_is_refused_with_the_number_of_stuck_threads() {
    let pool = BlockingPool::builder()
        .name("ab-cap")
        .max_threads(2)
        .max_abandoned(1)
        .queue_capacity(1)
        .build()
        .unwrap();
    let hang = Gate::new();
    // Three hung calls: one is abandoned within budget (replaced), the other
    // two are abandoned beyond it and keep their slots.
    for _ in 0..3 {
        let hang = hang.clone();
        assert!(
            pool.offload_timeout(move || hang.wait(LONG), Duration::from_millis(30))
                .await
                .unwrap_err()
                .is_timeout()
        );
    }
    let m = pool.metrics();
    assert_eq!(m.threads.abandoned, 3);
    assert_eq!(m.threads.total, 3, "max_threads 2 + max_abandoned 1");
    assert_eq!(os_threads_named("ab-cap-"), 3);

    // One queue slot remains; fill it, then the next call is refused.
    let queued = pool.offload(|| "queued");
    let err = pool.try_offload(|| ()).await.unwrap_err();
    assert!(err.is_saturated(), "{err}");
    assert_eq!(err.stuck_threads(), 3);
    assert!(
        err.to_string()
            .contains("3 threads are stuck in abandoned calls"),
        "{err}"
    );

    // A waiting call times out in the queue phase, and says why.
    let started = Instant::now();
    let err = pool
        .offload_timeout(|| (), Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(err.phase(), Some(Phase::WaitingForRoom));
    assert_eq!(err.stuck_threads(), 3);

    // Never more than max_threads + max_abandoned OS threads.
    assert!(os_threads_named("ab-cap-") <= 3);
    hang.open();
    assert_eq!(queued.await.unwrap(), "queued");
    assert!(eventually_async(LONG, || pool.metrics().threads.abandoned == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_returning_from_an_abandoned_call_rejoins_or_exits_within_the_bound() {
    let pool = BlockingPool::builder()
        .name("ab-back")
        .max_threads(1)
        .max_abandoned(4)
        .keep_alive(Duration::from_millis(50))
        .build()
        .unwrap();
    let hang = Gate::new();
    for _ in 0..4 {
        let hang = hang.clone();
        let _ = pool
            .offload_timeout(move || hang.wait(LONG), Duration::from_millis(20))
            .await;
    }
    // Four abandoned plus one replacement: the cap of 1 + 4.
    pool.offload(|| ()).await.unwrap();
    assert_eq!(pool.metrics().threads.total, 5);
    hang.open();
    // All come back; surplus threads exit; the bound holds throughout.
    assert!(
        eventually_async(LONG, || {
            let t = pool.metrics().threads;
            assert!(t.total <= 5);
            t.abandoned == 0 && t.total <= 1
        })
        .await
    );
    assert!(eventually_async(LONG, || os_threads_named("ab-back-") <= 1).await);
}
