//! The cost of detection on a healthy runtime: one poll of a trivial future,
//! bare vs wrapped by `colorseam::detect::instrument`, with and without a
//! `Watchdog` watching. The difference per poll is the instrumentation's
//! overhead (goal: at most 50 ns).

use std::future::Future;
use std::task::{Context, Waker};
use std::time::Duration;

use colorseam::detect::{Watchdog, instrument};
use criterion::{Criterion, criterion_group, criterion_main};

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::Yields;

const POLLS: u64 = 1_000;

fn poll_all<F: Future>(future: F) {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    while future.as_mut().poll(&mut cx).is_pending() {}
}

fn per_poll(c: &mut Criterion) {
    let mut group = c.benchmark_group("poll_overhead");
    group.measurement_time(Duration::from_secs(3));
    group.throughput(criterion::Throughput::Elements(POLLS));
    group.bench_function("bare", |b| b.iter(|| poll_all(Yields { remaining: POLLS })));
    group.bench_function("instrumented", |b| {
        b.iter(|| poll_all(instrument(Yields { remaining: POLLS }, "bench")))
    });
    let rt = tokio::runtime::Runtime::new().expect("a runtime for the watchdog");
    let watchdog = Watchdog::builder()
        .install(rt.handle())
        .expect("the watchdog thread starts");
    group.bench_function("instrumented_and_watched", |b| {
        b.iter(|| poll_all(instrument(Yields { remaining: POLLS }, "bench")))
    });
    drop(watchdog);
    group.finish();
}

criterion_group!(benches, per_poll);
criterion_main!(benches);
