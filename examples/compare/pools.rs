//! Cost curve: pools in one process (issue 15).
//!
//! 1 → 100 → 1,000 `BlockingPool`s live at once, each with a little work:
//! every pool has run a few offloads (so its threads exist), and while the
//! figures are taken a few random pools get a call. At each point:
//!
//! - **round trip**: one trivial offload awaited at a time on one pool
//!   (p50), and a mean over calls made round-robin across every pool (each
//!   call wakes another pool's idle thread);
//! - **monitor CPU**: the growth monitor is one thread per process
//!   (`colorseam-monitor`, see `src/pool/monitor.rs`), found by name in
//!   `/proc/self/task/*/comm`; its CPU time over a window in which a random
//!   pool gets a small burst of blocking calls every few milliseconds (a
//!   burst past the pool's eager limit is what the monitor watches), per
//!   second of window. The monitor looks only at pools with queued work, so
//!   idle pools should cost it nothing;
//! - **`metrics::all()`**: time per call, which walks every pool, so it is
//!   linear in the number of pools by nature; judged per pool (time ÷
//!   pools), which must stay flat;
//! - **threads**: the process's OS threads with the pools alive and once
//!   they are dropped (their threads must be gone).

use std::hint::black_box;
use std::time::{Duration, Instant};

use colorseam::BlockingPool;

use crate::{
    Point, Row, curve_report, curve_row, median, on_worker, percentile, runtime, settle_threads,
    threads_now, us,
};

const POINTS: [usize; 3] = [1, 100, 1_000];
const REPS: usize = 3;
/// Sequential offloads to one pool, per rep.
const ONE_POOL_CALLS: usize = 1_000;
/// Offloads round-robin over every pool, per rep.
const ROUND_ROBIN_CALLS: usize = 1_000;
/// The monitor's CPU is read over this window, per rep.
const MONITOR_WINDOW: Duration = Duration::from_millis(300);
/// How often a random pool gets a burst in the window.
const BURST_EVERY: Duration = Duration::from_millis(10);
/// The burst: more blocking calls than a pool's eager limit (2 here, the
/// core count), so that the pool is watched until they are done.
const BURST_CALLS: usize = 4;
const BURST_SLEEP: Duration = Duration::from_millis(1);
/// Time spent in `metrics::all()` per rep, roughly (calls = this ÷ pools).
const METRICS_POOL_SNAPSHOTS: usize = 20_000;

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
    let pools: Vec<BlockingPool> = (0..n)
        .map(|i| {
            BlockingPool::builder()
                .name(format!("curve-pool-{i}"))
                .max_threads(8)
                .build()
                .expect("a valid pool")
        })
        .collect();
    let warm = pools.clone();
    on_worker(rt, async move {
        for pool in &warm {
            let calls: Vec<_> = (0..3)
                .map(|_| pool.offload(|| std::thread::sleep(Duration::from_micros(200))))
                .collect();
            for call in calls {
                call.await.expect("a warm-up offload");
            }
        }
    });
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

/// A thread count for the table: `threads_now` reads 0 only when it could
/// not read `/proc/self/status` (a process has at least one thread).
fn count(n: usize) -> String {
    if n == 0 {
        "unreadable".into()
    } else {
        n.to_string()
    }
}

struct Figures {
    one_pool_p50: f64,
    round_robin_mean: f64,
    /// Monitor CPU, ms per second of window; `None` if unreadable.
    monitor_ms_per_s: Option<f64>,
    metrics_all_us: f64,
    snapshots_per_call: usize,
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
    let round_robin_mean = on_worker(rt, async move {
        let start = Instant::now();
        for i in 0..ROUND_ROBIN_CALLS {
            let pool = &all[(first + i) % all.len()];
            black_box(pool.offload(|| black_box(1u64)).await.expect("offload"));
        }
        us(start.elapsed()) / ROUND_ROBIN_CALLS as f64
    });

