//! colorseam beside its peers, every scenario of the performance goals in one
//! process and one run, printed as one table.
//!
//! ```text
//! cargo run --release --example compare
//! ```
//!
//! It takes about 75 s on 2 cores. The machine it was written for is
//! shared and noisy, so only ratios measured side by side mean anything:
//! every scenario runs its contenders interleaved (A B C A B C ..., the
//! order rotated each rep) and reports the median over several reps. Async
//! callers are tasks on a 2-worker multi-thread tokio runtime, as in a real
//! service; sync callers are this program's main thread, with no runtime
//! entered.
//!
//! Scenarios (goal in brackets):
//!
//! - **round trip**: one trivial closure offloaded and awaited at a time;
//!   per-call p50 and p99 [≤ 1.0× `spawn_blocking`, stretch ≤ 0.5×], and
//!   the process's CPU use while the pools then sit idle [negligible].
//! - **burst**: 100,000 trivial closures submitted at once, then awaited in
//!   order; jobs/s [≥ 5× `spawn_blocking`, stretch ≥ 1.5 M/s and within 2× the raw floor]
//!   and OS threads added, read from `/proc/self/status` [≤ cores + 2].
//!   colorseam runs a default-sized pool (64 threads) whose queue holds the
//!   burst.
//! - **sleep jobs**: 2,000 jobs of 1 ms `std::thread::sleep`, 64 in flight on
//!   64 threads; wall time [≤ 1.15× the ideal 31.25 ms, and ≤
//!   `spawn_blocking` held to 64 by a semaphore].
//! - **timeout**: a 50 ms timeout around a 500 ms blocking call; how long
//!   after the 50 ms the caller is released, p99 [≤ tokio's `time::timeout`
//!   around `spawn_blocking`], and how long dropping the pool (and its
//!   caller's runtime) then takes [~0 ms].
//! - **probe**: a task sleeping 1 ms in a loop records how late it wakes
//!   (p99) while 200 tasks each make a 20 ms blocking call, five storms in a
//!   row. The same storm of 200 tasks awaiting a 20 ms `tokio::time::sleep`
//!   instead is shown beside it: what the tasks alone cost the runtime
//!   [≤ 1.1× that async-only storm].
//! - **block_on** from a plain thread: a ready future (mean per call) and a
//!   future woken from another std thread (p50) [ready ≤ 1.5× `pollster`;
//!   woken ≤ 1.2× `pollster` and under tokio's `Handle::block_on`].
//! - **memory**: heap bytes per queued job, beyond the closure (a
//!   zero-sized closure here), counted by a global allocator wrapper while
//!   10,000 jobs are queued behind a pool whose one thread is blocked
//!   [≤ 256 B].
//! - **instrumentation**: `detect::instrument` around a trivial future,
//!   polled a million times, with and without a `Watchdog`, minus the bare
//!   future [≤ 50 ns per poll].
//!
//!
//! Cost curves (per-operation cost at each point, and last ÷ first [flat
//! or logarithmic: ≤ 2× over the span, where linear would be 100×+]):
//!
//! - **deadlines**: 1k → 10k → 100k queued calls with deadlines, all timing
//!   out: cost per timeout and release overshoot p99 (`deadlines.rs`).
//! - **pools**: 1 → 100 → 1,000 pools in one process, each with a little
//!   work: round trip, the monitor thread's CPU per second and
//!   `metrics::all()` time (`pools.rs`).
//! - **callers**: 64 → 1,000 → 10,000 concurrent async callers on one
//!   bounded pool: queue-wait fairness (p99 ÷ p50) and throughput
//!   (`callers.rs`).
//! - **sandwiches**: 1 → 100 → 1,000 nested async → sync → async calls in
//!   flight (`sandwiches.rs`).
//! - **adapters**: `ForAsync` and `ThreadBound` calls, 10 → 10,000 in
//!   flight (`adapters.rs`).
//!
//! The raw floors are what the OS and a plain channel cost: long-lived std
//! threads taking boxed closures from a mutex-and-condvar queue, answering
//! on a tokio oneshot. Progress goes to stderr, the table to stdout as
//! Markdown.

#[path = "../../benches/support/fixtures.rs"]
mod fixtures;
// The loads of the cost curves, shared with `cargo bench --bench scale`.
#[path = "../../benches/support/curves.rs"]
mod curves;

// The cost curves (issue 15): one module each, sharing the helpers and the
// table of this file.
mod adapters;
mod callers;
mod deadlines;
mod pools;
mod sandwiches;
use fixtures::{WakerThread, Yields};

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::task::{Context, Waker};
use std::thread;
use std::time::{Duration, Instant};

use colorseam::BlockingPool;
use tokio::runtime::Runtime;
use tokio::sync::{Semaphore, oneshot};

// ---------------------------------------------------------------- allocator

/// The system allocator, counting net bytes while [`COUNTING`] is set (one
/// relaxed load per call otherwise).
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static NET_BYTES: AtomicIsize = AtomicIsize::new(0);

fn count(delta: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        NET_BYTES.fetch_add(delta, Ordering::Relaxed);
    }
}

