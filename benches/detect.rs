//! The cost of detection on a healthy runtime: one poll of a trivial future,
//! bare vs wrapped by `colorseam::detect::instrument`, with and without a
//! `Watchdog` watching. The difference per poll is the instrumentation's
//! overhead (goal: at most 50 ns).

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use colorseam::detect::{Watchdog, instrument};
use criterion::{Criterion, criterion_group, criterion_main};

/// A future that is pending `remaining` times, then ready.
struct Yields {
    remaining: u64,
}

impl Future for Yields {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.remaining == 0 {
            Poll::Ready(())
        } else {
            self.remaining = black_box(self.remaining - 1);
            Poll::Pending
        }
    }
}

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
