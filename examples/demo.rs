//! The headline demo: one flaky sync dependency, three ways to call it from
//! async code, measured side by side.
//!
//! A small tokio service (a multi-thread runtime with 2 workers) runs a
//! health-check probe that sleeps 1 ms in a loop and records how late it
//! wakes. Meanwhile it serves a burst of requests, each of which calls a
//! fake "legacy SDK": a sync function that blocks about 20 ms and, on every
//! 50th call, hangs for 3 s like a dependency behind a dead connection. The
//! same burst is served three times, each on a fresh runtime:
//!
//! - **direct**: the SDK is called inside the async task. The workers end
//!   up inside the SDK and the whole runtime, probe included, freezes.
//! - **spawn_blocking + timeout**: `tokio::time::timeout(250ms,
//!   tokio::task::spawn_blocking(sdk))`. Callers are released, but every
//!   in-flight and hung call holds an OS thread of its own, and the
//!   runtime's shutdown would wait for the hung ones.
//! - **colorseam**: a bounded `colorseam::BlockingPool` with a 250 ms
//!   default timeout.
//!
//! For each mode it prints the probe's lateness, how the calls ended, the
//! process's peak OS thread count and the wall time, then what to look at.
//! Every figure is measured on the spot; nothing is hard-coded.
//!
//! Run it with
//!
//! ```text
//! cargo run --release --example demo
//! ```
//!
//! It takes about 15 s, most of it in the direct mode. Thread counts come
//! from `/proc/self/status`, so they show on Linux only.

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use colorseam::BlockingPool;
use colorseam::metrics::PoolMetrics;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Requests in the burst.
const CALLS: usize = 200;
/// Requests served at once, like a server's open connections.
const IN_FLIGHT: usize = 64;
/// Worker threads of the service's runtime.
const RUNTIME_WORKERS: usize = 2;
/// What a healthy SDK call costs.
const SDK_NORMAL: Duration = Duration::from_millis(20);
/// One call in this many hangs.
const HANG_EVERY: usize = 50;
/// How long a hung call hangs: long against the timeout, short enough for
/// the demo to end.
const SDK_HANG: Duration = Duration::from_secs(3);
/// The deadline callers give each SDK call in the two offloading modes.
const CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// The health check's sleep.
const PROBE_PERIOD: Duration = Duration::from_millis(1);
/// How often the sampler reads the process's thread count.
const SAMPLE_PERIOD: Duration = Duration::from_millis(2);

const POOL_MAX_THREADS: usize = 16;
const POOL_QUEUE_CAPACITY: usize = 256;
const POOL_MAX_ABANDONED: usize = 8;

/// Threads inside the SDK right now, whoever called it. Lets the demo see
/// hung calls that outlive their caller and their runtime.
static IN_SDK: AtomicUsize = AtomicUsize::new(0);

/// The fake legacy SDK: sync, usually ~20 ms, sometimes hung for seconds.
/// Which calls hang is fixed by the request number, so every mode gets the
/// same workload.
fn legacy_sdk_call(request: usize) -> usize {
    IN_SDK.fetch_add(1, Ordering::SeqCst);
    let pause = if request % HANG_EVERY == HANG_EVERY / 2 {
        SDK_HANG
    } else {
        SDK_NORMAL
    };
    thread::sleep(pause);
    IN_SDK.fetch_sub(1, Ordering::SeqCst);
    request
}

/// How the service calls the SDK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Direct,
    SpawnBlocking,
    Colorseam,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Direct, Mode::SpawnBlocking, Mode::Colorseam];

    fn label(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::SpawnBlocking => "spawn_blocking + timeout",
            Mode::Colorseam => "colorseam",
        }
    }
}

/// A mode plus what it needs to make calls.
enum Caller {
    Direct,
    SpawnBlocking,
    Pool(BlockingPool),
}

impl Caller {
    fn new(mode: Mode) -> Result<Self, colorseam::ConfigError> {
        Ok(match mode {
            Mode::Direct => Caller::Direct,
            Mode::SpawnBlocking => Caller::SpawnBlocking,
            Mode::Colorseam => Caller::Pool(
                BlockingPool::builder()
                    .name("legacy-sdk")
                    .max_threads(POOL_MAX_THREADS)
                    .queue_capacity(POOL_QUEUE_CAPACITY)
                    .max_abandoned(POOL_MAX_ABANDONED)
                    .default_timeout(CALL_TIMEOUT)
                    .build()?,
            ),
        })
    }

