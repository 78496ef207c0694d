//! Cost curve: pools in one process (issue 15).
//!
//! 1 → 100 → 1,000 `BlockingPool`s live at once, each with a little work:
//! every pool has run a few offloads (so its threads exist), and while the
//! figures are taken a few random pools get a call. At each point:
//!
//! - **round trip**: one trivial offload awaited at a time on one pool
//!   (p50), and the p50 of calls made round-robin across every pool (each
//!   call wakes another pool's idle thread);
//! - **monitor CPU**: the growth monitor is one thread per process
//!   (`colorseam-monitor`, see `src/pool/monitor.rs`), found by name in
//!   `/proc/self/task/*/comm`; its CPU time per second over two windows:
//!   *idle*, where a random pool gets one trivial call every few
//!   milliseconds (the monitor should not run at all: it looks only at
//!   pools with work queued and no idle thread), and *watched*, where a
//!   random pool gets a burst of CPU-bound calls, more than its eager
//!   threads, every few milliseconds (the monitor watches that pool until
//!   its queue drains, and never grows it, since its threads run: the same
//!   work for the monitor at every point, whichever pool it is);
//! - **`metrics::all()`**: time per call, which walks every pool, so it is
//!   linear in the number of pools by nature; judged per pool (time ÷
//!   pools), which must stay flat;
//! - **threads**: the process's OS threads with the pools alive and once
//!   they are dropped (their threads must be gone).

use std::hint::black_box;
use std::time::{Duration, Instant};

use colorseam::BlockingPool;

use crate::{
    Point, Row, curve_report, curve_row, median, on_worker, percentile, runtime, threads_now, us,
};

const POINTS: [usize; 3] = [1, 100, 1_000];
const REPS: usize = 3;
/// Sequential offloads to one pool, per rep.
const ONE_POOL_CALLS: usize = 1_000;
/// Offloads round-robin over every pool, per rep.
const ROUND_ROBIN_CALLS: usize = 1_000;
/// The monitor's CPU is read over windows this long, per rep.
const MONITOR_WINDOW: Duration = Duration::from_millis(200);
/// How often a random pool gets a call (idle).
const BURST_EVERY: Duration = Duration::from_millis(5);
/// How often a random pool gets a burst (watched), and over how long: a
/// watched pool stays watched 20 ms after its queue empties, so bursts
/// closer than that would keep one pool watched throughout at 1 pool (its
/// ticks backed off) while landing on a fresh pool each time at 1,000:
/// the pattern, not the pool count, would differ between the points.
const WATCHED_BURST_EVERY: Duration = Duration::from_millis(40);
const WATCHED_WINDOW: Duration = Duration::from_millis(320);
/// Each metrics loop runs at least this long: a thread's CPU time moves
/// only at scheduler ticks, so a loop of a millisecond can read as zero.
const METRICS_LOOP: Duration = Duration::from_millis(60);
/// The burst: more CPU-bound calls than a pool's eager threads (2 here, the
/// core count), so that the pool is watched until they are done.
const BURST_CALLS: usize = 4;
const BURST_SPIN: Duration = Duration::from_micros(200);
/// The monitor's CPU while the pools are idle that counts as negligible.
const IDLE_MONITOR_LIMIT_MS_PER_S: f64 = 1.0;
/// Pool snapshots taken by `metrics::all()` per rep, roughly (calls =
/// this ÷ pools).
const METRICS_POOL_SNAPSHOTS: usize = 5_000;

/// A small xorshift generator: which pool gets the next call.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// `n` pools, each having run a few offloads at once (so its eager
/// threads, two on two cores, exist).
pub(crate) fn pools(rt: &tokio::runtime::Runtime, n: usize) -> Vec<BlockingPool> {
    let pools = crate::curves::pools_named("curve-pool", n);
    on_worker(rt, crate::curves::warm(pools.clone()));
    pools
}

/// The growth monitor's threads (`colorseam-monitor`, cut to 15 bytes by
/// the kernel) and the CPU each has used, in ns; `None` if `/proc` cannot
/// be read.
fn monitor_threads() -> Option<Vec<u64>> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let mut found = Vec::new();
    for task in tasks.flatten() {
        let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) else {
            continue;
        };
        if !comm.trim_end().starts_with("colorseam-moni") {
            continue;
        }
        let cpu = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())?;
        found.push(cpu);
    }
    Some(found)
}

/// The pools' own threads (named `curve-pool-<i>-<n>`) alive now; `None`
/// if `/proc` cannot be read.
fn pool_threads() -> Option<usize> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let mut n = 0;
    for task in tasks.flatten() {
        // A thread that exits between the listing and this read is gone.
        if std::fs::read_to_string(task.path().join("comm"))
            .is_ok_and(|comm| comm.starts_with("curve-pool-"))
        {
            n += 1;
        }
    }
    Some(n)
}

/// CPU time this thread has used, in ns (0 if `/proc` cannot say; then the
/// figures read 0, not a made-up time).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A thread count for the table: `threads_now` reads 0 only when it could
/// not read `/proc/self/status` (a process has at least one thread).
fn count(n: usize) -> String {
    if n == 0 {
        "unreadable".into()
    } else {
        n.to_string()
    }
}

