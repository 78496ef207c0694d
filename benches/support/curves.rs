//! The loads the cost curves share between `examples/compare` (the table)
//! and `cargo bench --bench scale` (the plots), written once so both
//! measure the same thing.

use std::hint::black_box;
use std::sync::mpsc;
use std::time::Duration;

use colorseam::{BlockingPool, Offload};

/// One async → sync → async call: an offload whose closure `block_on`s a
/// nested offload to the same pool.
pub(crate) async fn sandwich(pool: &BlockingPool) -> u64 {
    let inner = pool.clone();
    pool.offload(move || {
        colorseam::block_on(async move {
            inner
                .offload(|| black_box(1u64))
                .await
                .expect("the nested offload")
        })
        .expect("block_on on a pool thread")
    })
    .await
    .expect("the outer offload")
}

/// `n` pools named `{prefix}-{i}`, not yet used.
pub(crate) fn pools_named(prefix: &str, n: usize) -> Vec<BlockingPool> {
    (0..n)
        .map(|i| {
            BlockingPool::builder()
                .name(format!("{prefix}-{i}"))
                .max_threads(8)
                .build()
                .expect("a valid pool")
        })
        .collect()
}

/// Has every pool run three 200 µs jobs at once, so that its eager
/// threads (two on two cores) exist. Await it on a runtime worker.
pub(crate) async fn warm(pools: Vec<BlockingPool>) {
    for pool in &pools {
        let calls: Vec<_> = (0..3)
            .map(|_| pool.offload(|| std::thread::sleep(Duration::from_micros(200))))
            .collect();
        for call in calls {
            call.await.expect("a warm-up offload");
        }
    }
}

/// A one-thread pool with room for `queued` calls, its thread held by a
/// gate job until the returned sender sends (or is dropped); returns once
/// the gate job runs. Await the returned call after opening the gate.
pub(crate) fn gated_pool(
    name: &str,
    queued: usize,
) -> (BlockingPool, mpsc::Sender<()>, Offload<()>) {
    let pool = BlockingPool::builder()
        .name(name)
        .max_threads(1)
        .queue_capacity(queued + 1)
        .build()
        .expect("a valid pool");
    let (open, gate) = mpsc::channel::<()>();
    let (held_tx, held) = mpsc::channel::<()>();
    let gate_call = pool.offload(move || {
        let _ = held_tx.send(());
        let _ = gate.recv();
    });
    held.recv().expect("the gate job holds the pool's thread");
    (pool, open, gate_call)
}
