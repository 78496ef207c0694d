//! Offload overhead: colorseam's `BlockingPool` against its peers.
//!
//! Sweeps three shapes of work, each one criterion group so the HTML report
//! plots the contenders side by side:
//!
//! - `round_trip`: one trivial closure offloaded and awaited at a time, from
//!   a task on a 2-worker multi-thread tokio runtime. Contenders: colorseam,
//!   tokio `spawn_blocking`, `blocking::unblock`, and a raw floor (one
//!   long-lived std thread fed by a std mpsc channel, answering on a tokio
//!   oneshot).
//! - `burst`: 10,000 trivial closures submitted at once, then all awaited;
//!   throughput per job. colorseam (default `max_threads` 64, which trivial
//!   jobs keep at the core count; `queue_capacity` 20,000) against
//!   `spawn_blocking` (tokio's default 512 blocking threads, and a runtime
//!   capped at 4) and `blocking::unblock`, each
//!   awaited in submission order (draining tokio `JoinHandle`s through
//!   `FuturesUnordered` is slowed by tokio's cooperative budget, so every
//!   contender is awaited in order; colorseam is also shown drained through
//!   `FuturesUnordered`).
//! - `sleep_jobs`: 200 jobs of 1 ms `std::thread::sleep`, 64 in flight:
//!   colorseam with `max_threads` 64 against `spawn_blocking` bounded by a
//!   tokio `Semaphore` of 64 permits.
//! - `deadline_release`: a 5 ms deadline around a 20 ms blocking call; the
//!   time until the caller is released. colorseam's `offload_timeout`
//!   against `tokio::time::timeout` around `spawn_blocking` (tokio's timer
//!   fires on its next 1 ms tick; colorseam's last 2 ms are timed by its
//!   own timer thread).
//!
//! Every measurement runs as a task spawned on the runtime, so callers are
//! runtime workers, as in a real service. Run with
//! `cargo bench --bench offload`.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use colorseam::BlockingPool;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::runtime::Runtime;
use tokio::sync::{Semaphore, oneshot};

/// Jobs in one `burst` iteration.
const BURST: usize = 10_000;
/// Jobs in one `sleep_jobs` iteration.
const SLEEP_JOBS: usize = 200;
/// How long each `sleep_jobs` job sleeps.
const SLEEP: Duration = Duration::from_millis(1);
/// Jobs in flight in `sleep_jobs`.
const IN_FLIGHT: usize = 64;

fn runtime() -> Runtime {
    runtime_with_blocking_threads(512)
}

/// A 2-worker runtime whose `spawn_blocking` pool has at most `max` threads
/// (tokio's default is 512).
fn runtime_with_blocking_threads(max: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(max)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Runs `body` as a task on `rt` (so its caller is a runtime worker) and
/// returns how long it took, as `iter_custom` wants.
fn measure<F, Fut>(rt: &Runtime, body: F) -> Duration
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let fut = body();
    rt.block_on(async move {
        let start = Instant::now();
        tokio::spawn(fut)
            .await
            .expect("the benchmark task panicked");
        start.elapsed()
    })
}

/// The floor: one long-lived std thread fed closures through a std channel.
/// Dropping it closes the channel and the thread exits.
struct RawThread {
    jobs: mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl RawThread {
    fn start() -> Self {
        let (jobs, rx) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        thread::Builder::new()
            .name("raw-floor".to_owned())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .expect("a raw thread");
        RawThread { jobs }
    }

    async fn run<T, F>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _receiver_gone = tx.send(f());
            }))
            .expect("the raw thread is alive");
        rx.await.expect("the raw thread answers")
    }
}

fn round_trip(c: &mut Criterion) {
    let rt = runtime();
    let pool = BlockingPool::builder()
        .name("bench-round-trip")
        .build()
        .expect("a valid pool");
    let raw = Arc::new(RawThread::start());

    let mut group = c.benchmark_group("round_trip");
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));

    group.bench_function("colorseam", |b| {
        b.iter_custom(|iters| {
            let pool = pool.clone();
            measure(&rt, move || async move {
                for _ in 0..iters {
                    let n = pool.offload(|| black_box(1)).await.expect("offload");
                    black_box(n);
                }
            })
        });
    });
    group.bench_function("spawn_blocking", |b| {
        b.iter_custom(|iters| {
            measure(&rt, move || async move {
                for _ in 0..iters {
                    let n = tokio::task::spawn_blocking(|| black_box(1))
                        .await
                        .expect("spawn_blocking");
                    black_box(n);
                }
            })
        });
    });
    group.bench_function("blocking_unblock", |b| {
        b.iter_custom(|iters| {
            measure(&rt, move || async move {
                for _ in 0..iters {
                    black_box(blocking::unblock(|| black_box(1)).await);
                }
            })
        });
    });
    group.bench_function("raw_thread_floor", |b| {
        b.iter_custom(|iters| {
            let raw = raw.clone();
            measure(&rt, move || async move {
                for _ in 0..iters {
                    black_box(raw.run(|| black_box(1)).await);
                }
            })
        });
    });
    group.finish();
}