/// The monitor threads' CPU (ms per second) over a `window` in which a
/// random pool gets `calls` calls every `every`, each spinning for `spin`
/// (or trivial); `None` if `/proc` cannot be read.
fn monitor_window(
    rt: &tokio::runtime::Runtime,
    pools: &[BlockingPool],
    rng: &mut Rng,
    (window, every): (Duration, Duration),
    calls: usize,
    spin: Option<Duration>,
) -> Option<f64> {
    let picked: Vec<BlockingPool> = (0..(window.as_micros() / every.as_micros()))
        .map(|_| pools[rng.below(pools.len())].clone())
        .collect();
    let before = monitor_threads();
    let window = Instant::now();
    on_worker(rt, async move {
        let mut next = Instant::now();
        for pool in picked {
            let burst: Vec<_> = (0..calls)
                .map(|_| {
                    pool.offload(move || {
                        if let Some(spin) = spin {
                            let until = Instant::now() + spin;
                            while Instant::now() < until {
                                std::hint::spin_loop();
                            }
                        }
                    })
                })
                .collect();
            for call in burst {
                call.await.expect("a call in the window");
            }
            next += every;
            tokio::time::sleep_until(next.into()).await;
        }
    });
    let elapsed = window.elapsed().as_secs_f64();
    let (before, after) = (before?, monitor_threads()?);
    // A monitor that started in the window (none before) counts from zero.
    let used = after
        .iter()
        .sum::<u64>()
        .saturating_sub(before.iter().sum());
    Some(used as f64 / 1e6 / elapsed)
}

struct Figures {
    one_pool_p50: f64,
    round_robin_p50: f64,
    /// Monitor CPU, ms per second of window; `None` if unreadable.
    monitor_idle_ms_per_s: Option<f64>,
    monitor_watched_ms_per_s: Option<f64>,
    metrics_all_us: f64,
    snapshots_per_call: usize,
    one_metrics_ns: f64,
}

fn measure(rt: &tokio::runtime::Runtime, pools: &[BlockingPool], rng: &mut Rng) -> Figures {
    // (a) Round trip on one pool, then round-robin over all of them.
    let one = pools[0].clone();
    let lat = on_worker(rt, async move {
        let mut lat = Vec::with_capacity(ONE_POOL_CALLS);
        for _ in 0..ONE_POOL_CALLS {
            let start = Instant::now();
            black_box(one.offload(|| black_box(1u64)).await.expect("offload"));
            lat.push(us(start.elapsed()));
        }
        lat
    });
    let one_pool_p50 = percentile(&lat, 0.5);
    let all = pools.to_vec();
    let first = rng.below(pools.len());
    let lat = on_worker(rt, async move {
        let mut lat = Vec::with_capacity(ROUND_ROBIN_CALLS);
        for i in 0..ROUND_ROBIN_CALLS {
            let pool = &all[(first + i) % all.len()];
            let start = Instant::now();
            black_box(pool.offload(|| black_box(1u64)).await.expect("offload"));
            lat.push(us(start.elapsed()));
        }
        lat
    });
    // p50, not the mean: on a shared machine a few preempted calls move a
    // mean of 1,000 by half.
    let round_robin_p50 = percentile(&lat, 0.5);

    // (b) The monitor's CPU, idle and watching.
    let monitor_idle_ms_per_s =
        monitor_window(rt, pools, rng, (MONITOR_WINDOW, BURST_EVERY), 1, None);
    let monitor_watched_ms_per_s = monitor_window(
        rt,
        pools,
        rng,
        (WATCHED_WINDOW, WATCHED_BURST_EVERY),
        BURST_CALLS,
        Some(BURST_SPIN),
    );

    // (c) metrics::all(): linear in the pools by nature.
    let batch = (METRICS_POOL_SNAPSHOTS / pools.len()).clamp(5, 2_000);
    // Timed in this thread's CPU, not wall time: on a shared machine a
    // loop of a few milliseconds is preempted often enough to double it;
    // and run for `METRICS_LOOP` at least, in batches, so the CPU reading
    // has moved by many scheduler ticks.
    let snapshots_per_call = colorseam::metrics::all().len();
    let (start, wall, mut calls) = (thread_cpu_ns(), Instant::now(), 0);
    while wall.elapsed() < METRICS_LOOP {
        for _ in 0..batch {
            black_box(colorseam::metrics::all());
        }
        calls += batch;
    }
    let metrics_all_us = (thread_cpu_ns() - start) as f64 / 1e3 / calls as f64;
    // The same snapshot of one pool, over and over: its data stays in the
    // cache, where `all()` over 1,000 pools streams megabytes.
    let (start, wall, mut calls) = (thread_cpu_ns(), Instant::now(), 0);
    while wall.elapsed() < METRICS_LOOP {
        for _ in 0..METRICS_POOL_SNAPSHOTS {
            black_box(pools[0].metrics());
        }
        calls += METRICS_POOL_SNAPSHOTS;
    }
    let one_metrics_ns = (thread_cpu_ns() - start) as f64 / calls as f64;

    Figures {
        one_pool_p50,
        round_robin_p50,
        monitor_idle_ms_per_s,
        monitor_watched_ms_per_s,
        metrics_all_us,
        snapshots_per_call,
        one_metrics_ns,
    }
}

