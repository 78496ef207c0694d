//! Threads start on demand and idle ones above the floor exit after the
//! keep-alive.

mod common;

use std::time::Duration;

use colorseam::BlockingPool;
use common::{eventually_async, os_threads_named};

const LONG: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_threads_above_the_floor_exit_after_the_keep_alive() {
    let pool = BlockingPool::builder()
        .name("th-keep")
        .max_threads(6)
        .min_threads(2)
        .keep_alive(Duration::from_millis(100))
        .build()
        .unwrap();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
    let jobs: Vec<_> = (0..6)
        .map(|_| {
            let barrier = barrier.clone();
            pool.offload_timeout(move || barrier.wait().is_leader(), LONG)
        })
        .collect();
    for job in jobs {
        job.await.unwrap();
    }
    assert_eq!(pool.metrics().threads.total, 6);
    assert!(eventually_async(LONG, || pool.metrics().threads.total == 2).await);
    assert!(eventually_async(LONG, || os_threads_named("th-keep-") == 2).await);
    // The floor stays, well past the keep-alive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pool.metrics().threads.total, 2);
    assert_eq!(pool.metrics().threads.idle, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_are_named_after_the_pool() {
    let pool = BlockingPool::builder().name("th-name").build().unwrap();
    let name = pool
        .offload(|| std::thread::current().name().map(str::to_owned))
        .await
        .unwrap()
        .unwrap();
    assert!(name.starts_with("th-name-"), "{name}");
}

#[test]
#[cfg(target_os = "linux")]
#[should_panic(expected = "cannot count threads")]
fn counting_threads_where_proc_is_unreadable_fails_instead_of_counting_none() {
    // A count of 0 would make every `<=` bound on it pass unchecked.
    let _ = common::os_threads_in("/proc/self/no-such-task-list", "th-");
}
