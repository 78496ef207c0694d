//! Cost curve: callers on one bounded pool (issue 15).
//!
//! 64 → 1,000 → 10,000 concurrent async callers (tasks on a 2-worker
//! runtime) share one pool of `max_threads(2)` and `queue_capacity(32)`, so
//! all but 34 of them wait for admission at any moment. Each caller makes
//! trivial calls one after another (a closed loop) until told to stop;
//! after a warm-up (the start is a burst of N first calls) a window of
//! 120 ms is measured, throughout which all N callers loop. Each call's
//! queue wait runs from just before `offload(..)` to the instant its
//! closure starts (the closure returns it), so it covers the wait for
//! admission and the wait in the queue.
//!
//! - **cost per call**: the window ÷ the calls that ended in it, i.e.
//!   1 ÷ throughput (judged:
//!   flat or log). A wake-all admission (every waiter woken for each freed
//!   slot) would make it linear in the callers.
//! - **fairness**: p99 ÷ p50 of the queue wait. In a closed loop with FIFO
//!   admission every wait is about N ÷ throughput, so the ratio stays near
//!   1 whatever N; LIFO or barging admission shows a long tail instead
//!   (judged: ≤ 3 at every point).
//!
//! The peer is `spawn_blocking` on a runtime of at most 2 blocking threads,
//! behind a tokio `Semaphore` of the same 34 permits (tokio's own queue is
//! unbounded): the same shape of admission by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use colorseam::BlockingPool;
use tokio::runtime::Runtime;
use tokio::sync::{Barrier, Semaphore};

use crate::{Point, Row, curve_report, curve_row, median, on_worker, percentile, us, verdict};

const POINTS: [usize; 3] = [64, 1_000, 10_000];
const REPS: usize = 3;
const THREADS: usize = 2;
const QUEUE: usize = 32;
/// The fairness goal: p99 ÷ p50 of the queue wait, at every point.
const FAIRNESS_LIMIT: f64 = 3.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    Colorseam,
    SpawnBlocking,
}

struct Round {
    /// Wall time per call (µs).
    us_per_call: f64,
    /// p99 ÷ p50 of the queue wait.
    fairness: f64,
    /// Queue wait p50 (µs).
    p50_us: f64,
    /// Calls measured (those that ended in the window).
    calls: usize,
}

/// How long every caller loops before the measured window opens: the
/// start is a burst (every caller's first call at once) and lasts about N
/// calls' time, 2–4 µs each here; 10 µs each allowed.
fn warm_up(callers: usize) -> Duration {
    Duration::from_millis(20) + Duration::from_micros(10) * callers as u32
}

/// How long the measured window lasts: every caller loops throughout it,
/// so exactly N callers compete all the while.
const WINDOW: Duration = Duration::from_millis(120);

fn round(contender: Contender, rt: &Runtime, callers: usize) -> Round {
    let pool = BlockingPool::builder()
        .name("compare-callers")
        .max_threads(THREADS)
        .queue_capacity(QUEUE)
        .build()
        .expect("a valid pool");
    let permits = Arc::new(Semaphore::new(THREADS + QUEUE));
    let stop = Arc::new(AtomicBool::new(false));
    // Every caller is spawned and waiting before any starts: spawning
    // 10,000 tasks takes a while, and the first ones would loop on a
    // nearly empty queue meanwhile.
    let all_in = Arc::new(Barrier::new(callers + 1));
    // Room for each caller's calls at up to 1 M calls/s, so the records'
    // reallocation is not in what is measured.
    let expected = ((warm_up(callers) + WINDOW).as_micros() as usize / callers) + 16;
    on_worker(rt, async move {
        let tasks: Vec<_> = (0..callers)
            .map(|_| {
                let (pool, permits) = (pool.clone(), permits.clone());
                let (all_in, stop) = (all_in.clone(), stop.clone());
                tokio::spawn(async move {
                    all_in.wait().await;
                    let mut calls = Vec::with_capacity(expected);
                    while !stop.load(Ordering::Relaxed) {
                        let called = Instant::now();
                        let started = match contender {
                            Contender::Colorseam => pool
                                .offload(Instant::now)
                                .await
                                .expect("a trivial call succeeds"),
                            Contender::SpawnBlocking => {
                                let _permit = permits
                                    .acquire()
                                    .await
                                    .expect("the semaphore is never closed");
                                tokio::task::spawn_blocking(Instant::now)
                                    .await
                                    .expect("a trivial call succeeds")
                            }
                        };
                        calls.push(Call {
                            wait: started.saturating_duration_since(called),
                            ended: Instant::now(),
                        });
                    }
                    calls
                })
            })
            .collect();
        all_in.wait().await;
        tokio::time::sleep(warm_up(callers)).await;
        let from = Instant::now();
        tokio::time::sleep(WINDOW).await;
        let until = Instant::now();
        stop.store(true, Ordering::Relaxed);
        let mut waits = Vec::new();
        for task in tasks {
            let calls = task.await.expect("a caller task panicked");
            waits.extend(
                calls
                    .iter()
                    .filter(|c| c.ended > from && c.ended <= until)
                    .map(|c| us(c.wait)),
            );
        }
        let p50 = median(&waits);
        Round {
            us_per_call: us(until - from) / waits.len().max(1) as f64,
            fairness: percentile(&waits, 0.99) / p50,
            p50_us: p50,
            calls: waits.len(),
        }
    })
}

