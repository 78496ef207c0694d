//! Cost curve: adapter calls in flight (issue 15), as the criterion group
//! `adapters`.
//!
//! 10 → 100 → 1,000 → 10,000 trivial calls made at once by as many tasks on
//! a 2-worker runtime, to a `ForAsync` (its own 8-thread pool) and to a
//! `ThreadBound` (one thread, calls in submission order), each with a queue
//! that holds every call. One iteration is one such wave, awaited; per
//! element, the cost of one call with `n` in flight.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use colorseam::adapter::{ForAsync, ThreadBound};
use criterion::{BenchmarkId, Criterion, Throughput};

const POINTS: [usize; 4] = [10, 100, 1_000, 10_000];
const QUEUE: usize = 10_000 + 16;

pub(crate) fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let for_async = Arc::new(
        ForAsync::builder("bench-for-async")
            .max_threads(8)
            .queue_capacity(QUEUE)
            .build(AtomicU64::new(0))
            .expect("a valid adapter"),
    );
    let thread_bound = Arc::new(
        ThreadBound::builder("bench-thread-bound", || 0u64)
            .queue_capacity(QUEUE)
            .build()
            .expect("a valid adapter"),
    );
    let mut group = c.benchmark_group("adapters");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for n in POINTS {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("for_async", n), |b| {
            b.iter_custom(|iters| {
                let adapter = for_async.clone();
                rt.block_on(async move {
                    tokio::spawn(async move {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let wave: Vec<_> = (0..n)
                                .map(|_| {
                                    let adapter = adapter.clone();
                                    tokio::spawn(async move {
                                        adapter.call(|c| c.fetch_add(1, Ordering::Relaxed)).await
                                    })
                                })
                                .collect();
                            for call in wave {
                                black_box(call.await.expect("a task").expect("a ForAsync call"));
                            }
                        }
                        start.elapsed()
                    })
                    .await
                    .expect("the measured task")
                })
            });
        });
        group.bench_function(BenchmarkId::new("thread_bound", n), |b| {
            b.iter_custom(|iters| {
                let adapter = thread_bound.clone();
                rt.block_on(async move {
                    tokio::spawn(async move {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let wave: Vec<_> = (0..n)
                                .map(|_| {
                                    let adapter = adapter.clone();
                                    tokio::spawn(async move {
                                        adapter
                                            .call(|c| {
                                                *c += 1;
                                                *c
                                            })
                                            .await
                                    })
                                })
                                .collect();
                            for call in wave {
                                black_box(call.await.expect("a task").expect("a ThreadBound call"));
                            }
                        }
                        start.elapsed()
                    })
                    .await
                    .expect("the measured task")
                })
            });
        });
    }
    group.finish();
}
