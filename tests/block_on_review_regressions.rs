//! Regression tests for bugs found in review of `block_on` and the bridge:
//! each hung, aborted or misreported before its fix.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use colorseam::{BlockingPool, CallerContext};
use common::eventually;

const WATCHDOG: Duration = Duration::from_secs(20);

/// Runs `f` on a thread and fails the test if it does not return in time.
fn within<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(WATCHDOG)
        .expect("returned within the watchdog's limit (a hang otherwise)")
}

fn one_thread_pool(name: &str) -> BlockingPool {
    BlockingPool::builder()
        .name(name)
        .max_threads(1)
        .queue_capacity(4)
        .build()
        .unwrap()
}

/// A nested job's own `block_on` swallowed a wake meant for the outer
/// future, which then parked forever.
#[test]
fn a_nested_block_on_does_not_swallow_the_outer_futures_wakeup() {
    let pool = one_thread_pool("rv-wake");
    let p = pool.clone();
    let value = within(move || {
        colorseam::block_on(p.clone().offload(move || {
            colorseam::block_on(async move {
                let _nested = p.offload(|| {
                    colorseam::block_on(async {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    })
                });
                // Fires while the nested job's block_on waits.
                tokio::time::sleep(Duration::from_millis(20)).await;
                "outer woke"
            })
        }))
    });
    assert_eq!(value.unwrap().unwrap().unwrap(), "outer woke");
}

/// A job run from an inbox that made an offload outside its own block_on
/// sent it to the outer inbox, which nobody drains while the job runs.
#[test]
fn an_offload_made_by_a_nested_job_outside_block_on_still_runs() {
    let pool = BlockingPool::builder()
        .name("rv-inbox")
        .max_threads(2)
        .build()
        .unwrap();
    let p = pool.clone();
    let value = within(move || {
        colorseam::block_on(p.clone().offload(move || {
            colorseam::block_on(async move {
                let p2 = p.clone();
                p.offload(move || {
                    let made_outside = p2.offload(|| 5);
                    colorseam::block_on(made_outside)
                })
                .await
            })
        }))
    });
    assert_eq!(
        value.unwrap().unwrap().unwrap().unwrap().unwrap().unwrap(),
        5
    );
}

/// `block_on(pool.offload(f))` from a job of the same saturated pool: the
/// offload was queued before the thread began to wait for it.
#[test]
fn block_on_of_an_offload_made_before_it_completes_on_a_saturated_pool() {
    let pool = one_thread_pool("rv-before");
    let p = pool.clone();
    let value = within(move || {
        colorseam::block_on(p.clone().offload(move || {
            let queued_first = p.offload(|| "ran inline");
            colorseam::block_on(queued_first)
        }))
    });
    assert_eq!(value.unwrap().unwrap().unwrap().unwrap(), "ran inline");
    assert!(eventually(WATCHDOG, || pool.metrics().queue_depth == 0));
}

/// A future whose `Drop` panics escaped `block_on` as a panic.
#[test]
fn a_future_that_panics_when_dropped_is_an_error_not_a_panic() {
    struct PanicsOnDrop;
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            panic!("dropped badly");
        }
    }
    let err = colorseam::block_on(async {
        let _guard = PanicsOnDrop;
        std::future::ready(()).await;
        1
    });
    // The value was produced, but dropping the future panicked.
    let err = err.unwrap_err();
    assert_eq!(err.panic_message(), Some("dropped badly"));
}

/// A future that keeps waking itself starved the nested job it waited for.
#[test]
fn a_self_waking_future_does_not_starve_its_nested_job() {
    let pool = one_thread_pool("rv-starve");
    let p = pool.clone();
    let value = within(move || {
        colorseam::block_on(p.clone().offload(move || {
            colorseam::block_on(async move {
                let mut nested = std::pin::pin!(p.offload(|| 3));
                loop {
                    if let std::task::Poll::Ready(v) = futures::poll!(nested.as_mut()) {
                        break v;
                    }
                    tokio::task::yield_now().await;
                }
            })
        }))
    });
    assert_eq!(value.unwrap().unwrap().unwrap().unwrap(), 3);
}

