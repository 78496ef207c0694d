//! Cost curve: nested sandwiches in flight (issue 15).
//!
//! A *sandwich* is async → sync → async: an async task offloads to a
//! bounded pool a closure that calls `colorseam::block_on` on an offload to
//! the same pool (`src/pool/loan.rs`: the blocked outer job lends its
//! admission permit; `src/pool/help.rs`: at `max_threads`, the waiting
//! thread runs its own nested job). 1 → 100 → 1,000 sandwiches in flight on
//! a 4-thread pool whose queue holds them all, a few thousand sandwiches per
//! point (and 10,000 in flight beyond them); the cost is wall time ÷
//! sandwiches. Each point runs under a
//! generous timeout that panics with a message rather than hang: a deadlock
//! is a bug to report, not a number.

use std::hint::black_box;
use std::time::{Duration, Instant};

use colorseam::BlockingPool;

use crate::{Point, Row, cpu_ns, curve_report, curve_row, median, on_worker, runtime, us};

/// The points, and 10,000 beyond them: with one in flight a
/// sandwich costs its latency, with 100 or more the pool is pipelined, so
/// growth is judged both over the span and from 100 on.
pub(crate) const POINTS: [usize; 4] = [1, 100, 1_000, 10_000];
/// Sandwiches per point and rep.
const SANDWICHES: usize = 5_000;
const REPS: usize = 3;
/// The pool's threads: few, so the nesting is what the pool must solve.
pub(crate) const THREADS: usize = 4;
/// A point that takes this long is deadlocked (it takes well under 1 s).
pub(crate) const POINT_LIMIT: Duration = Duration::from_secs(30);

/// A bounded pool whose queue holds `in_flight` sandwiches, outer and
/// nested jobs both.
pub(crate) fn pool(in_flight: usize) -> BlockingPool {
    BlockingPool::builder()
        .name("curve-sandwich")
        .max_threads(THREADS)
        .queue_capacity(2 * in_flight + THREADS)
        .build()
        .expect("a valid pool")
}

/// `in_flight` tasks making `per_task` sandwiches each, one after another;
/// panics if they have not all finished within [`POINT_LIMIT`].
pub(crate) async fn sandwiches(pool: BlockingPool, in_flight: usize, per_task: usize) {
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    black_box(crate::curves::sandwich(&pool).await);
                }
            })
        })
        .collect();
    let all = async {
        for task in tasks {
            task.await.expect("a sandwich task");
        }
    };
    if tokio::time::timeout(POINT_LIMIT, all).await.is_err() {
        panic!(
            "sandwiches: {in_flight} in flight on {THREADS} threads did not finish in {POINT_LIMIT:?} \
             (queue depth {}, threads {:?}): deadlocked",
            pool.metrics().queue_depth,
            pool.metrics().threads
        );
    }
}

pub(crate) fn run(rows: &mut Vec<Row>) {
    let rt = runtime();
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    for n in POINTS {
        let pool = pool(n);
        let per_task = SANDWICHES.div_ceil(n);
        let total = per_task * n;
        // Warm-up: threads started, the bridge and timers made.
        on_worker(&rt, sandwiches(pool.clone(), n, 1));
        let mut w = Vec::new();
        let mut c = Vec::new();
        for _ in 0..REPS {
            let cpu_before = cpu_ns();
            let start = Instant::now();
            on_worker(&rt, sandwiches(pool.clone(), n, per_task));
            w.push(us(start.elapsed()) / total as f64);
            c.push((cpu_ns() - cpu_before) as f64 / 1e3 / total as f64);
        }
        wall.push(Point {
            n,
            cost: median(&w),
        });
        cpu.push(Point {
            n,
            cost: median(&c),
        });
    }
    rows.push(curve_row(
        "sandwiches: async → sync → async in flight, 4 threads, wall per sandwich (µs)",
        &wall[..3],
        1,
    ));
    rows.push(curve_row(
        "sandwiches: the same once pipelined, 100 → 10k in flight (µs)",
        &wall[1..],
        1,
    ));
    rows.push(curve_report(
        "sandwiches: CPU per sandwich, whole process (µs)",
        &cpu,
        1,
    ));
}
