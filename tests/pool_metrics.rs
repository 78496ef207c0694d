//! `metrics()` is a plain snapshot: threads, queue depth, counters per
//! outcome, queue-wait and run-time percentiles.

use std::time::Duration;

use colorseam::BlockingPool;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_every_outcome_and_time_the_jobs() {
    let pool = BlockingPool::builder()
        .name("mx")
        .max_threads(2)
        .build()
        .unwrap();
    for _ in 0..10 {
        pool.offload(|| std::thread::sleep(Duration::from_millis(5)))
            .await
            .unwrap();
    }
    let _ = pool.offload(|| -> u8 { panic!("one") }).await;
    let _ = pool
        .offload_timeout(
            || std::thread::sleep(Duration::from_millis(400)),
            Duration::from_millis(20),
        )
        .await;
    let m = pool.metrics();
    assert_eq!(m.name, "mx");
    assert_eq!(m.outcomes.completed, 10);
    assert_eq!(m.outcomes.panicked, 1);
    assert_eq!(m.outcomes.timed_out_running, 1);
    assert_eq!(m.queue_depth, 0);
    assert_eq!(
        m.run_time.count, 11,
        "the abandoned job is timed once it returns"
    );
    assert!(
        m.run_time.p50 >= Duration::from_millis(4),
        "{:?}",
        m.run_time
    );
    assert!(m.run_time.p50 <= m.run_time.p99 && m.run_time.p99 <= m.run_time.max);
    assert_eq!(m.queue_wait.count, 12);
    assert!(m.threads.total <= 2 + 2);
    assert_eq!(m.threads.abandoned, 1);
}
