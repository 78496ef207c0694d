//! Cost curve: callers on one bounded pool (issue 15), as the criterion
//! group `callers`.
//!
//! 64 → 1,000 → 10,000 async callers (tasks on a 2-worker runtime) share a
//! pool of `max_threads(2)` and `queue_capacity(32)`, so most of them wait
//! for admission. Each caller makes trivial calls one after another (a
//! closed loop), taking a ticket before each, until the tickets run out:
//! `iters × N` tickets per measurement, so criterion's per-element figure
//! is the time per call with N callers competing (1 ÷ throughput). A
//! wake-all admission would make it linear in N. The peer is
//! `spawn_blocking` on a runtime of at most 2 blocking threads, behind a
//! tokio `Semaphore` of the same 34 permits. `examples/compare/callers.rs`
//! measures the same loop in a window with every caller in it, and the
//! queue wait's fairness.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use colorseam::BlockingPool;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use tokio::runtime::Runtime;
use tokio::sync::{Barrier, Semaphore};

const POINTS: [usize; 3] = [64, 1_000, 10_000];
const THREADS: usize = 2;
const QUEUE: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    Colorseam,
    SpawnBlocking,
}

/// A 2-worker runtime with at most `THREADS` blocking threads.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(THREADS)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// `callers` callers make `calls` calls in all; the time from when all of
/// them are ready until the last call has returned.
fn closed_loop(contender: Contender, rt: &Runtime, callers: usize, calls: u64) -> Duration {
    let pool = BlockingPool::builder()
        .name("bench-callers")
        .max_threads(THREADS)
        .queue_capacity(QUEUE)
        .build()
        .expect("a valid pool");
    let permits = Arc::new(Semaphore::new(THREADS + QUEUE));
    let tickets = Arc::new(AtomicU64::new(calls));
    // Every caller is spawned and waiting before the clock starts.
    let all_in = Arc::new(Barrier::new(callers + 1));
    rt.block_on(async move {
        tokio::spawn(async move {
            let tasks: Vec<_> = (0..callers)
                .map(|_| {
                    let (pool, permits) = (pool.clone(), permits.clone());
                    let (tickets, all_in) = (tickets.clone(), all_in.clone());
                    tokio::spawn(async move {
                        all_in.wait().await;
                        // A ticket per call, while any are left.
                        while tickets
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                                t.checked_sub(1)
                            })
                            .is_ok()
                        {
                            match contender {
                                Contender::Colorseam => {
                                    pool.offload(|| ()).await.expect("a trivial call succeeds")
                                }
                                Contender::SpawnBlocking => {
                                    let _permit = permits
                                        .acquire()
                                        .await
                                        .expect("the semaphore is never closed");
                                    tokio::task::spawn_blocking(|| ())
                                        .await
                                        .expect("a trivial call succeeds");
                                }
                            }
                        }
                    })
                })
                .collect();
            all_in.wait().await;
            let start = Instant::now();
            for task in tasks {
                task.await.expect("a caller task panicked");
            }
            start.elapsed()
        })
        .await
        .expect("the measurement panicked")
    })
}

pub(crate) fn bench(c: &mut Criterion) {
    let rts = [runtime(), runtime()];
    let mut group = c.benchmark_group("callers");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(2));
    for n in POINTS {
        group.throughput(Throughput::Elements(n as u64));
        for (contender, name) in [
            (Contender::Colorseam, "colorseam"),
            (Contender::SpawnBlocking, "spawn_blocking"),
        ] {
            let rt = &rts[contender as usize];
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
                // At least eight rounds of every caller per measurement,
                // so the start (every caller's first call at once) is a
                // small part of it.
                b.iter_custom(|iters| {
                    let calls = iters.max(8) * n as u64;
                    let took = closed_loop(contender, rt, n, calls);
                    took.mul_f64(iters as f64 / iters.max(8) as f64)
                });
            });
        }
    }
    group.finish();
}
