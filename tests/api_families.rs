//! The operation families are whole: `x`, `try_x` (never waits for room),
//! `x_timeout`, `x_deadline`, for the free functions on the default pool
//! and for the adapters; a cloned `ForAsync` shares one bulkhead.

mod common;

use std::time::{Duration, Instant};

use colorseam::BlockingPool;
use colorseam::adapter::{ForAsync, ThreadBound};
use common::Gate;

#[tokio::test]
async fn the_default_pool_has_try_offload_and_offload_deadline() {
    // This binary's default pool: one thread, one queue place.
    let _ = BlockingPool::builder()
        .max_threads(1)
        .queue_capacity(1)
        .install_default();
    let gate = Gate::new();
    let held = common::hold(colorseam::default_pool(), 2, &gate);
    let refused = colorseam::try_offload(|| ()).await.unwrap_err();
    assert!(refused.is_saturated(), "{refused}");
    common::release(&gate, held).await;

    let n = colorseam::offload_deadline(|| 7, Instant::now() + Duration::from_secs(20)).await;
    assert_eq!(n.unwrap(), 7);
    let started = Instant::now();
    let hung = colorseam::offload_deadline(
        || std::thread::sleep(Duration::from_secs(5)),
        Instant::now() + Duration::from_millis(50),
    )
    .await
    .unwrap_err();
    assert!(hung.is_timeout(), "{hung}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(colorseam::try_offload(|| 5).await.unwrap(), 5);
}

fn one_thread_adapter() -> ForAsync<()> {
    ForAsync::builder("fam-fa")
        .max_threads(1)
        .queue_capacity(1)
        .build(())
        .unwrap()
}

#[tokio::test]
async fn for_async_try_call_is_refused_at_once_when_full_and_call_waits() {
    let adapter = one_thread_adapter();
    let gate = Gate::new();
    let (g1, g2) = (gate.clone(), gate.clone());
    let running = adapter.call(move |()| g1.wait(Duration::from_secs(20)));
    let queued = adapter.call(move |()| g2.wait(Duration::from_secs(20)));
    let (running, queued) = (tokio::spawn(running), tokio::spawn(queued));
    assert!(
        common::eventually_async(Duration::from_secs(20), || {
            let m = adapter.pool().metrics();
            m.queue_depth == 1 && m.threads.busy == 1
        })
        .await
    );
    let refused = adapter.try_call(|()| ()).await.unwrap_err();
    assert!(refused.is_saturated(), "{refused}");
    // A plain call waits for room instead, and gets it.
    let waits = tokio::spawn(adapter.call(|()| 3));
    gate.open();
    running.await.unwrap().unwrap();
    queued.await.unwrap().unwrap();
    assert_eq!(waits.await.unwrap().unwrap(), 3);
}

#[tokio::test]
async fn a_cloned_for_async_shares_its_bulkhead() {
    let adapter = one_thread_adapter();
    let clone = adapter.clone();
    let gate = Gate::new();
    let (g1, g2) = (gate.clone(), gate.clone());
    let a = tokio::spawn(adapter.call(move |()| g1.wait(Duration::from_secs(20))));
    let b = tokio::spawn(clone.call(move |()| g2.wait(Duration::from_secs(20))));
    assert!(
        common::eventually_async(Duration::from_secs(20), || {
            adapter.pool().metrics().queue_depth == 1
        })
        .await
    );
    // Full, whichever clone asks.
    assert!(clone.try_call(|()| ()).await.unwrap_err().is_saturated());
    assert!(adapter.try_call(|()| ()).await.unwrap_err().is_saturated());
    gate.open();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    assert_eq!(clone.name(), adapter.name());
}

#[tokio::test]
async fn adapters_take_an_absolute_deadline() {
    let adapter = one_thread_adapter();
    let started = Instant::now();
    let err = adapter
        .call_deadline(
            |()| std::thread::sleep(Duration::from_secs(5)),
            Instant::now() + Duration::from_millis(50),
        )
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));

    let bound = ThreadBound::new("fam-tb", || 40u32).unwrap();
    let got = bound
        .call_deadline(|n| *n + 2, Instant::now() + Duration::from_secs(20))
        .await;
    assert_eq!(got.unwrap(), 42);
    let started = Instant::now();
    let err = bound
        .call_deadline(
            |_| std::thread::sleep(Duration::from_secs(5)),
            Instant::now() + Duration::from_millis(50),
        )
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}