fn burst(c: &mut Criterion) {
    let rt = runtime();
    // Same bound as the colorseam pool, to separate "bounded" from "how".
    let rt_max4 = runtime_with_blocking_threads(4);
    let pool = BlockingPool::builder()
        .name("bench-burst")
        .queue_capacity(20_000)
        .build()
        .expect("a valid pool");

    let mut group = c.benchmark_group("burst");
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);
    group.throughput(Throughput::Elements(BURST as u64));

    group.bench_function(BenchmarkId::new("colorseam", BURST), |b| {
        b.iter_custom(|iters| {
            let pool = pool.clone();
            measure(&rt, move || async move {
                for _ in 0..iters {
                    let calls: Vec<_> = (0..BURST).map(|_| pool.offload(|| black_box(1))).collect();
                    for call in calls {
                        black_box(call.await.expect("offload"));
                    }
                }
            })
        });
    });
    group.bench_function(BenchmarkId::new("colorseam_unordered", BURST), |b| {
        b.iter_custom(|iters| {
            let pool = pool.clone();
            measure(&rt, move || async move {
                for _ in 0..iters {
                    let mut calls: FuturesUnordered<_> =
                        (0..BURST).map(|_| pool.offload(|| black_box(1))).collect();
                    while let Some(result) = calls.next().await {
                        black_box(result.expect("offload"));
                    }
                }
            })
        });
    });
    for (name, rt) in [("spawn_blocking", &rt), ("spawn_blocking_max4", &rt_max4)] {
        group.bench_function(BenchmarkId::new(name, BURST), |b| {
            b.iter_custom(|iters| {
                measure(rt, move || async move {
                    for _ in 0..iters {
                        let handles: Vec<_> = (0..BURST)
                            .map(|_| tokio::task::spawn_blocking(|| black_box(1)))
                            .collect();
                        for handle in handles {
                            black_box(handle.await.expect("spawn_blocking"));
                        }
                    }
                })
            });
        });
    }
    group.bench_function(BenchmarkId::new("blocking_unblock", BURST), |b| {
        b.iter_custom(|iters| {
            measure(&rt, move || async move {
                for _ in 0..iters {
                    let tasks: Vec<_> = (0..BURST)
                        .map(|_| blocking::unblock(|| black_box(1)))
                        .collect();
                    for task in tasks {
                        black_box(task.await);
                    }
                }
            })
        });
    });
    group.finish();
}

fn sleep_jobs(c: &mut Criterion) {
    let rt = runtime();
    let pool = BlockingPool::builder()
        .name("bench-sleep")
        .max_threads(IN_FLIGHT)
        .queue_capacity(SLEEP_JOBS)
        .build()
        .expect("a valid pool");

    let mut group = c.benchmark_group("sleep_jobs");
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);
    group.throughput(Throughput::Elements(SLEEP_JOBS as u64));

    group.bench_function(BenchmarkId::new("colorseam", SLEEP_JOBS), |b| {
        b.iter_custom(|iters| {
            let pool = pool.clone();
            measure(&rt, move || async move {
                for _ in 0..iters {
                    let calls: Vec<_> = (0..SLEEP_JOBS)
                        .map(|_| pool.offload(|| thread::sleep(SLEEP)))
                        .collect();
                    for call in calls {
                        call.await.expect("offload");
                    }
                }
            })
        });
    });
    group.bench_function(
        BenchmarkId::new("spawn_blocking_semaphore", SLEEP_JOBS),
        |b| {
            b.iter_custom(|iters| {
                measure(&rt, move || async move {
                    let limit = Arc::new(Semaphore::new(IN_FLIGHT));
                    for _ in 0..iters {
                        let mut handles = Vec::with_capacity(SLEEP_JOBS);
                        for _ in 0..SLEEP_JOBS {
                            let permit = limit
                                .clone()
                                .acquire_owned()
                                .await
                                .expect("the semaphore is open");
                            handles.push(tokio::task::spawn_blocking(move || {
                                thread::sleep(SLEEP);
                                drop(permit);
                            }));
                        }
                        for handle in handles {
                            handle.await.expect("spawn_blocking");
                        }
                    }
                })
            });
        },
    );
    group.finish();
}

fn deadline_release(c: &mut Criterion) {
    let rt = runtime();
    let pool = BlockingPool::builder()
        .name("bench-deadline")
        .build()
        .expect("a valid pool");
    let mut group = c.benchmark_group("deadline_release");
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);

    group.bench_function("colorseam", |b| {
        b.iter_custom(|iters| {
            let pool = pool.clone();
            measure(&rt, move || async move {
                for _ in 0..iters {
                    let err = pool
                        .offload_timeout(|| thread::sleep(HUNG), DEADLINE)
                        .await
                        .expect_err("the call outlives its deadline");
                    black_box(err);
                }
            })
        });
    });
    group.bench_function("spawn_blocking_timeout", |b| {
        b.iter_custom(|iters| {
            measure(&rt, move || async move {
                for _ in 0..iters {
                    let hung = tokio::task::spawn_blocking(|| thread::sleep(HUNG));
                    let err = tokio::time::timeout(DEADLINE, hung)
                        .await
                        .expect_err("the call outlives its deadline");
                    black_box(err);
                }
            })
        });
    });
    group.finish();
}

/// The deadline in `deadline_release`, and the call it cuts short.
const DEADLINE: Duration = Duration::from_millis(5);
const HUNG: Duration = Duration::from_millis(20);

criterion_group!(benches, round_trip, burst, sleep_jobs, deadline_release);
criterion_main!(benches);
