//! Cost curve: adapter calls in flight (issue 15).
//!
//! 10 → 100 → 1,000 → 10,000 async tasks calling one adapter at once, each
//! making its share of a fixed number of trivial calls one after another, so
//! `n` calls are in flight throughout. Two adapters: a `ForAsync` (its own
//! 8-thread pool) and a `ThreadBound` (one thread, calls in submission
//! order), both with a queue that holds every call in flight. The cost is
//! wall time ÷ calls; CPU ÷ calls (the whole process) is shown beside it.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use colorseam::adapter::{ForAsync, ThreadBound};

use crate::{Point, Row, cpu_ns, curve_report, curve_row, median, on_worker, runtime, us};

pub(crate) const POINTS: [usize; 4] = [10, 100, 1_000, 10_000];
/// Calls per point and rep.
const CALLS: usize = 20_000;
const REPS: usize = 3;
/// Room for every call in flight at the last point.
pub(crate) const QUEUE: usize = 10_000 + 16;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    ForAsync,
    ThreadBound,
}

/// The two adapters under test, sharing nothing.
#[derive(Clone)]
pub(crate) struct Adapters {
    pub(crate) for_async: Arc<ForAsync<AtomicU64>>,
    pub(crate) thread_bound: Arc<ThreadBound<u64>>,
}

impl Adapters {
    pub(crate) fn new() -> Self {
        Adapters {
            for_async: Arc::new(
                ForAsync::builder("curve-for-async")
                    .max_threads(8)
                    .queue_capacity(QUEUE)
                    .build(AtomicU64::new(0))
                    .expect("a valid adapter"),
            ),
            thread_bound: Arc::new(
                ThreadBound::builder("curve-thread-bound", || 0u64)
                    .queue_capacity(QUEUE)
                    .build()
                    .expect("a valid adapter"),
            ),
        }
    }

    /// One trivial call through `which`.
    pub(crate) async fn call(&self, which: Which) -> u64 {
        match which {
            Which::ForAsync => self
                .for_async
                .call(|n| n.fetch_add(1, Ordering::Relaxed))
                .await
                .expect("a ForAsync call"),
            Which::ThreadBound => self
                .thread_bound
                .call(|n| {
                    *n += 1;
                    *n
                })
                .await
                .expect("a ThreadBound call"),
        }
    }
}

/// `in_flight` tasks making `per_task` calls each, one after another.
pub(crate) async fn calls(adapters: Adapters, which: Which, in_flight: usize, per_task: usize) {
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let adapters = adapters.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    black_box(adapters.call(which).await);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a calling task");
    }
}

pub(crate) fn run(rows: &mut Vec<Row>) {
    let rt = runtime();
    let adapters = Adapters::new();
    let whichs = [Which::ForAsync, Which::ThreadBound];
    // [adapter][point] -> samples
    let mut wall: [Vec<Vec<f64>>; 2] = Default::default();
    let mut cpu: [Vec<Vec<f64>>; 2] = Default::default();
    for w in &mut wall {
        w.resize(POINTS.len(), Vec::new());
    }
    for c in &mut cpu {
        c.resize(POINTS.len(), Vec::new());
    }
    // Warm-up: both adapters' threads started.
    for which in whichs {
        on_worker(&rt, calls(adapters.clone(), which, 10, 100));
    }
    for rep in 0..REPS {
        for (p, n) in POINTS.into_iter().enumerate() {
            for (a, which) in crate::rotated(&[0, 1], rep + p)
                .into_iter()
                .map(|a| (a, whichs[a]))
            {
                let per_task = CALLS.div_ceil(n);
                let total = (per_task * n) as f64;
                let cpu_before = cpu_ns();
                let start = Instant::now();
                on_worker(&rt, calls(adapters.clone(), which, n, per_task));
                wall[a][p].push(us(start.elapsed()) / total);
                cpu[a][p].push((cpu_ns() - cpu_before) as f64 / 1e3 / total);
            }
        }
    }
    let points = |samples: &Vec<Vec<f64>>| -> Vec<Point> {
        POINTS
            .iter()
            .zip(samples)
            .map(|(&n, s)| Point { n, cost: median(s) })
            .collect()
    };
    for (a, name) in ["ForAsync", "ThreadBound"].into_iter().enumerate() {
        rows.push(curve_row(
            &format!("adapters: {name} calls in flight, wall per call (µs)"),
            &points(&wall[a]),
            2,
        ));
    }
    for (a, name) in ["ForAsync", "ThreadBound"].into_iter().enumerate() {
        rows.push(curve_report(
            &format!("adapters: {name} CPU per call, whole process (µs)"),
            &points(&cpu[a]),
            2,
        ));
    }
}
