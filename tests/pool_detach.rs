//! Detached work fails loudly: its failures reach the error sink and are
//! counted. Nothing fails silently.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use colorseam::BlockingPool;

mod common;

/// A job that fails by panicking (typed `()` so it is a valid detached job).
fn explode(message: &'static str) {
    panic!("{message}")
}

fn pool_with_sink(name: &str) -> (BlockingPool, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let pool = BlockingPool::builder()
        .name(name)
        .max_threads(2)
        .error_sink(move |e| sink.lock().unwrap().push(e.to_string()))
        .build()
        .unwrap();
    (pool, seen)
}

fn wait_for(seen: &Arc<Mutex<Vec<String>>>, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = seen.lock().unwrap().clone();
        if now.len() >= n || std::time::Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_detached_panic_reaches_the_error_sink_and_is_counted() {
    let (pool, seen) = pool_with_sink("dt-panic");
    pool.detach(|| explode("nobody awaits me")).unwrap();
    let seen = wait_for(&seen, 1);
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].contains("panicked with `nobody awaits me`"),
        "{}",
        seen[0]
    );
    assert!(seen[0].contains("dt-panic"), "{}", seen[0]);
    assert_eq!(pool.metrics().outcomes.detached_failures, 1);
}

#[test]
fn a_detached_error_reaches_the_error_sink_with_its_source() {
    let (pool, seen) = pool_with_sink("dt-err");
    pool.detach(|| Err::<(), _>(std::io::Error::other("disk full")))
        .unwrap();
    pool.detach(|| Ok::<(), std::io::Error>(())).unwrap();
    pool.detach(|| ()).unwrap();
    let seen = wait_for(&seen, 1);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(seen.len(), 1, "only the failure is reported: {seen:?}");
    assert!(seen[0].contains("disk full"), "{}", seen[0]);
    assert_eq!(pool.metrics().outcomes.detached_failures, 1);
}

#[test]
fn a_panicking_error_sink_is_contained() {
    let pool = BlockingPool::builder()
        .name("dt-sink")
        .max_threads(1)
        .error_sink(|_| panic!("the sink itself is broken"))
        .build()
        .unwrap();
    pool.detach(|| explode("first")).unwrap();
    // The pool still works, on its only thread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(pool.offload(|| 1)).unwrap(), 1);
    assert_eq!(pool.metrics().outcomes.detached_failures, 1);
}

#[test]
fn detached_work_cancelled_by_shutdown_is_reported() {
    let (pool, seen) = pool_with_sink("dt-shut");
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    // Two threads, two blockers: the third job is surely still queued.
    for _ in 0..2 {
        let started_tx = started_tx.clone();
        pool.detach(move || {
            let _ = started_tx.send(());
            std::thread::sleep(Duration::from_millis(200));
        })
        .unwrap();
    }
    pool.detach(|| ()).unwrap();
    started_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    started_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    let report = pool.shutdown_blocking(colorseam::pool::ShutdownOptions::cancel_queued(
        Duration::from_secs(20),
    ));
    assert_eq!(report.cancelled, 1, "{report:?}");
    assert_eq!(report.completed, 2, "{report:?}");
    assert_eq!(report.abandoned, 0, "{report:?}");
    let seen = wait_for(&seen, 1);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].contains("cancelled by shutdown"), "{seen:?}");
}

#[test]
fn detach_on_a_full_pool_is_refused_at_once() {
    let pool = BlockingPool::builder()
        .name("dt-full")
        .max_threads(1)
        .queue_capacity(1)
        .build()
        .unwrap();
    let gate = Arc::new(std::sync::Barrier::new(2));
    let g = gate.clone();
    pool.detach(move || {
        g.wait();
    })
    .unwrap();
    pool.detach(|| ()).unwrap();
    let err = pool.detach(|| ()).unwrap_err();
    assert!(err.is_saturated());
    gate.wait();
}

#[test]
fn a_detached_panic_is_counted_as_panicked_not_completed() {
    let (pool, seen) = pool_with_sink("dt-count");
    pool.detach(|| explode("counted right")).unwrap();
    pool.detach(|| -> () { std::panic::resume_unwind(Box::new(5u8)) })
        .unwrap();
    pool.detach(|| ()).unwrap();
    let seen = wait_for(&seen, 2);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter()
            .any(|s| s.contains("panicked with `counted right`")),
        "{seen:?}"
    );
    // A payload that is not a string has no message to show.
    assert!(
        seen.iter()
            .any(|s| s.contains("panicked after") && !s.contains("Box<dyn Any>")),
        "{seen:?}"
    );
    assert!(common::eventually(Duration::from_secs(20), || {
        let outcomes = pool.metrics().outcomes;
        outcomes.completed + outcomes.panicked == 3
    }));
    let outcomes = pool.metrics().outcomes;
    assert_eq!(outcomes.panicked, 2, "{outcomes:?}");
    assert_eq!(outcomes.completed, 1, "{outcomes:?}");
    assert_eq!(outcomes.detached_failures, 2, "{outcomes:?}");
}
