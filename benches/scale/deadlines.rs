//! Cost curve: deadlines in flight (issue 15), as the criterion group
//! `deadlines`.
//!
//! 1k → 10k → 100k calls queued behind a pool whose one thread is held by a
//! gate job, all with the same deadline, so they all time out in the queue
//! together; each call is awaited by a task of its own on a 2-worker
//! runtime. One iteration is one such round, and its time is the work in
//! it: submitting every call, plus the time from the deadline until the
//! last caller is released (the idle wait for the deadline in between is
//! left out). Criterion's per-element figure is that ÷ N: the cost of one
//! timeout. `spawn_blocking` under `tokio::time::timeout_at`, on a runtime
//! whose one blocking thread is held the same way, is the peer.
//! `examples/compare/deadlines.rs` measures the same rounds in CPU time and
//! release overshoot.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use tokio::runtime::Runtime;

const POINTS: [usize; 3] = [1_000, 10_000, 100_000];

/// How far ahead the shared deadline is set: room to submit every call
/// first (about 1 µs each; 4 µs allowed).
fn margin(n: usize) -> Duration {
    Duration::from_millis(20) + Duration::from_micros(4) * n as u32
}

/// A 2-worker runtime with one blocking thread.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The work in a round whose calls were all submitted by `submitted`, due
/// at `at`, and released at the instants `handles` return.
async fn work(
    started: Instant,
    submitted: Instant,
    at: Instant,
    handles: Vec<tokio::task::JoinHandle<Instant>>,
) -> Duration {
    let mut last = at;
    for handle in handles {
        last = last.max(handle.await.expect("a caller task panicked"));
    }
    (submitted - started) + last.saturating_duration_since(at.max(submitted))
}

fn colorseam_round(rt: &Runtime, n: usize) -> Duration {
    let (pool, open, gate_call) = crate::curves::gated_pool("bench-deadlines", n);
    let submitter = pool.clone();
    let took = rt.block_on(async move {
        tokio::spawn(async move {
            let started = Instant::now();
            let at = started + margin(n);
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    let call = submitter.offload_deadline(|| (), at);
                    tokio::spawn(async move {
                        let err = call.await.expect_err("queued behind the gate");
                        assert!(err.is_timeout(), "{err}");
                        Instant::now()
                    })
                })
                .collect();
            work(started, Instant::now(), at, handles).await
        })
        .await
        .expect("the round panicked")
    });
    assert_eq!(pool.metrics().queue_depth, 0, "the queue is empty");
    let _ = open.send(());
    rt.block_on(gate_call).expect("the gate job returns");
    took
}

fn spawn_blocking_round(rt: &Runtime, n: usize) -> Duration {
    let (open, gate) = mpsc::channel::<()>();
    let (held_tx, held) = mpsc::channel::<()>();
    let gate_call = rt.spawn_blocking(move || {
        let _ = held_tx.send(());
        let _ = gate.recv();
    });
    held.recv().expect("the gate job holds the blocking thread");
    let took = rt.block_on(async move {
        tokio::spawn(async move {
            let started = Instant::now();
            let at = started + margin(n);
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    let call = tokio::task::spawn_blocking(|| ());
                    tokio::spawn(async move {
                        tokio::time::timeout_at(at.into(), call)
                            .await
                            .expect_err("queued behind the gate");
                        Instant::now()
                    })
                })
                .collect();
            work(started, Instant::now(), at, handles).await
        })
        .await
        .expect("the round panicked")
    });
    let _ = open.send(());
    rt.block_on(gate_call).expect("the gate job returns");
    took
}

pub(crate) fn bench(c: &mut Criterion) {
    let cs_rt = runtime();
    let sb_rt = runtime();
    let mut group = c.benchmark_group("deadlines");
    // A round at 100k takes about half a second of wall time, most of it
    // waiting for the deadline: flat sampling, ten rounds per point.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(200));
    group.measurement_time(Duration::from_secs(2));
    for n in POINTS {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("colorseam", n), &n, |b, &n| {
            b.iter_custom(|iters| (0..iters).map(|_| colorseam_round(&cs_rt, n)).sum());
        });
        group.bench_with_input(BenchmarkId::new("spawn_blocking", n), &n, |b, &n| {
            b.iter_custom(|iters| (0..iters).map(|_| spawn_blocking_round(&sb_rt, n)).sum());
        });
    }
    group.finish();
}