fn signed(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

// SAFETY: every call is forwarded unchanged to `System`; the wrapper only
// counts sizes.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(signed(layout.size()));
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(signed(layout.size()));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, which is `System`.
        unsafe { System.dealloc(ptr, layout) };
        count(-signed(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator, which is `System`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count(signed(new_size) - signed(layout.size()));
        }
        new
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

// ------------------------------------------------------------------ helpers

/// OS threads of this process, from `/proc/self/status`.
fn threads_now() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Waits (at most `limit`) until the process is down to `target` threads,
/// so a scenario's count does not include the last one's leftovers.
fn settle_threads(target: usize, limit: Duration) {
    let until = Instant::now() + limit;
    while threads_now() > target && Instant::now() < until {
        thread::sleep(Duration::from_millis(10));
    }
}

/// CPU time used by every thread of the process so far, from
/// `/proc/self/task/*/schedstat`, in nanoseconds.
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Whole-process CPU (µs) per call while `run` makes `calls` calls.
fn cpu_us_per_call(calls: usize, run: impl FnOnce()) -> f64 {
    let before = cpu_ns();
    run();
    (cpu_ns() - before) as f64 / 1e3 / calls as f64
}

fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(samples: &[f64]) -> f64 {
    percentile(samples, 0.5)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `items` rotated left by `by`, so each rep starts with a different
/// contender.
fn rotated<T: Copy>(items: &[T], by: usize) -> Vec<T> {
    let mut v = items.to_vec();
    if !v.is_empty() {
        let n = by % v.len();
        v.rotate_left(n);
    }
    v
}

/// A 2-worker multi-thread runtime: the async callers' home.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Runs `fut` as a task on `rt`, so its caller is a runtime worker.
fn on_worker<F>(rt: &Runtime, fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(async move { tokio::spawn(fut).await.expect("the measured task panicked") })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Colorseam,
    SpawnBlocking,
    Unblock,
    Raw,
}

const OFFLOADERS: [Peer; 4] = [
    Peer::Colorseam,
    Peer::SpawnBlocking,
    Peer::Unblock,
    Peer::Raw,
];

// ---------------------------------------------------------------- raw floor

type RawJob = Box<dyn FnOnce() + Send>;

struct RawShared {
    state: Mutex<RawState>,
    work: Condvar,
}

struct RawState {
    jobs: VecDeque<RawJob>,
    idle: usize,
    closed: bool,
}

/// The floor: `threads` long-lived std threads taking boxed closures from a
/// mutex-and-condvar queue (an MPMC channel). Dropping it lets them exit.
#[derive(Clone)]
struct RawPool {
    shared: Arc<RawShared>,
}

impl RawPool {
    fn start(threads: usize) -> Self {
        let shared = Arc::new(RawShared {
            state: Mutex::new(RawState {
                jobs: VecDeque::new(),
                idle: 0,
                closed: false,
            }),
            work: Condvar::new(),
        });
        for n in 0..threads {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("raw-floor-{n}"))
                .spawn(move || {
                    let mut state = shared.state.lock().expect("raw queue");
                    loop {
                        if let Some(job) = state.jobs.pop_front() {
                            drop(state);
                            job();
                            state = shared.state.lock().expect("raw queue");
                        } else if state.closed {
                            return;
                        } else {
                            state.idle += 1;
                            state = shared.work.wait(state).expect("raw queue");
                            state.idle -= 1;
                        }
                    }
                })
                .expect("a raw thread");
        }
        RawPool { shared }
    }

    fn submit(&self, job: RawJob) {
        let mut state = self.shared.state.lock().expect("raw queue");
        state.jobs.push_back(job);
        let wake = state.idle > 0;
        drop(state);
        if wake {
            self.shared.work.notify_one();
        }
    }

    /// Runs `f` on the pool; the returned future resolves with its value.
    fn run<T, F>(&self, f: F) -> impl Future<Output = T> + Send + 'static
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.submit(Box::new(move || {
            let _receiver_gone = tx.send(f());
        }));
        async move { rx.await.expect("the raw thread answers") }
    }

    fn close(&self) {
        self.shared.state.lock().expect("raw queue").closed = true;
        self.shared.work.notify_all();
    }
}

// ------------------------------------------------------------------- table

struct Row {
    scenario: String,
    colorseam: String,
    spawn_blocking: String,
    unblock: String,
    floor: String,
    pollster: String,
    handle: String,
    goal: String,
    ratio: String,
    verdict: String,
}

const NA: &str = "—";

impl Row {
    fn new(scenario: &str, colorseam: String) -> Self {
        Row {
            scenario: scenario.to_owned(),
            colorseam,
            spawn_blocking: NA.into(),
            unblock: NA.into(),
            floor: NA.into(),
            pollster: NA.into(),
            handle: NA.into(),
            goal: NA.into(),
            ratio: NA.into(),
            verdict: "reported".into(),
        }
    }

    fn cells(&self) -> [&str; 10] {
        [
            &self.scenario,
            &self.colorseam,
            &self.spawn_blocking,
            &self.unblock,
            &self.floor,
            &self.pollster,
            &self.handle,
            &self.goal,
            &self.ratio,
            &self.verdict,
        ]
    }
}

fn verdict(met: bool) -> String {
    if met { "met" } else { "**not met**" }.to_owned()
}

fn print_table(rows: &[Row]) {
    let header = [
        "scenario",
        "colorseam",
        "tokio spawn_blocking",
        "blocking::unblock",
        "raw floor / baseline",
        "pollster",
        "tokio Handle::block_on",
        "goal",
        "ratio",
        "verdict",
    ];
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.cells()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 10]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    line(header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    println!("|-{}-|", rule.join("-|-"));
    for row in rows {
        line(row.cells());
    }
}

/// One point of a cost curve: the scale `n` and the per-operation cost there.
#[derive(Debug, Clone, Copy)]
struct Point {
    n: usize,
    cost: f64,
}

/// How much a curve's per-operation cost may grow from its first point to
/// its last and still count as flat or logarithmic: 2×, over spans of 100×
/// to 1,000× where a linear cost would grow 100× to 1,000×.
const CURVE_GROWTH_LIMIT: f64 = 2.0;

/// A row for a cost curve: the per-operation cost at each point
/// ("1k: 3.1 / 10k: 3.3 / 100k: 3.4"), the last ÷ first ratio, and whether
/// that stays flat or logarithmic. `decimals` formats the costs.
fn curve_row(scenario: &str, points: &[Point], decimals: usize) -> Row {
    let cells: Vec<String> = points
        .iter()
        .map(|p| format!("{}: {:.*}", scale(p.n), decimals, p.cost))
        .collect();
    let mut row = Row::new(scenario, cells.join(" / "));
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return row;
    };
    let growth = last.cost / first.cost;
    row.goal = format!(
        "flat or log: ≤ {CURVE_GROWTH_LIMIT:.0}× over {}× (linear: {}×)",
        last.n / first.n.max(1),
        last.n / first.n.max(1)
    );
    row.ratio = format!("{growth:.2}× last ÷ first");
    row.verdict = verdict(growth <= CURVE_GROWTH_LIMIT);
    row
}