    /// One request's call into the SDK.
    async fn call(&self, request: usize) -> Outcome {
        match self {
            // The bug: sync code on a runtime worker. Nothing else can run
            // on this worker until the SDK returns.
            Caller::Direct => {
                legacy_sdk_call(request);
                Outcome::Completed
            }
            Caller::SpawnBlocking => {
                let call = tokio::task::spawn_blocking(move || legacy_sdk_call(request));
                match tokio::time::timeout(CALL_TIMEOUT, call).await {
                    Ok(Ok(_)) => Outcome::Completed,
                    Ok(Err(_join_error)) => Outcome::Failed,
                    // The caller is free, but the thread is still in the SDK.
                    Err(_elapsed) => Outcome::TimedOut(None),
                }
            }
            Caller::Pool(pool) => match pool.offload(move || legacy_sdk_call(request)).await {
                Ok(_) => Outcome::Completed,
                Err(error) if error.is_timeout() => Outcome::TimedOut(Some(error)),
                // Saturated, panicked or shut down: counted, never lost.
                Err(_refused) => Outcome::Failed,
            },
        }
    }

    fn pool_metrics(&self) -> Option<PoolMetrics> {
        match self {
            Caller::Pool(pool) => Some(pool.metrics()),
            Caller::Direct | Caller::SpawnBlocking => None,
        }
    }
}

/// How one call ended.
enum Outcome {
    Completed,
    /// The caller's deadline passed; colorseam says where the call was.
    TimedOut(Option<colorseam::Error>),
    /// Refused (saturated) or failed otherwise.
    Failed,
}

/// How the calls of one burst ended.
#[derive(Default)]
struct Tally {
    completed: usize,
    timed_out: usize,
    failed: usize,
    /// colorseam timeouts by the phase their error names.
    timeout_phases: BTreeMap<String, usize>,
    /// The first colorseam timeout, to show what its message looks like.
    example_timeout: Option<colorseam::Error>,
}

impl Tally {
    fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Completed => self.completed += 1,
            Outcome::TimedOut(error) => {
                self.timed_out += 1;
                if let Some(error) = error {
                    let phase = error
                        .phase()
                        .map_or_else(|| "no phase".to_owned(), |phase| phase.to_string());
                    *self.timeout_phases.entry(phase).or_default() += 1;
                    self.example_timeout.get_or_insert(error);
                }
            }
            Outcome::Failed => self.failed += 1,
        }
    }
}

/// The service: a health probe running while a burst of requests is served.
/// Returns the burst's outcomes and the probe's lateness samples.
async fn service(caller: Arc<Caller>) -> (Tally, Vec<Duration>) {
    let stop = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn(health_probe(stop.clone()));
    let tally = serve_burst(caller).await;
    stop.store(true, Ordering::Relaxed);
    let lateness = probe.await.expect("the probe does not panic");
    (tally, lateness)
}

/// Sleeps 1 ms in a loop and records how late each wake-up is, the way a
/// health check or a heartbeat would notice a stalled runtime.
async fn health_probe(stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut lateness = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let intended = Instant::now() + PROBE_PERIOD;
        tokio::time::sleep(PROBE_PERIOD).await;
        record_lateness(
            &mut lateness,
            Instant::now().saturating_duration_since(intended),
        );
    }
    lateness
}

/// Records one wake-up `late` late, plus the ticks the probe missed while
/// it was stalled: a probe due every 1 ms during a 3 s stall would have
/// seen 3000 late answers, not one. Without this ("coordinated omission")
/// a frozen runtime yields a single sample and its percentiles look fine.
fn record_lateness(samples: &mut Vec<Duration>, late: Duration) {
    let mut missed = late;
    samples.push(missed);
    while missed > PROBE_PERIOD {
        missed -= PROBE_PERIOD;
        samples.push(missed);
    }
}

/// Serves `CALLS` requests, each in its own task, at most `IN_FLIGHT` at
/// once, and counts how they ended.
async fn serve_burst(caller: Arc<Caller>) -> Tally {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut requests = JoinSet::new();
    for request in 0..CALLS {
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let caller = caller.clone();
        requests.spawn(async move {
            let outcome = caller.call(request).await;
            drop(slot);
            outcome
        });
    }
    let mut tally = Tally::default();
    while let Some(outcome) = requests.join_next().await {
        tally.record(outcome.expect("request tasks do not panic"));
    }
    tally
}

/// What one mode measured.
struct Report {
    mode: Mode,
    lateness: Latency,
    tally: Tally,
    peak_threads: Option<usize>,
    /// SDK calls still hung when the runtime had been shut down.
    stuck_at_shutdown: usize,
    /// From the start of the burst to the runtime being shut down.
    wall: Duration,
    /// How long hung calls went on after shutdown; measured between modes.
    outlived_runtime: Option<Duration>,
    pool: Option<PoolMetrics>,
}

