//! `block_on` from a plain thread: colorseam against the other executors.
//!
//! Sweeps two shapes of future, each one criterion group so the HTML report
//! plots the contenders side by side:
//!
//! - `block_on_ready`: a future that is ready on its first poll, so the
//!   figure is the fixed cost of entering and leaving each `block_on`.
//! - `block_on_cross_thread_wake`: a future that is pending on its first
//!   poll and is woken from another std thread (a long-lived helper fed the
//!   waker through a std channel), then ready: one park/unpark round trip
//!   across threads per iteration.
//!
//! Contenders, all called from the benchmark's own plain thread (no runtime
//! entered): `colorseam::block_on` (which enters its bridge runtime, so the
//! future could use tokio IO and timers), `pollster::block_on`, tokio's
//! `Handle::block_on` on the handle of a 2-worker multi-thread runtime, and
//! `futures::executor::block_on`.
//!
//! - `context`: what `colorseam::context()` costs on every kind of thread
//!   (plain, multi-thread worker, current-thread driver, `spawn_blocking`,
//!   colorseam pool thread, inside colorseam's `block_on`). Each figure is
//!   timed on that thread itself, in a loop of criterion's length.
//!   `context_floor` times the same calls in chunks of 256 and keeps the
//!   fastest chunk: the call's own cost, which a loaded shared machine's
//!   preemption inflates in the wall-clock `context` group.
//!
//! Run with `cargo bench --bench block_on`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::WakerThread;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn ready(c: &mut Criterion) {
    let rt = runtime();
    let handle = rt.handle().clone();
    // Start the bridge runtime outside the measurement.
    colorseam::block_on(async {}).expect("block_on from a plain thread");

    let mut group = c.benchmark_group("block_on_ready");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("colorseam", |b| {
        b.iter(|| colorseam::block_on(std::future::ready(black_box(1))).expect("block_on"))
    });
    group.bench_function("pollster", |b| {
        b.iter(|| pollster::block_on(std::future::ready(black_box(1))))
    });
    group.bench_function("tokio_handle", |b| {
        b.iter(|| handle.block_on(std::future::ready(black_box(1))))
    });
    group.bench_function("futures_executor", |b| {
        b.iter(|| futures::executor::block_on(std::future::ready(black_box(1))))
    });
    group.finish();
}

fn cross_thread_wake(c: &mut Criterion) {
    let rt = runtime();
    let handle = rt.handle().clone();
    let helper = WakerThread::start();
    colorseam::block_on(async {}).expect("block_on from a plain thread");

    let mut group = c.benchmark_group("block_on_cross_thread_wake");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("colorseam", |b| {
        b.iter(|| colorseam::block_on(helper.wake_once()).expect("block_on"))
    });
    group.bench_function("pollster", |b| {
        b.iter(|| pollster::block_on(helper.wake_once()))
    });
    group.bench_function("tokio_handle", |b| {
        b.iter(|| handle.block_on(helper.wake_once()))
    });
    group.bench_function("futures_executor", |b| {
        b.iter(|| futures::executor::block_on(helper.wake_once()))
    });
    group.finish();
}

/// Times `iters` calls of `context()` on the calling thread: wall clock,
/// including any time the OS gave this thread's core to another process.
fn time_context(iters: u64) -> Duration {
    let started = std::time::Instant::now();
    for _ in 0..iters {
        black_box(colorseam::context());
    }
    started.elapsed()
}

/// Times `iters` calls of `context()` in chunks of 256 and charges each
/// call the fastest chunk's per-call time: the cost of the call itself,
/// without the preemption of a loaded shared machine (a chunk the OS
/// interrupted is simply not the fastest).
fn floor_context(iters: u64) -> Duration {
    const CHUNK: u64 = 256;
    let mut fastest = f64::MAX;
    let mut done = 0;
    while done < iters {
        let n = CHUNK.min(iters - done);
        let started = std::time::Instant::now();
        for _ in 0..n {
            black_box(colorseam::context());
        }
        fastest = fastest.min(started.elapsed().as_secs_f64() / n as f64);
        done += n;
    }
    Duration::from_secs_f64(fastest * iters as f64)
}

fn context(c: &mut Criterion) {
    context_on_every_thread(c, "context", time_context);
    context_on_every_thread(c, "context_floor", floor_context);
}

/// One group: `time` run on each kind of thread.
fn context_on_every_thread(c: &mut Criterion, name: &str, time: fn(u64) -> Duration) {
    let rt = runtime();
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let pool = colorseam::BlockingPool::builder()
        .name("bench-context")
        .build()
        .expect("a pool");

    let mut group = c.benchmark_group(name);
    group.measurement_time(Duration::from_secs(2));
    group.bench_function("plain_thread", |b| b.iter_custom(time));
    group.bench_function("multi_thread_worker", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async { tokio::spawn(async move { time(iters) }).await })
                .expect("the task ran")
        })
    });
    group.bench_function("current_thread_driver", |b| {
        b.iter_custom(|iters| current.block_on(async move { time(iters) }))
    });
    group.bench_function("spawn_blocking", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async { tokio::task::spawn_blocking(move || time(iters)).await })
                .expect("the blocking task ran")
        })
    });
    group.bench_function("pool_thread", |b| {
        b.iter_custom(|iters| {
            rt.block_on(pool.offload(move || time(iters)))
                .expect("the job ran")
        })
    });
    group.bench_function("inside_block_on", |b| {
        b.iter_custom(|iters| colorseam::block_on(async move { time(iters) }).expect("block_on"))
    });
    group.finish();
}

criterion_group!(benches, ready, cross_thread_wake, context);
criterion_main!(benches);
