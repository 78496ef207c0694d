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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// p99 ÷ p50 of the calls started while each waited.
    order: f64,
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
    // Calls started so far: a call's start number minus the count when it
    // was made is how many calls went ahead of it.
    let served = Arc::new(AtomicU64::new(0));
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
                let served = served.clone();
                tokio::spawn(async move {
                    all_in.wait().await;
                    let mut calls = Vec::with_capacity(expected);
                    while !stop.load(Ordering::Relaxed) {
                        let (called, ahead_at_call) =
                            (Instant::now(), served.load(Ordering::SeqCst));
                        let served = served.clone();
                        let start = move || (Instant::now(), served.fetch_add(1, Ordering::SeqCst));
                        let (started, ahead_at_start) = match contender {
                            Contender::Colorseam => {
                                pool.offload(start).await.expect("a trivial call succeeds")
                            }
                            Contender::SpawnBlocking => {
                                let _permit = permits
                                    .acquire()
                                    .await
                                    .expect("the semaphore is never closed");
                                tokio::task::spawn_blocking(start)
                                    .await
                                    .expect("a trivial call succeeds")
                            }
                        };
                        calls.push(Call {
                            wait: started.saturating_duration_since(called),
                            overtaken: ahead_at_start.saturating_sub(ahead_at_call),
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
        let (mut waits, mut overtaken) = (Vec::new(), Vec::new());
        for task in tasks {
            let calls = task.await.expect("a caller task panicked");
            for call in calls.iter().filter(|c| c.ended > from && c.ended <= until) {
                waits.push(us(call.wait));
                overtaken.push(call.overtaken as f64);
            }
        }
        let p50 = median(&waits);
        Round {
            us_per_call: us(until - from) / waits.len().max(1) as f64,
            fairness: percentile(&waits, 0.99) / p50,
            order: percentile(&overtaken, 0.99) / median(&overtaken).max(1.0),
            p50_us: p50,
            calls: waits.len(),
        }
    })
}

/// One call as its caller saw it.
struct Call {
    /// From just before the call until its closure started.
    wait: Duration,
    /// Calls started meanwhile (FIFO: about N − 1, the other callers').
    overtaken: u64,
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
    let mut order: [[Vec<f64>; 3]; 2] = Default::default();
    let mut p50: [[Vec<f64>; 3]; 2] = Default::default();
    let mut measured = [[0usize; 3]; 2];
    for (p, &n) in POINTS.iter().enumerate() {
        for rep in 0..REPS {
            for c in crate::rotated(&contenders, rep) {
                let r = round(c, &rts[c as usize], n);
                cost[c as usize][p].push(r.us_per_call);
                fair[c as usize][p].push(r.fairness);
                order[c as usize][p].push(r.order);
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

    let mut row = curve_report(
        "…queue-wait fairness in time, p99 ÷ p50 (at 64 callers a wait is ~100 µs: OS time slices show)",
        &points(&fair[0]),
        2,
    );
    row.spawn_blocking = curve_report("", &points(&fair[1]), 2).colorseam;
    rows.push(row);

    let cs_order = points(&order[0]);
    let mut row = curve_report(
        "…admission order: calls started while each waited, p99 ÷ p50 (FIFO: ≈ 1, all N − 1 others once)",
        &cs_order,
        2,
    );
    row.spawn_blocking = curve_report("", &points(&order[1]), 2).colorseam;
    let worst = cs_order.iter().map(|p| p.cost).fold(0.0, f64::max);
    row.goal = format!("≤ {FAIRNESS_LIMIT:.0} at every point");
    row.ratio = format!("{worst:.2} worst");
    row.verdict = verdict(worst <= FAIRNESS_LIMIT);
    rows.push(row);
}