/// Serves the burst in `mode` on a fresh runtime and measures it.
fn run_mode(mode: Mode) -> Result<Report, Box<dyn Error>> {
    let caller = Arc::new(Caller::new(mode)?);
    // Started first so it counts the runtime's workers too.
    let sampler = ThreadSampler::start()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_WORKERS)
        .enable_all()
        .build()?;

    let started = Instant::now();
    // Spawned rather than run by `block_on` itself, so the service lives
    // on the runtime's workers like a real server, not on the main thread.
    let (tally, lateness) = runtime
        .block_on(runtime.spawn(service(caller.clone())))
        .expect("the service does not panic");
    let pool = caller.pool_metrics();
    match mode {
        // Dropping this runtime would block until every hung
        // `spawn_blocking` call returned; this one does not wait.
        Mode::SpawnBlocking => runtime.shutdown_background(),
        Mode::Direct | Mode::Colorseam => drop(runtime),
    }
    let wall = started.elapsed();
    let stuck_at_shutdown = IN_SDK.load(Ordering::SeqCst);
    let peak_threads = sampler.finish();

    Ok(Report {
        mode,
        lateness: Latency::of(lateness),
        tally,
        peak_threads,
        stuck_at_shutdown,
        wall,
        outlived_runtime: None,
        pool,
    })
}

