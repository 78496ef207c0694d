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
//! `futures::executor::block_on`. Run with `cargo bench --bench block_on`.

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

criterion_group!(benches, ready, cross_thread_wake);
criterion_main!(benches);
