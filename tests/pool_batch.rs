//! Batches: bounded parallelism, results in input order, one `Result` per
//! item; the fail-fast variant cancels the rest on the first error.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use colorseam::BlockingPool;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_returns_one_result_per_item_in_input_order_and_loses_no_error() {
    let pool = BlockingPool::builder()
        .name("bt-order")
        .max_threads(4)
        .build()
        .unwrap();
    let results = pool
        .batch((0..50u64).map(|i| {
            move || {
                // Later items finish first, so order must come from the batch.
                std::thread::sleep(Duration::from_micros((50 - i) * 40));
                if i % 10 == 7 {
                    panic!("item {i} failed");
                }
                i * 2
            }
        }))
        .await;
    assert_eq!(results.len(), 50);
    for (i, r) in results.iter().enumerate() {
        if i % 10 == 7 {
            let e = r.as_ref().unwrap_err();
            assert_eq!(e.panic_message(), Some(format!("item {i} failed").as_str()));
        } else {
            assert_eq!(*r.as_ref().unwrap(), i as u64 * 2);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_never_runs_more_than_its_limit_at_once() {
    let pool = BlockingPool::builder()
        .name("bt-limit")
        .max_threads(8)
        .build()
        .unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let results = pool
        .batch((0..30).map(|_| {
            let (running, peak) = (running.clone(), peak.clone());
            move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(3));
                running.fetch_sub(1, Ordering::SeqCst);
            }
        }))
        .max_in_flight(2)
        .await;
    assert!(results.iter().all(Result::is_ok));
    assert!(
        peak.load(Ordering::SeqCst) <= 2,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_fail_fast_returns_values_in_order_when_all_succeed() {
    let pool = BlockingPool::builder().name("bt-ok").build().unwrap();
    let values = pool
        .batch_fail_fast((0..20u32).map(|i| move || i + 1))
        .await
        .unwrap();
    assert_eq!(values, (1..=20).collect::<Vec<_>>());
    let empty: Vec<u32> = pool
        .batch_fail_fast(Vec::<fn() -> u32>::new())
        .await
        .unwrap();
    assert!(empty.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_fail_fast_stops_at_the_first_error_and_never_starts_the_rest() {
    let pool = BlockingPool::builder()
        .name("bt-fail")
        .max_threads(2)
        .build()
        .unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    // Jobs after the failing one hold their threads until the test has seen
    // the error, so "never started" does not depend on timing.
    let after_failure = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let err = pool
        .batch_fail_fast((0..100u32).map(|i| {
            let (started, after_failure) = (started.clone(), after_failure.clone());
            move || {
                started.fetch_add(1, Ordering::SeqCst);
                if i == 3 {
                    panic!("row 3 is corrupt");
                }
                if i > 3 {
                    let (lock, cv) = &*after_failure;
                    let open = lock.lock().unwrap();
                    let _ = cv
                        .wait_timeout_while(open, Duration::from_secs(20), |open| !*open)
                        .unwrap();
                }
                i
            }
        }))
        .max_in_flight(2)
        .await
        .unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.panic_message(), Some("row 3 is corrupt"));
    let ran = started.load(Ordering::SeqCst);
    *after_failure.0.lock().unwrap() = true;
    after_failure.1.notify_all();
    assert!(
        ran <= 6,
        "only jobs 0-3 and at most two after them started: {ran}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        ran,
        "nothing starts after the error"
    );
}
