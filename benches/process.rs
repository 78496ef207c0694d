//! The process pool's costs, beside an offload (feature `process`).
//!
//! - `round_trip`: one call awaited at a time from a task on a 2-worker
//!   multi-thread tokio runtime: an offload of a trivial closure to a
//!   `BlockingPool`, and a `ProcessPool` call of a registered function
//!   that echoes 64 bytes (and 64 KiB), on a worker that is already
//!   running (workers are reused; no spawn per call).
//! - `replace`: the cost of losing a worker: a call whose worker dies
//!   (`exit`), then a call that needs the replacement, and, apart, a call
//!   killed at a 5 ms deadline then the next call. Each iteration is one
//!   worker reaped and one started.
//! - `spawn_floor`: a bare `std::process::Command` of this binary (as a
//!   worker, answering nothing) spawned and reaped: the floor under
//!   `replace`.
//!
//! Workers run this binary again, so `main` (written out instead of
//! `criterion_main!`) calls `Functions::init` first. Run with
//! `cargo bench --features process --bench process`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use colorseam::BlockingPool;
use colorseam::process::{Functions, ProcessPool};
use criterion::{Criterion, criterion_group};
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn process_pool(name: &str) -> ProcessPool {
    ProcessPool::builder()
        .name(name)
        .max_workers(1)
        .build()
        .expect("a process pool: main called init")
}

/// Runs `iters` rounds of `round` as a task on `rt` and times them.
fn timed<F, Fut>(rt: &Runtime, iters: u64, round: F) -> Duration
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    rt.block_on(async move {
        tokio::spawn(async move {
            let start = Instant::now();
            for _ in 0..iters {
                round().await;
            }
            start.elapsed()
        })
        .await
        .expect("the measuring task")
    })
}

fn round_trip(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("round_trip");
    let blocking = BlockingPool::builder()
        .name("bench-offload")
        .build()
        .unwrap();
    group.bench_function("offload (threads)", |b| {
        b.iter_custom(|iters| {
            let pool = blocking.clone();
            timed(&rt, iters, move || {
                let call = pool.offload(|| black_box([7u8; 64]));
                async move {
                    black_box(call.await.unwrap());
                }
            })
        });
    });
    let pool = process_pool("bench-call");
    rt.block_on(pool.call("echo", Vec::new())).unwrap(); // the worker is up
    for (label, size) in [
        ("process call, 64 B", 64),
        ("process call, 64 KiB", 64 << 10),
    ] {
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let pool = pool.clone();
                timed(&rt, iters, move || {
                    let call = pool.call("echo", vec![7u8; size]);
                    async move {
                        black_box(call.await.unwrap());
                    }
                })
            });
        });
    }
    group.finish();
}

fn replace(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("replace");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    let pool = process_pool("bench-replace");
    rt.block_on(pool.call("echo", Vec::new())).unwrap();
    group.bench_function("crash, then a call on the replacement", |b| {
        b.iter_custom(|iters| {
            let pool = pool.clone();
            timed(&rt, iters, move || {
                let crash = pool.call("exit", Vec::new());
                let pool = pool.clone();
                async move {
                    assert!(crash.await.unwrap_err().is_crash());
                    black_box(pool.call("echo", Vec::new()).await.unwrap());
                }
            })
        });
    });
    group.bench_function(
        "kill at a 5 ms deadline, then a call on the replacement",
        |b| {
            b.iter_custom(|iters| {
                let pool = pool.clone();
                timed(&rt, iters, move || {
                    let spin = pool.call_timeout("spin", Vec::new(), Duration::from_millis(5));
                    let pool = pool.clone();
                    async move {
                        // Killed while running, as a rule; on a loaded
                        // machine the supervisor may not have started it
                        // within 5 ms, and then it times out queued.
                        assert!(spin.await.unwrap_err().is_timeout());
                        black_box(pool.call("echo", Vec::new()).await.unwrap());
                    }
                })
            });
        },
    );
    group.finish();
}

fn spawn_floor(c: &mut Criterion) {
    let exe = std::env::current_exe().expect("this binary");
    let mut group = c.benchmark_group("spawn_floor");
    group.sample_size(20);
    group.bench_function("spawn and reap this binary", |b| {
        b.iter(|| {
            let status = std::process::Command::new(&exe)
                .env("COLORSEAM_BENCH_EXIT_AT_ONCE", "1")
                .status()
                .expect("the child");
            black_box(status);
        });
    });
    group.finish();
}

criterion_group!(benches, round_trip, replace, spawn_floor);

fn main() {
    Functions::new()
        .add("echo", |input: &[u8]| input.to_vec())
        .add("exit", |_: &[u8]| std::process::exit(3))
        .add("spin", |_: &[u8]| {
            loop {
                std::hint::spin_loop();
            }
        })
        .init();
    if std::env::var_os("COLORSEAM_BENCH_EXIT_AT_ONCE").is_some() {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