/// A reported (not judged) row for a curve: figures at each point and
/// last ÷ first.
fn curve_report(scenario: &str, points: &[Point], decimals: usize) -> Row {
    let mut row = curve_row(scenario, points, decimals);
    row.goal = "reported".into();
    row.verdict = "reported".into();
    row
}

/// `1_000` as "1k", `100_000` as "100k".
fn scale(n: usize) -> String {
    if n >= 1_000 && n % 1_000 == 0 {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

fn progress(started: Instant, what: &str) {
    eprintln!("[{:5.1} s] {what}", started.elapsed().as_secs_f64());
}

// -------------------------------------------------------------- round trip

const RT_CALLS: usize = 3_000;
const RT_REPS: usize = 5;

/// Latencies (µs) of `n` sequential trivial offloads through `peer`.
async fn sequential(peer: Peer, pool: BlockingPool, raw: RawPool, n: usize) -> Vec<f64> {
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let value = match peer {
            Peer::Colorseam => pool.offload(|| black_box(1u64)).await.expect("offload"),
            Peer::SpawnBlocking => tokio::task::spawn_blocking(|| black_box(1u64))
                .await
                .expect("spawn_blocking"),
            Peer::Unblock => blocking::unblock(|| black_box(1u64)).await,
            Peer::Raw => raw.run(|| black_box(1u64)).await,
        };
        black_box(value);
        latencies.push(us(start.elapsed()));
    }
    latencies
}

fn round_trip(rows: &mut Vec<Row>) {
    let rt = runtime();
    let pool = BlockingPool::builder()
        .name("compare-round-trip")
        .build()
        .expect("a valid pool");
    let raw = RawPool::start(1);
    let mut p50: [Vec<f64>; 4] = Default::default();
    let mut p99: [Vec<f64>; 4] = Default::default();
    for peer in OFFLOADERS {
        // Warm-up: threads started, caches filled.
        let _ = on_worker(&rt, sequential(peer, pool.clone(), raw.clone(), 300));
    }
    for rep in 0..RT_REPS {
        for peer in rotated(&OFFLOADERS, rep) {
            let lat = on_worker(&rt, sequential(peer, pool.clone(), raw.clone(), RT_CALLS));
            let i = peer as usize;
            p50[i].push(percentile(&lat, 0.50));
            p99[i].push(percentile(&lat, 0.99));
        }
    }
    // Idle CPU: the pools sit idle (threads alive) for a while.
    let idle_window = Duration::from_millis(300);
    let cpu_before = cpu_ns();
    thread::sleep(idle_window);
    let idle_cpu = (cpu_ns() - cpu_before) as f64 / 1e3 / idle_window.as_secs_f64();
    raw.close();

    for (name, figures) in [("round trip p50 (µs)", &p50), ("round trip p99 (µs)", &p99)] {
        let m = figures.each_ref().map(|v| median(v));
        let ratio = m[0] / m[1];
        let mut row = Row::new(name, format!("{:.1}", m[0]));
        row.spawn_blocking = format!("{:.1}", m[1]);
        row.unblock = format!("{:.1}", m[2]);
        row.floor = format!("{:.1}", m[3]);
        row.goal = "≤ 1.0× spawn_blocking (stretch ≤ 0.5×)".into();
        row.ratio = format!("{ratio:.2}×");
        row.verdict = format!(
            "{}{}",
            verdict(ratio <= 1.0),
            if ratio <= 0.5 { ", stretch met" } else { "" }
        );
        rows.push(row);
    }
    let mut row = Row::new(
        "idle CPU after round trips, whole process (µs CPU/s)",
        format!("{idle_cpu:.0}"),
    );
    row.goal = "negligible".into();
    rows.push(row);

    // What spinning costs: calls 1 ms apart, so every call finds the worker
    // parked (or spinning in vain after the previous one).
    let raw = RawPool::start(1);
    let mut cpu: [Vec<f64>; 4] = Default::default();
    for rep in 0..SPARSE_REPS {
        for peer in rotated(&OFFLOADERS, rep) {
            let per_call = cpu_us_per_call(SPARSE_CALLS, || {
                on_worker(&rt, sparse(peer, pool.clone(), raw.clone()));
            });
            cpu[peer as usize].push(per_call);
        }
    }
    raw.close();
    let m = cpu.each_ref().map(|v| median(v));
    let mut row = Row::new(
        "CPU per call, calls 1 ms apart, whole process (µs)",
        format!("{:.1}", m[0]),
    );
    row.spawn_blocking = format!("{:.1}", m[1]);
    row.unblock = format!("{:.1}", m[2]);
    row.floor = format!("{:.1}", m[3]);
    row.goal = "reported: pool workers do not spin".into();
    row.ratio = format!("+{:.1} µs vs spawn_blocking", m[0] - m[1]);
    rows.push(row);
}

const SPARSE_CALLS: usize = 300;
const SPARSE_REPS: usize = 3;

/// `SPARSE_CALLS` trivial offloads through `peer`, 1 ms apart.
async fn sparse(peer: Peer, pool: BlockingPool, raw: RawPool) {
    for _ in 0..SPARSE_CALLS {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let value = match peer {
            Peer::Colorseam => pool.offload(|| black_box(1u64)).await.expect("offload"),
            Peer::SpawnBlocking => tokio::task::spawn_blocking(|| black_box(1u64))
                .await
                .expect("spawn_blocking"),
            Peer::Unblock => blocking::unblock(|| black_box(1u64)).await,
            Peer::Raw => raw.run(|| black_box(1u64)).await,
        };
        black_box(value);
    }
}

// ------------------------------------------------------------------- burst

const BURST: usize = 100_000;
const BURST_REPS: usize = 3;
/// The stretch goal for the default pool's burst, in millions of jobs per
/// second: half of a single std thread + mpsc + oneshot on this machine.
const BURST_STRETCH_M: f64 = 1.5;

/// One burst through `peer` on a fresh runtime (and pool): jobs/s and OS
/// threads added. `max_threads` caps colorseam's pool (default: 64).
fn burst_once(peer: Peer, max_threads: Option<usize>) -> (f64, usize) {
    let rt = runtime();
    let mut builder = BlockingPool::builder()
        .name("compare-burst")
        .queue_capacity(BURST);
    if let Some(n) = max_threads {
        builder = builder.max_threads(n);
    }
    let pool = builder.build().expect("a valid pool");
    let raw = (peer == Peer::Raw).then(|| RawPool::start(2));
    let base = threads_now();
    let run_pool = pool.clone();
    let run_raw = raw.clone();
    let (elapsed, mid) = on_worker(&rt, async move {
        let start = Instant::now();
        let mid = match peer {
            Peer::Colorseam => {
                let calls: Vec<_> = (0..BURST)
                    .map(|_| run_pool.offload(|| black_box(1u64)))
                    .collect();
                let mid = threads_now();
                for call in calls {
                    black_box(call.await.expect("offload"));
                }
                mid
            }
            Peer::SpawnBlocking => {
                let calls: Vec<_> = (0..BURST)
                    .map(|_| tokio::task::spawn_blocking(|| black_box(1u64)))
                    .collect();
                let mid = threads_now();
                for call in calls {
                    black_box(call.await.expect("spawn_blocking"));
                }
                mid
            }
            Peer::Unblock => {
                let calls: Vec<_> = (0..BURST)
                    .map(|_| blocking::unblock(|| black_box(1u64)))
                    .collect();
                let mid = threads_now();
                for call in calls {
                    black_box(call.await);
                }
                mid
            }
            Peer::Raw => {
                let raw = run_raw.expect("started for this peer");
                let calls: Vec<_> = (0..BURST).map(|_| raw.run(|| black_box(1u64))).collect();
                let mid = threads_now();
                for call in calls {
                    black_box(call.await);
                }
                mid
            }
        };
        (start.elapsed(), mid)
    });
    let end = threads_now();
    let added = mid.max(end).saturating_sub(base);
    // The raw floor's threads start before `base`; count them as added.
    let added = if peer == Peer::Raw { added + 2 } else { added };
    if let Some(raw) = raw {
        raw.close();
    }
    drop(pool);
    drop(rt);
    (BURST as f64 / elapsed.as_secs_f64(), added)
}

fn burst(rows: &mut Vec<Row>) {
    let target = threads_now();
    let cores = thread::available_parallelism().map_or(2, usize::from);
    // The four contenders, then colorseam again with its pool capped at the
    // core count: what growing only on queue wait would give trivial work.
    let contenders: [(Peer, Option<usize>); 5] = [
        (Peer::Colorseam, None),
        (Peer::SpawnBlocking, None),
        (Peer::Unblock, None),
        (Peer::Raw, None),
        (Peer::Colorseam, Some(cores)),
    ];
    let mut rate: [Vec<f64>; 5] = Default::default();
    let mut added: [usize; 5] = [0; 5];
    for rep in 0..BURST_REPS {
        for i in rotated(&[0, 1, 2, 3, 4], rep) {
            // blocking's idle threads linger 500 ms; start every peer clean.
            settle_threads(target, Duration::from_millis(1500));
            let (peer, max_threads) = contenders[i];
            let (r, a) = burst_once(peer, max_threads);
            rate[i].push(r);
            added[i] = added[i].max(a);
        }
    }
    let m = rate.each_ref().map(|v| median(v));
    let k = |r: f64| format!("{:.0} k/s", r / 1e3);
    let ratio = m[0] / m[1];
    let floor_ratio = m[3] / m[0];
    let mut row = Row::new("burst of 100,000 trivial jobs: throughput", k(m[0]));
    row.spawn_blocking = k(m[1]);
    row.unblock = k(m[2]);
    row.floor = k(m[3]);
    row.goal =
        format!("≥ 5× spawn_blocking (stretch: ≥ {BURST_STRETCH_M} M/s and the floor within 2×)");
    row.ratio = format!("{ratio:.2}× (floor {floor_ratio:.1}× faster)");
    row.verdict = format!(
        "{}{}",
        verdict(ratio >= 5.0),
        if floor_ratio <= 2.0 && m[0] >= BURST_STRETCH_M * 1e6 {
            ", stretch met"
        } else {
            ", stretch not met"
        }
    );
    rows.push(row);

    let mut row = Row::new(
        "burst: OS threads added (max over reps)",
        format!("+{}", added[0]),
    );
    row.spawn_blocking = format!("+{}", added[1]);
    row.unblock = format!("+{}", added[2]);
    row.floor = format!("+{}", added[3]);
    row.goal = format!("≤ cores + 2 = {}", cores + 2);
    row.ratio = format!("{:.1}× the limit", added[0] as f64 / (cores + 2) as f64);
    row.verdict = verdict(added[0] <= cores + 2);
    rows.push(row);

    let mut row = Row::new(
        &format!("burst, colorseam pool capped at max_threads = {cores} (cores)"),
        format!("{} (+{})", k(m[4]), added[4]),
    );
    row.spawn_blocking = k(m[1]);
    row.floor = k(m[3]);
    row.goal = "for comparison: growth bounded by cores".into();
    row.ratio = format!("{:.2}× spawn_blocking", m[4] / m[1]);
    rows.push(row);
}

// -------------------------------------------------------------- sleep jobs

const SLEEP_JOBS: usize = 2_000;
const IN_FLIGHT: usize = 64;
const SLEEP: Duration = Duration::from_millis(1);
const SLEEP_REPS: usize = 5;

async fn sleep_jobs_once(peer: Peer, pool: BlockingPool, raw: RawPool) -> Duration {
    let start = Instant::now();
    match peer {
        Peer::Colorseam => {
            let calls: Vec<_> = (0..SLEEP_JOBS)
                .map(|_| pool.offload(|| thread::sleep(SLEEP)))
                .collect();
            for call in calls {
                call.await.expect("offload");
            }
        }
        Peer::SpawnBlocking => {
            let limit = Arc::new(Semaphore::new(IN_FLIGHT));
            let mut calls = Vec::with_capacity(SLEEP_JOBS);
            for _ in 0..SLEEP_JOBS {
                let permit = limit.clone().acquire_owned().await.expect("open");
                calls.push(tokio::task::spawn_blocking(move || {
                    thread::sleep(SLEEP);
                    drop(permit);
                }));
            }
            for call in calls {
                call.await.expect("spawn_blocking");
            }
        }
        Peer::Unblock => {
            let limit = Arc::new(Semaphore::new(IN_FLIGHT));
            let mut calls = Vec::with_capacity(SLEEP_JOBS);
            for _ in 0..SLEEP_JOBS {
                let permit = limit.clone().acquire_owned().await.expect("open");
                calls.push(blocking::unblock(move || {
                    thread::sleep(SLEEP);
                    drop(permit);
                }));
            }
            for call in calls {
                call.await;
            }
        }
        Peer::Raw => {
            let calls: Vec<_> = (0..SLEEP_JOBS)
                .map(|_| raw.run(|| thread::sleep(SLEEP)))
                .collect();
            for call in calls {
                call.await;
            }
        }
    }
    start.elapsed()
}

fn sleep_jobs(rows: &mut Vec<Row>) {
    let rt = runtime();
    let pool = BlockingPool::builder()
        .name("compare-sleep")
        .max_threads(IN_FLIGHT)
        .queue_capacity(SLEEP_JOBS)
        .build()
        .expect("a valid pool");
    let raw = RawPool::start(IN_FLIGHT);
    let mut wall: [Vec<f64>; 4] = Default::default();
    for peer in OFFLOADERS {
        let _warm_up = on_worker(&rt, sleep_jobs_once(peer, pool.clone(), raw.clone()));
    }
    for rep in 0..SLEEP_REPS {
        for peer in rotated(&OFFLOADERS, rep) {
            let d = on_worker(&rt, sleep_jobs_once(peer, pool.clone(), raw.clone()));
            wall[peer as usize].push(ms(d));
        }
    }
    raw.close();
    let ideal = SLEEP_JOBS as f64 * ms(SLEEP) / IN_FLIGHT as f64;
    let m = wall.each_ref().map(|v| median(v));
    let mut row = Row::new(
        "2,000 × 1 ms sleep, 64 in flight (ms)",
        format!("{:.1}", m[0]),
    );
    row.spawn_blocking = format!("{:.1}", m[1]);
    row.unblock = format!("{:.1}", m[2]);
    row.floor = format!("{:.1}", m[3]);
    row.goal = format!("≤ 1.15× ideal {ideal:.2} ms and ≤ spawn_blocking");
    row.ratio = format!(
        "{:.2}× ideal, {:.2}× spawn_blocking",
        m[0] / ideal,
        m[0] / m[1]
    );
    row.verdict = verdict(m[0] <= 1.15 * ideal && m[0] <= m[1]);
    rows.push(row);
}

// ----------------------------------------------------------------- timeout

const TIMEOUT: Duration = Duration::from_millis(50);
const HANG: Duration = Duration::from_millis(500);
const TIMEOUT_SAMPLES: usize = 16;
const TIMEOUT_REPS: usize = 3;
const TIMEOUT_PEERS: [Peer; 3] = [Peer::Colorseam, Peer::SpawnBlocking, Peer::Unblock];

/// How long after `TIMEOUT` the caller got control back (ms).
async fn overshoot(peer: Peer, pool: BlockingPool) -> f64 {
    let start = Instant::now();
    match peer {
        Peer::Colorseam => {
            let err = pool
                .offload_timeout(|| thread::sleep(HANG), TIMEOUT)
                .await
                .expect_err("the call hangs past its deadline");
            assert!(err.is_timeout());
        }
        Peer::SpawnBlocking => {
            let hung = tokio::task::spawn_blocking(|| thread::sleep(HANG));
            tokio::time::timeout(TIMEOUT, hung)
                .await
                .expect_err("the call hangs past its deadline");
        }
        Peer::Unblock => {
            let hung = blocking::unblock(|| thread::sleep(HANG));
            tokio::time::timeout(TIMEOUT, hung)
                .await
                .expect_err("the call hangs past its deadline");
        }
        Peer::Raw => unreachable!("no raw floor for timeouts"),
    }
    ms(start.elapsed()) - ms(TIMEOUT)
}

fn timeouts(rows: &mut Vec<Row>) {
    let mut p99: [Vec<f64>; 3] = Default::default();
    let mut drop_ms: [Vec<f64>; 3] = Default::default();
    for rep in 0..TIMEOUT_REPS {
        // Fresh runtimes (and pool) each rep, so dropping them is measured
        // with hung calls still running.
        let rts: [Runtime; 3] = [runtime(), runtime(), runtime()];
        let pool = BlockingPool::builder()
            .name("compare-timeout")
            .build()
            .expect("a valid pool");
        let mut samples: [Vec<f64>; 3] = Default::default();
        for _ in 0..TIMEOUT_SAMPLES {
            for peer in rotated(&TIMEOUT_PEERS, rep) {
                let i = peer as usize;
                samples[i].push(on_worker(&rts[i], overshoot(peer, pool.clone())));
            }
        }
        for i in 0..3 {
            p99[i].push(percentile(&samples[i], 0.99));
        }
        let [cs_rt, sb_rt, un_rt] = rts;
        let start = Instant::now();
        drop(pool);
        drop(cs_rt);
        drop_ms[0].push(ms(start.elapsed()));
        let start = Instant::now();
        drop(sb_rt);
        drop_ms[1].push(ms(start.elapsed()));
        let start = Instant::now();
        drop(un_rt);
        drop_ms[2].push(ms(start.elapsed()));
    }
    let m = p99.each_ref().map(|v| median(v));
    let mut row = Row::new(
        "50 ms timeout around a 500 ms call: release overshoot p99 (ms)",
        format!("{:.2}", m[0]),
    );
    row.spawn_blocking = format!("{:.2}", m[1]);
    row.unblock = format!("{:.2}", m[2]);
    row.goal = "≤ tokio time::timeout(spawn_blocking)".into();
    row.ratio = format!("{:.2}×", m[0] / m[1]);
    row.verdict = verdict(m[0] <= m[1]);
    rows.push(row);

    let d = drop_ms.each_ref().map(|v| median(v));
    let mut row = Row::new(
        "…then dropping the pool and its caller's runtime (ms)",
        format!("{:.2}", d[0]),
    );
    row.spawn_blocking = format!("{:.1} (runtime)", d[1]);
    row.unblock = format!("{:.2} (runtime)", d[2]);
    row.goal = "~0 ms (≤ 1 ms)".into();
    row.ratio = format!("{:.2} ms", d[0]);
    row.verdict = verdict(d[0] <= 1.0);
    rows.push(row);
}

// ------------------------------------------------------------------- probe

const STORM_CALLS: usize = 200;
const STORM_CALL: Duration = Duration::from_millis(20);
const STORMS: usize = 5;
const PROBE_REPS: usize = 5;
const IDLE_WINDOW: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    Idle,
    Via(Peer),
    /// The same 200 tasks awaiting `tokio::time::sleep` instead: what the
    /// storm costs the runtime with no blocking call at all.
    AsyncSleep,
}

