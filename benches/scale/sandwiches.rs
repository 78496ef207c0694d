//! Cost curve: nested sandwiches in flight (issue 15), as the criterion
//! group `sandwiches`.
//!
//! 1 → 100 → 1,000 (and 10,000) async → sync → async calls in flight: `n`
//! tasks on a 2-worker runtime each offload, to a 4-thread pool whose queue
//! holds them all, a closure that calls `colorseam::block_on` on an offload
//! to the same pool. One iteration is one wave of `n` sandwiches made at
//! once and awaited; per element, the cost of one sandwich. A wave that has
//! not finished in 30 s panics (a deadlock), rather than hang the bench.

use std::hint::black_box;
use std::time::{Duration, Instant};

use colorseam::BlockingPool;
use criterion::{BenchmarkId, Criterion, Throughput};

const POINTS: [usize; 4] = [1, 100, 1_000, 10_000];
const THREADS: usize = 4;
const WAVE_LIMIT: Duration = Duration::from_secs(30);

pub(crate) fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut group = c.benchmark_group("sandwiches");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for n in POINTS {
        let pool = BlockingPool::builder()
            .name("bench-sandwich")
            .max_threads(THREADS)
            .queue_capacity(2 * n + THREADS)
            .build()
            .expect("a valid pool");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &pool, |b, pool| {
            b.iter_custom(|iters| {
                let pool = pool.clone();
                rt.block_on(async move {
                    tokio::spawn(async move {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let wave: Vec<_> = (0..n)
                                .map(|_| {
                                    let pool = pool.clone();
                                    tokio::spawn(
                                        async move { crate::curves::sandwich(&pool).await },
                                    )
                                })
                                .collect();
                            let all = async {
                                for task in wave {
                                    black_box(task.await.expect("a sandwich task"));
                                }
                            };
                            if tokio::time::timeout(WAVE_LIMIT, all).await.is_err() {
                                panic!(
                                    "sandwiches: {n} in flight on {THREADS} threads did not \
                                     finish in {WAVE_LIMIT:?}: deadlocked"
                                );
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
