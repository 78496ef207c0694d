//! The cost of detection on a healthy runtime: one poll of a trivial future,
//! bare vs wrapped by `colorseam::detect::instrument`, with and without a
//! `Watchdog` watching. The difference per poll is the instrumentation's
//! overhead (goal: at most 50 ns); `two_clock_reads` is the floor of a
//! poll timed with two `Instant::now()` reads.
//!
//! And the cost of creating (and dropping) an instrumented future, on one
//! thread and on two threads at once, side by side: with a `&'static str`
//! name it takes no lock and allocates nothing, so the two-thread figure
//! (per op, per thread) should match the one-thread figure; a `String`
//! name goes through a process-wide registry and shows the contention.

use std::future::Future;
use std::hint::black_box;
use std::sync::Barrier;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

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
    group.bench_function("two_clock_reads", |b| {
        b.iter(|| {
            for _ in 0..POLLS {
                let start = black_box(Instant::now());
                black_box(start.elapsed());
            }
        })
    });
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

/// Runs `op` `iters` times on each of `threads` threads at once and
/// returns the slowest thread's time, so the figure is the time per op per
/// thread with every thread busy.
fn on_threads(threads: usize, iters: u64, op: impl Fn() + Sync) -> Duration {
    let start = Barrier::new(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    let began = Instant::now();
                    for _ in 0..iters {
                        op();
                    }
                    began.elapsed()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a bench thread does not panic"))
            .max()
            .expect("at least one thread")
    })
}

fn creation(c: &mut Criterion) {
    let mut group = c.benchmark_group("create_and_drop");
    group.measurement_time(Duration::from_secs(3));
    for threads in [1, 2] {
        group.bench_function(format!("static_name/{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, || {
                    drop(black_box(instrument(std::future::ready(()), "bench")));
                })
            })
        });
        group.bench_function(format!("string_name/{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, || {
                    let name = String::from("bench");
                    drop(black_box(instrument(std::future::ready(()), name)));
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, per_poll, creation);
criterion_main!(benches);