const LOADS: [Load; 5] = [
    Load::Idle,
    Load::Via(Peer::Colorseam),
    Load::Via(Peer::SpawnBlocking),
    Load::Via(Peer::Unblock),
    Load::AsyncSleep,
];

async fn storm(load: Load, pool: &BlockingPool) {
    let calls: Vec<_> = (0..STORM_CALLS)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let peer = match load {
                    Load::Via(peer) => peer,
                    _ => return tokio::time::sleep(STORM_CALL).await,
                };
                match peer {
                    Peer::Colorseam => pool
                        .offload(|| thread::sleep(STORM_CALL))
                        .await
                        .expect("offload"),
                    Peer::SpawnBlocking => {
                        tokio::task::spawn_blocking(|| thread::sleep(STORM_CALL))
                            .await
                            .expect("spawn_blocking")
                    }
                    Peer::Unblock => blocking::unblock(|| thread::sleep(STORM_CALL)).await,
                    Peer::Raw => unreachable!("no raw floor for the storm"),
                }
            })
        })
        .collect();
    for call in calls {
        call.await.expect("storm task");
    }
}

/// The probe's lateness samples (ms) while `load` runs.
async fn probed(load: Load, pool: BlockingPool) -> Vec<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut late = Vec::with_capacity(1024);
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                tokio::time::sleep(Duration::from_millis(1)).await;
                late.push(ms(start.elapsed()) - 1.0);
            }
            late
        }
    });
    tokio::task::yield_now().await;
    match load {
        Load::Idle => tokio::time::sleep(IDLE_WINDOW).await,
        Load::Via(_) | Load::AsyncSleep => {
            for _ in 0..STORMS {
                storm(load, &pool).await;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    probe.await.expect("the probe")
}

fn probe(rows: &mut Vec<Row>) {
    let rt = runtime();
    let pool = BlockingPool::builder()
        .name("compare-storm")
        .build()
        .expect("a valid pool");
    let mut p99: [Vec<f64>; 5] = Default::default();
    for load in LOADS {
        let _warm_up = on_worker(&rt, probed(load, pool.clone()));
    }
    for rep in 0..PROBE_REPS {
        for (i, load) in rotated(&[0, 1, 2, 3, 4], rep)
            .into_iter()
            .map(|i| (i, LOADS[i]))
        {
            let late = on_worker(&rt, probed(load, pool.clone()));
            p99[i].push(percentile(&late, 0.99));
        }
    }
    let m = p99.each_ref().map(|v| median(v));
    let mut row = Row::new(
        "probe lateness p99 under 200 × 20 ms blocking calls (ms)",
        format!("{:.2}", m[1]),
    );
    row.spawn_blocking = format!("{:.2}", m[2]);
    row.unblock = format!("{:.2}", m[3]);
    row.floor = format!("{:.2} no load; {:.2} async-only storm", m[0], m[4]);
    // The goal's baseline is the same storm made of async sleeps: what 200
    // tasks cost a 2-worker runtime with no blocking call at all. (It was
    // the idle runtime, which left no room for the storm's own async work.)
    row.goal = "≤ 1.1× the async-only storm".into();
    row.ratio = format!(
        "{:.2}× async-only storm ({:.2}× no load)",
        m[1] / m[4],
        m[1] / m[0]
    );
    row.verdict = verdict(m[1] <= 1.1 * m[4]);
    rows.push(row);
}

// ---------------------------------------------------------------- block_on

const READY_CALLS: usize = 200_000;
const WAKE_CALLS: usize = 2_000;
const BLOCK_ON_REPS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Executor {
    Colorseam,
    Pollster,
    TokioHandle,
}

const EXECUTORS: [Executor; 3] = [
    Executor::Colorseam,
    Executor::Pollster,
    Executor::TokioHandle,
];

fn run_on<F: Future>(executor: Executor, handle: &tokio::runtime::Handle, future: F) -> F::Output {
    match executor {
        Executor::Colorseam => colorseam::block_on(future).expect("block_on from a plain thread"),
        Executor::Pollster => pollster::block_on(future),
        Executor::TokioHandle => handle.block_on(future),
    }
}

fn block_on(rows: &mut Vec<Row>) {
    let rt = runtime();
    let handle = rt.handle().clone();
    let helper = WakerThread::start();
    let mut ready_ns: [Vec<f64>; 3] = Default::default();
    let mut wake_p50: [Vec<f64>; 3] = Default::default();
    for executor in EXECUTORS {
        // Warm-up; starts colorseam's bridge runtime.
        for _ in 0..1_000 {
            black_box(run_on(executor, &handle, std::future::ready(1u64)));
        }
        for _ in 0..100 {
            black_box(run_on(executor, &handle, helper.wake_once()));
        }
    }
    for rep in 0..BLOCK_ON_REPS {
        for executor in rotated(&EXECUTORS, rep) {
            let start = Instant::now();
            for _ in 0..READY_CALLS {
                black_box(run_on(
                    executor,
                    &handle,
                    std::future::ready(black_box(1u64)),
                ));
            }
            ready_ns[executor as usize].push(us(start.elapsed()) * 1e3 / READY_CALLS as f64);
        }
        for executor in rotated(&EXECUTORS, rep) {
            let mut lat = Vec::with_capacity(WAKE_CALLS);
            for _ in 0..WAKE_CALLS {
                let start = Instant::now();
                black_box(run_on(executor, &handle, helper.wake_once()));
                lat.push(us(start.elapsed()));
            }
            wake_p50[executor as usize].push(percentile(&lat, 0.5));
        }
    }
    let r = ready_ns.each_ref().map(|v| median(v));
    let mut row = Row::new(
        "block_on from a plain thread: ready future (ns/call)",
        format!("{:.0}", r[0]),
    );
    row.pollster = format!("{:.0}", r[1]);
    row.handle = format!("{:.0}", r[2]);
    row.goal = "≤ 1.5× pollster".into();
    row.ratio = format!("{:.2}×", r[0] / r[1]);
    row.verdict = verdict(r[0] <= 1.5 * r[1]);
    rows.push(row);

    let w = wake_p50.each_ref().map(|v| median(v));
    let mut row = Row::new(
        "block_on: future woken from another thread, p50 (µs)",
        format!("{:.1}", w[0]),
    );
    row.pollster = format!("{:.1}", w[1]);
    row.handle = format!("{:.1}", w[2]);
    row.goal = "≤ 1.2× pollster and < Handle::block_on".into();
    row.ratio = format!(
        "{:.2}× pollster, {:.2}× Handle::block_on",
        w[0] / w[1],
        w[0] / w[2]
    );
    row.verdict = verdict(w[0] <= 1.2 * w[1] && w[0] < w[2]);
    rows.push(row);

    // What spinning before parking costs when it does not pay: futures
    // woken 1 ms later, so every wait outlasts any spin.
    let slow = WakerThread::start_with_delay(Duration::from_millis(1));
    let mut cpu: [Vec<f64>; 3] = Default::default();
    for rep in 0..SLOW_WAKE_REPS {
        for executor in rotated(&EXECUTORS, rep) {
            let per_call = cpu_us_per_call(SLOW_WAKE_CALLS, || {
                for _ in 0..SLOW_WAKE_CALLS {
                    black_box(run_on(executor, &handle, slow.wake_once()));
                }
            });
            cpu[executor as usize].push(per_call);
        }
    }
    let c = cpu.each_ref().map(|v| median(v));
    let mut row = Row::new(
        "block_on: future woken 1 ms later, CPU per call, whole process (µs)",
        format!("{:.1}", c[0]),
    );
    row.pollster = format!("{:.1}", c[1]);
    row.handle = format!("{:.1}", c[2]);
    row.goal = "spinning's cost: ~0 once waits are long".into();
    row.ratio = format!("{:+.1} µs vs pollster", c[0] - c[1]);
    rows.push(row);
}

const SLOW_WAKE_CALLS: usize = 200;
const SLOW_WAKE_REPS: usize = 3;

// ------------------------------------------------------------------ memory

const QUEUED: usize = 10_000;

/// Net heap bytes allocated while `enqueue` runs, per job.
fn counted(enqueue: impl FnOnce()) -> f64 {
    NET_BYTES.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::SeqCst);
    enqueue();
    COUNTING.store(false, Ordering::SeqCst);
    NET_BYTES.load(Ordering::Relaxed) as f64 / QUEUED as f64
}

fn memory(rows: &mut Vec<Row>) {
    // colorseam: one thread, blocked; the jobs wait in the queue.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let pool = BlockingPool::builder()
        .name("compare-memory")
        .max_threads(1)
        .queue_capacity(QUEUED + 1)
        .build()
        .expect("a valid pool");
    let colorseam_bytes = rt.block_on(async {
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let blocker = pool.offload(move || {
            let _ = started_tx.send(());
            let _ = release_rx.recv();
        });
        started_rx.recv().expect("the blocker starts");
        let mut queued = Vec::with_capacity(QUEUED);
        let bytes = counted(|| {
            for _ in 0..QUEUED {
                queued.push(pool.offload(|| black_box(0u64)));
            }
        });
        assert_eq!(pool.metrics().queue_depth, QUEUED);
        drop(queued);
        release_tx.send(()).expect("the blocker waits");
        blocker.await.expect("the blocker");
        bytes
    });

    // tokio: a blocking pool of one thread, blocked.
    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let tokio_bytes = tokio_rt.block_on(async {
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let blocker = tokio::task::spawn_blocking(move || {
            let _ = started_tx.send(());
            let _ = release_rx.recv();
        });
        started_rx.recv().expect("the blocker starts");
        let mut queued = Vec::with_capacity(QUEUED);
        let bytes = counted(|| {
            for _ in 0..QUEUED {
                queued.push(tokio::task::spawn_blocking(|| black_box(0u64)));
            }
        });
        release_tx.send(()).expect("the blocker waits");
        blocker.await.expect("the blocker");
        for call in queued {
            call.await.expect("queued job");
        }
        bytes
    });

    let inline = std::mem::size_of::<colorseam::Offload<u64>>();
    let mut row = Row::new(
        "heap bytes per queued job, beyond the closure",
        format!("{colorseam_bytes:.0} (+{inline} B future)"),
    );
    row.spawn_blocking = format!("{tokio_bytes:.0} (+8 B handle)");
    row.goal = "≤ 256 B".into();
    row.ratio = format!("{:.2}× the limit", colorseam_bytes / 256.0);
    row.verdict = verdict(colorseam_bytes <= 256.0);
    rows.push(row);
}

// ---------------------------------------------------------- instrumentation

const POLLS: u64 = 1_000_000;
const POLL_REPS: usize = 5;

/// Nanoseconds per poll of `future`, polled to completion.
fn ns_per_poll<F: Future>(future: F) -> f64 {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    let start = Instant::now();
    while future.as_mut().poll(&mut cx).is_pending() {}
    us(start.elapsed()) * 1e3 / (POLLS + 1) as f64
}

/// Median over reps of (instrumented − bare) ns per poll, interleaved.
fn overhead() -> f64 {
    let mut diffs = Vec::with_capacity(POLL_REPS);
    for _ in 0..POLL_REPS {
        let bare = ns_per_poll(Yields { remaining: POLLS });
        let wrapped = ns_per_poll(colorseam::detect::instrument(
            Yields { remaining: POLLS },
            "compare",
        ));
        diffs.push(wrapped - bare);
    }
    median(&diffs)
}

fn instrumentation(rows: &mut Vec<Row>) {
    let plain = overhead();
    let rt = runtime();
    let watchdog = colorseam::detect::Watchdog::builder()
        .install(rt.handle())
        .expect("the watchdog starts");
    let watched = overhead();
    drop(watchdog);
    let worst = plain.max(watched);
    let mut row = Row::new(
        "instrument() overhead per poll (ns), without / with a Watchdog",
        format!("{plain:.1} / {watched:.1}"),
    );
    row.goal = "≤ 50 ns".into();
    row.ratio = format!("{:.2}× the limit", worst / 50.0);
    row.verdict = verdict(worst <= 50.0);
    rows.push(row);
}

// -------------------------------------------------------------------- main

fn main() {
    let started = Instant::now();
    let mut rows = Vec::new();
    // `cargo run --release --example compare -- burst block_on` runs only
    // the named scenarios; no names runs them all.
    let only: Vec<String> = std::env::args().skip(1).collect();
    type Scenario = fn(&mut Vec<Row>);
    let scenarios: [(&str, &str, Scenario); 13] = [
        ("round_trip", "round trip", round_trip),
        ("burst", "burst", burst),
        ("sleep_jobs", "sleep jobs", sleep_jobs),
        ("timeouts", "timeouts", timeouts),
        ("probe", "probe under a blocking storm", probe),
        ("block_on", "block_on from a plain thread", block_on),
        ("memory", "memory per queued job", memory),
        ("instrument", "instrumentation overhead", instrumentation),
        ("deadlines", "curve: deadlines in flight", deadlines::run),
        ("pools", "curve: pools in one process", pools::run),
        (
            "callers",
            "curve: callers on one bounded pool",
            callers::run,
        ),
        (
            "sandwiches",
            "curve: nested sandwiches in flight",
            sandwiches::run,
        ),
        ("adapters", "curve: adapter calls in flight", adapters::run),
    ];
    for (key, what, scenario) in scenarios {
        if only.is_empty() || only.iter().any(|o| o == key) {
            progress(started, what);
            scenario(&mut rows);
        }
    }
    progress(started, "done");

    println!(
        "colorseam vs peers: {} cores, medians of reps, peers interleaved, one process ({:.0} s)\n",
        thread::available_parallelism().map_or(0, usize::from),
        started.elapsed().as_secs_f64()
    );
    print_table(&rows);
    let unmet = rows
        .iter()
        .filter(|r| r.verdict.contains("not met"))
        .count();
    println!(
        "\n{} of {} goals met",
        rows.iter().filter(|r| r.verdict.starts_with("met")).count(),
        rows.iter().filter(|r| r.verdict != "reported").count()
    );
    if unmet > 0 {
        println!("{unmet} not met");
    }
}