    // (b) The monitor's CPU over a window of sparse bursts.
    let before = monitor_threads();
    let window = Instant::now();
    let picks: Vec<usize> = (0..(MONITOR_WINDOW.as_millis() / BURST_EVERY.as_millis()))
        .map(|_| rng.below(pools.len()))
        .collect();
    let burst_pools: Vec<BlockingPool> = picks.iter().map(|&i| pools[i].clone()).collect();
    on_worker(rt, async move {
        let mut next = Instant::now();
        for pool in burst_pools {
            let calls: Vec<_> = (0..BURST_CALLS)
                .map(|_| pool.offload(|| std::thread::sleep(BURST_SLEEP)))
                .collect();
            for call in calls {
                call.await.expect("a burst call");
            }
            next += BURST_EVERY;
            tokio::time::sleep_until(next.into()).await;
        }
    });
    let elapsed = window.elapsed().as_secs_f64();
    let after = monitor_threads();
    let monitor_ms_per_s = match (before, after) {
        (Some(b), Some(a)) => {
            // Per-thread deltas; a monitor that started in the window (none
            // before) counts from zero.
            let used = a.iter().sum::<u64>().saturating_sub(b.iter().sum());
            Some(used as f64 / 1e6 / elapsed)
        }
        _ => None,
    };

    // (c) metrics::all(): linear in the pools by nature.
    let calls = (METRICS_POOL_SNAPSHOTS / pools.len()).clamp(5, 2_000);
    let snapshots_per_call = colorseam::metrics::all().len();
    let start = Instant::now();
    for _ in 0..calls {
        black_box(colorseam::metrics::all());
    }
    let metrics_all_us = us(start.elapsed()) / calls as f64;

    Figures {
        one_pool_p50,
        round_robin_mean,
        monitor_ms_per_s,
        metrics_all_us,
        snapshots_per_call,
    }
}

pub(crate) fn run(rows: &mut Vec<Row>) {
    let rt = runtime();
    let mut rng = Rng::new(0x5eed_0f_9001);
    let mut one_pool = Vec::new();
    let mut round_robin = Vec::new();
    let mut monitor = Vec::new();
    let mut monitor_unreadable = false;
    let mut all_call = Vec::new();
    let mut all_per_pool = Vec::new();
    let mut threads = Vec::new();
    let mut monitor_count = None;
    for n in POINTS {
        let before = threads_now();
        let pools = pools(&rt, n);
        let with = threads_now();
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
            cost: m(|f| f.round_robin_mean),
        });
        let cpu: Vec<f64> = figures.iter().filter_map(|f| f.monitor_ms_per_s).collect();
        monitor_unreadable |= cpu.len() < figures.len();
        monitor.push(Point {
            n,
            cost: median(&cpu),
        });
        let per_call = m(|f| f.metrics_all_us);
        let snapshots = figures[0].snapshots_per_call;
        all_call.push(Point { n, cost: per_call });
        all_per_pool.push(Point {
            n,
            cost: per_call * 1e3 / snapshots as f64,
        });
        monitor_count = monitor_threads().map(|m| m.len());
        drop(pools);
        // Every pool thread must be gone: back to the count before.
        settle_threads(before, Duration::from_secs(5));
        threads.push(format!(
            "{}: {} → {} → {}",
            crate::scale(n),
            count(before),
            count(with),
            count(threads_now())
        ));
    }
    rows.push(curve_row(
        "pools: offload round trip on one pool, p50 (µs)",
        &one_pool,
        1,
    ));
    rows.push(curve_row(
        "pools: offload round-robin over every pool, mean (µs)",
        &round_robin,
        1,
    ));
    let monitors = monitor_count.map_or_else(|| "unreadable".into(), |n| n.to_string());
    let mut row = curve_report(
        &format!(
            "pools: monitor thread CPU, sparse bursts, ms per s ({monitors} monitor thread(s) in the process)"
        ),
        &monitor,
        3,
    );
    if monitor_unreadable {
        row.colorseam.push_str(" (some windows unreadable)");
    }
    rows.push(row);
    rows.push(curve_report(
        "pools: metrics::all() per call, linear in pools by nature (µs)",
        &all_call,
        1,
    ));
    rows.push(curve_row(
        "pools: metrics::all() per pool snapshot (ns)",
        &all_per_pool,
        0,
    ));
    rows.push(Row::new(
        "pools: OS threads before → with the pools → after they are dropped",
        threads.join(" / "),
    ));
}