/// Percentiles of the probe's lateness.
struct Latency {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let quantile = |q: f64| -> Duration {
            if samples.is_empty() {
                return Duration::ZERO;
            }
            // Nearest rank: the smallest sample with at least q of them at or below it.
            let rank = (q * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1]
        };
        Latency {
            p50: quantile(0.50),
            p99: quantile(0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

/// A std thread that keeps the peak of the process's OS thread count.
struct ThreadSampler {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Option<usize>>,
}

impl ThreadSampler {
    fn start() -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let should_stop = stop.clone();
        let handle = thread::Builder::new()
            .name("thread-sampler".to_owned())
            .spawn(move || {
                let mut peak = os_threads();
                while !should_stop.load(Ordering::Relaxed) {
                    peak = peak.max(os_threads());
                    thread::sleep(SAMPLE_PERIOD);
                }
                peak.max(os_threads())
            })?;
        Ok(ThreadSampler { stop, handle })
    }

    /// Stops sampling; the peak, or `None` where it cannot be read.
    fn finish(self) -> Option<usize> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("the sampler does not panic")
    }
}

/// The process's OS thread count, from `/proc/self/status` (Linux only).
fn os_threads() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// Waits until no call is left in the SDK and the process is back to
/// `baseline` threads, so the next mode counts only its own threads.
/// Returns how long the hung calls went on.
fn settle(baseline: Option<usize>) -> Duration {
    let started = Instant::now();
    let give_up = started + SDK_HANG * 2;
    let mut outlived = None;
    while Instant::now() < give_up {
        if IN_SDK.load(Ordering::SeqCst) == 0 {
            outlived.get_or_insert_with(|| started.elapsed());
            // Threads leave a moment after their last call returns.
            if os_threads() <= baseline {
                break;
            }
        }
        thread::sleep(Duration::from_millis(5));
    }
    outlived.unwrap_or_else(|| started.elapsed())
}

fn main() -> Result<(), Box<dyn Error>> {
    let baseline = os_threads();
    println!(
        "Serving {CALLS} requests ({IN_FLIGHT} in flight) on a {RUNTIME_WORKERS}-worker runtime; \
         each calls a sync SDK that takes {SDK_NORMAL:?},\nexcept every {HANG_EVERY}th call, \
         which hangs for {SDK_HANG:?}. A health probe sleeps {PROBE_PERIOD:?} in a loop meanwhile.\n"
    );

    let mut reports = Vec::new();
    for (index, mode) in Mode::ALL.into_iter().enumerate() {
        println!("running {} ...", mode.label());
        let mut report = run_mode(mode)?;
        // The last mode's leftovers die with the process; no need to wait.
        if index + 1 < Mode::ALL.len() {
            report.outlived_runtime = Some(settle(baseline));
        }
        reports.push(report);
    }

    println!();
    print_table(&reports);
    println!();
    print_takeaways(&reports);
    Ok(())
}

fn print_table(reports: &[Report]) {
    println!(
        "{:<24}  {:>9} {:>9} {:>9}  {:>4} {:>9} {:>8}  {:>7} {:>5}  {:>7}",
        "mode",
        "probe p50",
        "p99",
        "max",
        "ok",
        "timed out",
        "rejected",
        "threads",
        "stuck",
        "wall"
    );
    println!("{}", "-".repeat(106));
    for report in reports {
        let threads = report
            .peak_threads
            .map_or_else(|| "n/a".to_owned(), |n| n.to_string());
        println!(
            "{:<24}  {:>9} {:>9} {:>9}  {:>4} {:>9} {:>8}  {:>7} {:>5}  {:>7}",
            report.mode.label(),
            human(report.lateness.p50),
            human(report.lateness.p99),
            human(report.lateness.max),
            report.tally.completed,
            report.tally.timed_out,
            report.tally.failed,
            threads,
            report.stuck_at_shutdown,
            human(report.wall),
        );
    }
    println!(
        "probe: lateness of the {PROBE_PERIOD:?} health-check sleep, counting the ticks a stalled \
         probe missed.\nthreads: peak OS threads of the whole process (main, sampler, \
         {RUNTIME_WORKERS} workers, blocking threads).\nstuck: SDK calls still hung once the \
         runtime was shut down. rejected: saturated or otherwise failed calls."
    );
}

fn print_takeaways(reports: &[Report]) {
    println!("What to look at:");
    for report in reports {
        let latency = &report.lateness;
        match report.mode {
            Mode::Direct => println!(
                "- direct: the probe woke up to {} late (p99 {}). Both workers sat inside the SDK, \
                 so timers,\n  health checks and every other task froze with it. A timeout would not \
                 have helped: it cannot fire\n  while the SDK holds the worker.",
                human(latency.max),
                human(latency.p99),
            ),
            Mode::SpawnBlocking => println!(
                "- spawn_blocking + timeout: callers were released at {}, but each call took a thread \
                 (peak {}),\n  and {} hung calls kept theirs for {} after shutdown. Dropping the runtime \
                 would have blocked\n  that long, so this demo shuts it down with \
                 `rt.shutdown_background()`.",
                human(CALL_TIMEOUT),
                report
                    .peak_threads
                    .map_or_else(|| "n/a".to_owned(), |n| n.to_string()),
                report.stuck_at_shutdown,
                report
                    .outlived_runtime
                    .map_or_else(|| "n/a".to_owned(), human),
            ),
            Mode::Colorseam => print_colorseam_takeaway(report),
        }
    }
    print_wall_time_note(reports);
}

/// Why colorseam's wall time is longer than spawn_blocking's, and what the
/// bound bought, from this run's figures.
fn print_wall_time_note(reports: &[Report]) {
    let find = |mode| reports.iter().find(|r| r.mode == mode);
    let (Some(spawn_blocking), Some(colorseam)) =
        (find(Mode::SpawnBlocking), find(Mode::Colorseam))
    else {
        return;
    };
    let threads = |r: &Report| {
        r.peak_threads
            .map_or_else(|| "n/a".to_owned(), |n| n.to_string())
    };
    let pool_peak = colorseam.pool.as_ref().map(|m| m.threads.peak);
    // The floor for CALLS calls of SDK_NORMAL each on POOL_MAX_THREADS
    // threads: a bounded pool cannot go faster than that, by design.
    let waves = CALLS.div_ceil(POOL_MAX_THREADS);
    let floor = SDK_NORMAL * u32::try_from(waves).unwrap_or(u32::MAX);
    println!(
        "- wall time: colorseam took {} where spawn_blocking took {}, because it ran the {CALLS} calls \
         {POOL_MAX_THREADS} at a time\n  ({waves} waves of {} take at least {}; the pool peaked at {} \
         threads, replacements for hung calls included), while\n  spawn_blocking ran every call in \
         flight at once on a thread of its own (the process peaked at {} threads against\n  \
         colorseam's {}). What the bound bought: a burst and a hung dependency cost at most \
         {POOL_MAX_THREADS} + {POOL_MAX_ABANDONED} threads,\n  however many requests arrive \
         (spawn_blocking's grow with the load, up to tokio's default of 512), and the runtime\n  \
         dropped at once.",
        human(colorseam.wall),
        human(spawn_blocking.wall),
        human(SDK_NORMAL),
        human(floor),
        pool_peak.map_or_else(|| "n/a".to_owned(), |n| n.to_string()),
        threads(spawn_blocking),
        threads(colorseam),
    );
}

fn print_colorseam_takeaway(report: &Report) {
    let pool_peak = report
        .pool
        .as_ref()
        .map_or_else(|| "n/a".to_owned(), |m| m.threads.peak.to_string());
    let phases: Vec<String> = report
        .tally
        .timeout_phases
        .iter()
        .map(|(phase, count)| format!("{count} while {phase}"))
        .collect();
    let phases = if phases.is_empty() {
        "none".to_owned()
    } else {
        phases.join(", ")
    };
    println!(
        "- colorseam: the probe stayed at {} p99; the pool held at most {pool_peak} threads \
         (bound: {POOL_MAX_THREADS} + {POOL_MAX_ABANDONED} abandoned),\n  and dropping the runtime \
         did not wait for the {} hung calls. Timeouts, by phase: {phases}.",
        human(report.lateness.p99),
        report.stuck_at_shutdown,
    );
    if let Some(error) = &report.tally.example_timeout {
        println!("  example error: {error}");
    }
}

/// A duration in the unit a person reads fastest.
fn human(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1e3)
    }
}