/// One call as its caller saw it.
struct Call {
    /// From just before the call until its closure started.
    wait: Duration,
    /// When the caller had its value back.
    ended: Instant,
}

/// A 2-worker runtime with at most `THREADS` blocking threads.
fn bounded_blocking() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(THREADS)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

pub(crate) fn run(rows: &mut Vec<Row>) {
    let rts = [crate::runtime(), bounded_blocking()];
    let contenders = [Contender::Colorseam, Contender::SpawnBlocking];
    // [contender][point] -> per-rep figures
    let mut cost: [[Vec<f64>; 3]; 2] = Default::default();
    let mut fair: [[Vec<f64>; 3]; 2] = Default::default();
    let mut p50: [[Vec<f64>; 3]; 2] = Default::default();
    let mut measured = [[0usize; 3]; 2];
    for (p, &n) in POINTS.iter().enumerate() {
        for rep in 0..REPS {
            for c in crate::rotated(&contenders, rep) {
                let r = round(c, &rts[c as usize], n);
                cost[c as usize][p].push(r.us_per_call);
                fair[c as usize][p].push(r.fairness);
                p50[c as usize][p].push(r.p50_us);
                measured[c as usize][p] += r.calls;
            }
        }
    }
    let points = |figures: &[Vec<f64>; 3]| -> Vec<Point> {
        POINTS
            .iter()
            .zip(figures)
            .map(|(&n, reps)| Point {
                n,
                cost: median(reps),
            })
            .collect()
    };
    for (c, name) in [(0, "colorseam"), (1, "spawn_blocking")] {
        let waits: Vec<String> = POINTS
            .iter()
            .zip(&p50[c])
            .zip(&measured[c])
            .map(|((n, reps), calls)| format!("{n}: {:.0} µs ({calls} calls)", median(reps)))
            .collect();
        eprintln!("  callers: {name} queue wait p50 {}", waits.join(", "));
    }

    let mut row = curve_row(
        "curve: callers on one pool (2 threads, 32 queued): µs per call (1 ÷ throughput)",
        &points(&cost[0]),
        2,
    );
    row.spawn_blocking = curve_row("", &points(&cost[1]), 2).colorseam;
    rows.push(row);

    let cs_fair = points(&fair[0]);
    let mut row = curve_report(
        "…queue-wait fairness, p99 ÷ p50 (FIFO admission: ≈ 1)",
        &cs_fair,
        2,
    );
    row.spawn_blocking = curve_report("", &points(&fair[1]), 2).colorseam;
    let worst = cs_fair.iter().map(|p| p.cost).fold(0.0, f64::max);
    row.goal = format!("≤ {FAIRNESS_LIMIT:.0} at every point");
    row.ratio = format!("{worst:.2} worst");
    row.verdict = verdict(worst <= FAIRNESS_LIMIT);
    rows.push(row);
}