/// After a `block_on_timeout` deadline, a nested job added late went to a
/// dead inbox: `queued` leaked and its offload never resolved.
#[test]
fn a_nested_job_added_after_the_deadline_goes_to_the_pools_workers() {
    let pool = BlockingPool::builder()
        .name("rv-late")
        .max_threads(2)
        .build()
        .unwrap();
    let p = pool.clone();
    let resolved = Arc::new(AtomicUsize::new(0));
    let r = resolved.clone();
    let outcome = within(move || {
        colorseam::block_on(p.clone().offload(move || {
            colorseam::block_on_timeout(
                async move {
                    // Blocks past the deadline, then offloads and hands the
                    // offload to a task that outlives this future.
                    std::thread::sleep(Duration::from_millis(150));
                    let late = p.offload(|| 9);
                    tokio::spawn(async move {
                        if late.await.ok() == Some(9) {
                            r.fetch_add(1, Ordering::SeqCst);
                        }
                    });
                },
                Duration::from_millis(20),
            )
        }))
    });
    assert!(outcome.unwrap().unwrap().unwrap_err().is_timeout());
    assert!(eventually(WATCHDOG, || resolved.load(Ordering::SeqCst) == 1));
    assert!(eventually(WATCHDOG, || pool.metrics().queue_depth == 0));
}

/// A plain thread that entered a current-thread runtime nobody drives:
/// `block_on` polled against it and its timers never fired.
#[test]
fn block_on_under_an_entered_but_undriven_current_thread_runtime_works() {
    let value = within(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _entered = rt.enter();
        let a = colorseam::block_on(async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            1
        });
        let b = colorseam::block_on_timeout(
            async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                2
            },
            Duration::from_secs(5),
        );
        (a.unwrap(), b.unwrap())
    });
    assert_eq!(value, (1, 2));
}

/// `ForSync::connect` from a `spawn_blocking` thread built the resource on
/// the caller's runtime, not the bridge.
#[test]
fn for_sync_always_builds_and_calls_on_the_bridge() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let names = rt.block_on(async {
        tokio::task::spawn_blocking(|| {
            let adapter = colorseam::adapter::ForSync::connect("rv-bridge", async {
                std::thread::current().name().map(str::to_owned)
            })
            .unwrap();
            let in_call = adapter
                .call(|_| async { std::thread::current().name().map(str::to_owned) })
                .unwrap();
            (adapter, in_call)
        })
        .await
        .unwrap()
    });
    let (adapter, in_call) = names;
    assert_eq!(
        adapter
            .call(|made_on| async move { (*made_on).clone() })
            .unwrap()
            .as_deref(),
        Some("colorseam-bridge")
    );
    assert_eq!(in_call.as_deref(), Some("colorseam-bridge"));
}

/// A pool job driving a runtime of its own was reported as a pool thread,
/// where blocking is fine.
#[test]
fn context_inside_a_runtime_driven_by_a_job_is_async() {
    let pool = BlockingPool::builder().name("rv-ctx").build().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seen = rt
        .block_on(async {
            pool.offload(|| {
                let inner = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                inner.block_on(async { colorseam::context() })
            })
            .await
        })
        .unwrap();
    assert!(seen.is_async(), "{seen:?}");
    assert!(matches!(seen, CallerContext::AsyncWorker { .. }));
}

/// `block_on_in_place` treated the future's own panic like its refusal.
#[test]
fn block_on_in_place_reports_the_futures_own_panic_as_a_panic() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let err = rt.block_on(async {
        tokio::spawn(async {
            colorseam::block_on_in_place(async {
                if true {
                    panic!("visible");
                }
            })
        })
        .await
        .unwrap()
    });
    let err = err.unwrap_err();
    assert!(err.is_panic(), "{err}");
    assert_eq!(err.panic_message(), Some("visible"));
}
