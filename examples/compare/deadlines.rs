//! Cost curve: deadlines in flight (issue 15).
//!
//! 1k → 10k → 100k calls queued behind a pool whose one thread is held by a
//! gate job, every call with the same deadline a little in the future, so
//! all of them time out in the queue together: the worst case for the
//! timers, since every tokio sleep fires in the same tick and every alarm
//! lands in `colorseam-timer`'s heap at once. Each call is awaited by a
//! task of its own on a 2-worker runtime, as in a service where each
//! request makes one call.
//!
//! Measured per point, colorseam beside tokio's `time::timeout_at` around
//! `spawn_blocking` on a runtime whose one blocking thread is held the same
//! way:
//!
//! - **cost per timeout**: the whole process's CPU from the first submit
//!   until every caller has been released, ÷ N (judged: flat or log);
//! - **release overshoot p99**: each caller's release instant minus the
//!   shared deadline (reported). Every caller is due at the same instant
//!   and two workers release them one after another, so the last of N waits
//!   for the N − 1 before it: this grows with N for any timer, and is shown
//!   beside tokio's for that reason;
//! - the queue is checked empty (`metrics().queue_depth == 0`) after each
//!   round, before the gate opens: a timed-out queued call leaves nothing
//!   behind.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use crate::{Point, Row, cpu_ns, curve_report, curve_row, median, ms, on_worker, percentile};

const POINTS: [usize; 3] = [1_000, 10_000, 100_000];
const REPS: usize = 3;

/// How far ahead the shared deadline is set: enough to submit every call
/// first (about 1 µs each here; 4 µs allowed for a loaded machine), so all
/// of them are queued when it passes.
fn margin(n: usize) -> Duration {
    Duration::from_millis(20) + Duration::from_micros(4) * n as u32
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    Colorseam,
    SpawnBlocking,
}

/// What one round measured.
struct Round {
    /// Whole-process CPU per timed-out call (µs).
    cpu_us: f64,
    /// Release overshoot p99 (ms).
    p99_ms: f64,
    /// Calls made after the deadline had passed (refused at once, so
    /// cheaper than a real timeout): zero unless the machine is overloaded.
    late: usize,
}

/// A 2-worker runtime whose blocking pool has one thread: tokio's peer of
/// a one-thread pool.
fn one_blocking_thread() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Releases of every caller as their instants, then the overshoots (ms)
/// from `at`, and the round's figures.
async fn released(
    handles: Vec<tokio::task::JoinHandle<Instant>>,
    at: Instant,
    cpu_before: u64,
    late: usize,
) -> Round {
    let n = handles.len();
    let mut over = Vec::with_capacity(n);
    for handle in handles {
        let released = handle.await.expect("a caller task panicked");
        over.push(ms(released.saturating_duration_since(at)));
    }
    let cpu = cpu_ns() - cpu_before;
    Round {
        cpu_us: cpu as f64 / 1e3 / n as f64,
        p99_ms: percentile(&over, 0.99),
        late,
    }
}

fn colorseam_round(rt: &Runtime, n: usize) -> Round {
    let (pool, open, gate_call) = crate::curves::gated_pool("compare-deadlines", n);
    let submitter = pool.clone();
    let round = on_worker(rt, async move {
        let cpu_before = cpu_ns();
        let at = Instant::now() + margin(n);
        let mut handles = Vec::with_capacity(n);
        let mut late = 0;
        for _ in 0..n {
            late += usize::from(Instant::now() >= at);
            let call = submitter.offload_deadline(|| (), at);
            handles.push(tokio::spawn(async move {
                let err = call.await.expect_err("queued behind the gate");
                assert!(err.is_timeout(), "{err}");
                Instant::now()
            }));
        }
        released(handles, at, cpu_before, late).await
    });
    let m = pool.metrics();
    assert_eq!(
        m.queue_depth, 0,
        "every timed-out call left the queue: {m:?}"
    );
    assert_eq!(
        m.outcomes.timed_out_queued + m.outcomes.timed_out_waiting_for_room,
        n as u64,
        "every call timed out"
    );
    let _ = open.send(());
    on_worker(rt, async move {
        gate_call.await.expect("the gate job returns once opened");
    });
    round
}

fn spawn_blocking_round(rt: &Runtime, n: usize) -> Round {
    let (open, gate) = mpsc::channel::<()>();
    let (held_tx, held) = mpsc::channel::<()>();
    let gate_call = rt.spawn_blocking(move || {
        let _ = held_tx.send(());
        let _ = gate.recv();
    });
    held.recv().expect("the gate job holds the blocking thread");
    let round = on_worker(rt, async move {
        let cpu_before = cpu_ns();
        let at = Instant::now() + margin(n);
        let mut handles = Vec::with_capacity(n);
        let mut late = 0;
        for _ in 0..n {
            late += usize::from(Instant::now() >= at);
            let call = tokio::task::spawn_blocking(|| ());
            handles.push(tokio::spawn(async move {
                tokio::time::timeout_at(at.into(), call)
                    .await
                    .expect_err("queued behind the gate");
                Instant::now()
            }));
        }
        released(handles, at, cpu_before, late).await
    });
    let _ = open.send(());
    rt.block_on(gate_call)
        .expect("the gate job returns once opened");
    round
}

pub(crate) fn run(rows: &mut Vec<Row>) {
    let cs_rt = crate::runtime();
    let sb_rt = one_blocking_thread();
    let contenders = [Contender::Colorseam, Contender::SpawnBlocking];
    // [contender][point] -> per-rep figures
    let mut cpu: [[Vec<f64>; 3]; 2] = Default::default();
    let mut p99: [[Vec<f64>; 3]; 2] = Default::default();
    for (p, &n) in POINTS.iter().enumerate() {
        for rep in 0..REPS {
            for c in crate::rotated(&contenders, rep) {
                let round = match c {
                    Contender::Colorseam => colorseam_round(&cs_rt, n),
                    Contender::SpawnBlocking => spawn_blocking_round(&sb_rt, n),
                };
                if round.late > 0 {
                    eprintln!(
                        "  deadlines: {c:?} at {n}: {} calls made after the deadline (overloaded?)",
                        round.late
                    );
                }
                cpu[c as usize][p].push(round.cpu_us);
                p99[c as usize][p].push(round.p99_ms);
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
    let (cs_cpu, sb_cpu) = (points(&cpu[0]), points(&cpu[1]));
    let mut row = curve_row(
        "curve: deadlines in flight, all timing out in the queue: CPU per timeout (µs)",
        &cs_cpu,
        2,
    );
    row.spawn_blocking = curve_row("", &sb_cpu, 2).colorseam;
    rows.push(row);

    let (cs_p99, sb_p99) = (points(&p99[0]), points(&p99[1]));
    let mut row = curve_report(
        "…release overshoot p99, every caller due at once (ms; the last waits for all before it)",
        &cs_p99,
        1,
    );
    row.spawn_blocking = curve_report("", &sb_p99, 1).colorseam;
    rows.push(row);
}