pub(crate) fn run(rows: &mut Vec<Row>) {
    let rt = runtime();
    let mut rng = Rng::new(0x005e_ed0f_9001);
    let mut one_pool = Vec::new();
    let mut round_robin = Vec::new();
    let mut idle = Vec::new();
    let mut watched = Vec::new();
    let mut monitor_unreadable = false;
    let mut all_call = Vec::new();
    let mut all_per_pool = Vec::new();
    let mut one_metrics = Vec::new();
    let mut threads = Vec::new();
    let mut monitor_count = None;
    for n in POINTS {
        let before = threads_now();
        let pools = pools(&rt, n);
        let with = threads_now();
        let named_with = pool_threads();
        let mut figures = Vec::new();
        for _ in 0..REPS {
            figures.push(measure(&rt, &pools, &mut rng));
        }
        let m = |f: fn(&Figures) -> f64| median(&figures.iter().map(f).collect::<Vec<_>>());
        one_pool.push(Point {
            n,
            cost: m(|f| f.one_pool_p50),
        });
        round_robin.push(Point {
            n,
            cost: m(|f| f.round_robin_p50),
        });
        let cpu: Vec<f64> = figures
            .iter()
            .filter_map(|f| f.monitor_idle_ms_per_s)
            .collect();
        monitor_unreadable |= cpu.len() < figures.len();
        idle.push(Point {
            n,
            cost: median(&cpu),
        });
        let cpu: Vec<f64> = figures
            .iter()
            .filter_map(|f| f.monitor_watched_ms_per_s)
            .collect();
        monitor_unreadable |= cpu.len() < figures.len();
        watched.push(Point {
            n,
            cost: median(&cpu),
        });
        let per_call = m(|f| f.metrics_all_us);
        let snapshots = figures[0].snapshots_per_call;
        all_call.push(Point { n, cost: per_call });
        one_metrics.push(Point {
            n,
            cost: m(|f| f.one_metrics_ns),
        });
        all_per_pool.push(Point {
            n,
            cost: per_call * 1e3 / snapshots as f64,
        });
        monitor_count = monitor_threads().map(|m| m.len());
        drop(pools);
        // Every pool thread must be gone (the process may have gained the
        // monitor, started for the first time during the first point).
        let until = Instant::now() + Duration::from_secs(5);
        while pool_threads().is_some_and(|n| n > 0) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        let named = |n: Option<usize>| n.map_or_else(|| "unreadable".into(), |n| n.to_string());
        threads.push(format!(
            "{}: {} → {} ({} named curve-pool-*) → {} ({})",
            crate::scale(n),
            count(before),
            count(with),
            named(named_with),
            count(threads_now()),
            named(pool_threads()),
        ));
    }
    rows.push(curve_row(
        "pools: offload round trip on one pool, p50 (µs)",
        &one_pool,
        1,
    ));
    rows.push(curve_row(
        "pools: offload round-robin over every pool, p50 (µs)",
        &round_robin,
        1,
    ));
    let monitors = monitor_count.map_or_else(|| "unreadable".into(), |n| n.to_string());
    let unreadable = if monitor_unreadable {
        " (some windows unreadable)"
    } else {
        ""
    };
    // Idle, the monitor should not run at all: judged against an absolute
    // limit (a ratio of zeros says nothing).
    let mut row = curve_report(
        &format!(
            "pools: monitor CPU, pools idle but for a trivial call every 5 ms, ms per s ({monitors} monitor thread in the process)"
        ),
        &idle,
        3,
    );
    row.colorseam.push_str(unreadable);
    let worst = idle.iter().map(|p| p.cost).fold(0.0, f64::max);
    row.goal = format!("negligible: ≤ {IDLE_MONITOR_LIMIT_MS_PER_S} ms per s at every point");
    row.ratio = format!(
        "{:.2}× the limit at worst",
        worst / IDLE_MONITOR_LIMIT_MS_PER_S
    );
    row.verdict = crate::verdict(!monitor_unreadable && worst <= IDLE_MONITOR_LIMIT_MS_PER_S);
    rows.push(row);
    let mut row = curve_row(
        "pools: monitor CPU, a burst of 4 CPU-bound calls on a random pool every 40 ms, ms per s",
        &watched,
        2,
    );
    row.colorseam.push_str(unreadable);
    rows.push(row);
    rows.push(curve_report(
        "pools: metrics::all() per call, linear in pools by nature (µs of the caller's CPU)",
        &all_call,
        1,
    ));
    rows.push(curve_row(
        "pools: metrics::all() per pool snapshot (ns of the caller's CPU)",
        &all_per_pool,
        0,
    ));
    rows.push(curve_report(
        "pools: one pool's metrics(), called over and over (cache-hot; ns of CPU)",
        &one_metrics,
        0,
    ));
    rows.push(Row::new(
        "pools: OS threads before → with the pools → after they are dropped (the pools' own)",
        threads.join(" / "),
    ));
}
