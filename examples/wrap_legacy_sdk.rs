//! Wrapping a blocking, `!Sync` vendor SDK for async code, two ways.
//!
//! `VendorClient` stands in for a legacy SDK client: every call blocks its
//! thread for 5 to 20 ms, about one call in 170 hangs forever (it waits on a
//! condition variable nobody signals, like a read on a dead connection), and
//! about one in 50 panics. Which request does what is a pseudo-random but
//! fixed function of the request id, so both wrappings get the same workload.
//! The client keeps a call counter in a `Cell`, so it is `Send` but not
//! `Sync`: one thread at a time may use it.
//!
//! A tokio runtime with 2 worker threads serves 1,000 concurrent callers
//! (one task each) through each wrapping in turn, while a probe task sleeps
//! 1 ms in a loop and records how late it wakes, the way a health check
//! would notice a stalled runtime:
//!
//! 1. **`ThreadBound<VendorClient>`**: one client on one dedicated thread,
//!    calls in submission order, with no spare thread (`max_abandoned(0)`).
//!    Once a call hangs and its caller gives up, the thread is stuck: the
//!    calls queued behind it and later calls fail at once with a saturation
//!    error that says so, instead of waiting out their deadlines.
//! 2. **`ForAsync<ClientSlots>`**: a bulkhead of at most 16 calls at once,
//!    replacing up to 4 threads stuck in hung calls, 200 ms per call, over a
//!    small checkout pool of clients (`ClientSlots` says why).
//!
//! For each it prints how the calls ended (timeouts by phase, refusals with
//! the stuck-thread count they report), the adapter's metrics, the probe's
//! lateness and the wall time, then what to look at. Every figure is
//! measured on the spot.
//!
//! Run it with
//!
//! ```text
//! cargo run --release --example wrap_legacy_sdk
//! ```
//!
//! It takes about 7 s. The hung SDK threads are never joined (nothing can
//! join a thread that never returns); returning from `main` ends the process.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::error::Error;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use colorseam::Phase;
use colorseam::adapter::{ForAsync, ThreadBound};
use colorseam::metrics::PoolMetrics;
use tokio::task::JoinSet;

/// Concurrent async callers, one request each.
const CALLERS: u32 = 1_000;
/// Worker threads of the service's runtime.
const RUNTIME_WORKERS: usize = 2;
/// The callers arrive spread over this window (`serve_callers` says why).
const ARRIVAL_WINDOW: Duration = Duration::from_secs(3);
/// Every call's deadline, queue wait included, in both wrappings.
const CALL_TIMEOUT: Duration = Duration::from_millis(200);
/// The bulkhead: the most SDK calls running at once.
const BULKHEAD_LIMIT: usize = 16;
/// Threads stuck in hung calls that the bulkhead replaces.
const BULKHEAD_MAX_ABANDONED: usize = 4;
/// The probe's sleep.
const PROBE_PERIOD: Duration = Duration::from_millis(1);
/// How long the probe runs on the idle runtime, for a baseline.
const BASELINE: Duration = Duration::from_millis(300);
/// Out of every 1,000 requests, how many hang and how many panic.
const HANG_PER_MILLE: u64 = 6;
const PANIC_PER_MILLE: u64 = 20;
/// Picks which requests hang or panic. This one makes an early request
/// hang, which is the case `ThreadBound` is about; any seed runs.
const SEED: u64 = 1697;
/// The SDK's panic messages start with this, so the panic hook can keep
/// them off the terminal (they are counted instead).
const PANIC_PREFIX: &str = "vendor SDK:";

/// When each hung call entered its hang, to see how many calls a section's
/// wrapping let hang and when the first one did.
static HANGS: Mutex<Vec<Instant>> = Mutex::new(Vec::new());
/// Serial numbers for clients, to count how many a wrapping made.
static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);
/// What hung calls wait on. Nobody ever signals it.
static NEVER: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());

// ---------------------------------------------------------------------------
// The fake vendor SDK.
// ---------------------------------------------------------------------------

/// What the SDK does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Answer(Duration),
    Panic,
    Hang,
}

/// The request's fate: pseudo-random, but the same on every run and in
/// both wrappings.
fn fate(request: u32) -> Fate {
    let hash = splitmix64(u64::from(request) ^ SEED);
    match hash % 1_000 {
        n if n < HANG_PER_MILLE => Fate::Hang,
        n if n < HANG_PER_MILLE + PANIC_PER_MILLE => Fate::Panic,
        _ => Fate::Answer(Duration::from_millis(5 + (hash >> 32) % 16)),
    }
}

/// A well-mixed 64-bit hash (SplitMix64's finaliser).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The legacy client: blocking, and `!Sync` because of the `Cell`.
struct VendorClient {
    serial: u64,
    calls: Cell<u64>,
}

/// A successful answer.
#[derive(Debug)]
struct Reply {
    /// Which client answered, to count the clients a wrapping used.
    client: u64,
}

impl VendorClient {
    fn connect() -> Self {
        VendorClient {
            serial: NEXT_CLIENT.fetch_add(1, Ordering::Relaxed),
            calls: Cell::new(0),
        }
    }

    /// The SDK call: blocks, and may panic or never return.
    fn lookup(&self, request: u32) -> Reply {
        self.calls.set(self.calls.get() + 1);
        match fate(request) {
            Fate::Answer(delay) => {
                std::thread::sleep(delay);
                Reply {
                    client: self.serial,
                }
            }
            Fate::Panic => panic!(
                "{PANIC_PREFIX} internal error on request {request} (call {} of client {})",
                self.calls.get(),
                self.serial
            ),
            Fate::Hang => hang_forever(),
        }
    }
}

/// Blocks the calling thread for good, like a read on a dead connection
/// with no timeout. The process can still exit: returning from `main` does
/// not wait for other threads.
fn hang_forever() -> ! {
    lock(&HANGS).push(Instant::now());
    let (mutex, never) = &NEVER;
    let mut guard = lock(mutex);
    loop {
        // In a loop because condition variables may wake spuriously.
        guard = never.wait(guard).unwrap_or_else(PoisonError::into_inner);
    }
}

/// Locks `mutex`, ignoring poison: every value here stays valid even if a
/// holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps the SDK's (expected, counted) panics off the terminal and forwards
/// every other panic to the hook that was there before, colorseam's
/// included.
fn silence_vendor_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied());
        if !message.is_some_and(|m| m.starts_with(PANIC_PREFIX)) {
            previous(info);
        }
    }));
}

// ---------------------------------------------------------------------------
// The two wrappings.
// ---------------------------------------------------------------------------

/// A checkout pool of clients, which *is* `Sync`, for `ForAsync`.
///
/// `ForAsync<T>` runs up to `limit` calls at once on different threads, so
/// it needs `T: Sync`, which `VendorClient` is not. A `Mutex<VendorClient>`
/// is `Sync` (the client is `Send`), but one mutex would serialise every
/// call and turn the bulkhead back into a single thread. A fresh client per
/// call would work too, but real SDK clients hold sessions and connections
/// that are costly to set up. So: one mutex-guarded client per thread the
/// bulkhead can ever hold (`limit + max_abandoned`), and a call takes the
/// first free one. A hung call keeps its client locked just as it keeps its
/// thread, and since the pool never holds more threads than there are
/// slots, a free slot always exists for every running call.
struct ClientSlots {
    slots: Vec<Mutex<VendorClient>>,
}

/// No client was free; impossible while the pool keeps its thread bound,
/// but handled rather than assumed.
#[derive(Debug)]
struct NoFreeClient;

impl ClientSlots {
    fn new(count: usize) -> Self {
        ClientSlots {
            slots: (0..count)
                .map(|_| Mutex::new(VendorClient::connect()))
                .collect(),
        }
    }

    /// Runs `f` with the first client no other call is using.
    fn with_client<R>(&self, f: impl FnOnce(&VendorClient) -> R) -> Result<R, NoFreeClient> {
        for slot in &self.slots {
            let client = match slot.try_lock() {
                Ok(client) => client,
                Err(TryLockError::WouldBlock) => continue,
                // An earlier call panicked inside the SDK; the client may be
                // half-updated, so replace it rather than trust it.
                Err(TryLockError::Poisoned(poisoned)) => {
                    let mut client = poisoned.into_inner();
                    *client = VendorClient::connect();
                    slot.clear_poison();
                    client
                }
            };
            return Ok(f(&client));
        }
        Err(NoFreeClient)
    }
}

/// The SDK, wrapped one way or the other.
enum Vendor {
    Bound(ThreadBound<VendorClient>),
    Bulkhead(ForAsync<ClientSlots>),
}

impl Vendor {
    fn thread_bound() -> Result<Self, colorseam::ConfigError> {
        // The factory runs on the adapter's thread, so the client is made
        // where it will live and never crosses threads.
        let bound = ThreadBound::builder("vendor-bound", VendorClient::connect)
            .default_timeout(CALL_TIMEOUT)
            .max_abandoned(0)
            .build()?;
        Ok(Vendor::Bound(bound))
    }

    fn bulkhead() -> Result<Self, colorseam::ConfigError> {
        let slots = ClientSlots::new(BULKHEAD_LIMIT + BULKHEAD_MAX_ABANDONED);
        let adapter = ForAsync::builder("vendor-bulkhead")
            .max_threads(BULKHEAD_LIMIT)
            .max_abandoned(BULKHEAD_MAX_ABANDONED)
            .default_timeout(CALL_TIMEOUT)
            .build(slots)?;
        Ok(Vendor::Bulkhead(adapter))
    }

    fn label(&self) -> &'static str {
        match self {
            Vendor::Bound(_) => "ThreadBound",
            Vendor::Bulkhead(_) => "ForAsync bulkhead",
        }
    }

    /// One SDK call from async code; never blocks the runtime.
    async fn lookup(&self, request: u32) -> Outcome {
        match self {
            Vendor::Bound(bound) => Outcome::of(bound.call(move |c| c.lookup(request)).await),
            Vendor::Bulkhead(bulkhead) => {
                match bulkhead
                    .call(move |s| s.with_client(|c| c.lookup(request)))
                    .await
                {
                    Ok(Ok(reply)) => Outcome::Ok(reply),
                    Ok(Err(NoFreeClient)) => Outcome::Other("no free client".to_owned()),
                    Err(error) => Outcome::of(Err(error)),
                }
            }
        }
    }

    fn metrics(&self) -> PoolMetrics {
        match self {
            Vendor::Bound(bound) => bound.metrics(),
            Vendor::Bulkhead(bulkhead) => bulkhead.pool().metrics(),
        }
    }
}

// ---------------------------------------------------------------------------
// Outcomes, counted.
// ---------------------------------------------------------------------------

/// How one caller's call ended.
enum Outcome {
    Ok(Reply),
    TimedOut(colorseam::Error),
    Panicked(colorseam::Error),
    Refused(colorseam::Error),
    Other(String),
}

impl Outcome {
    fn of(result: Result<Reply, colorseam::Error>) -> Self {
        match result {
            Ok(reply) => Outcome::Ok(reply),
            Err(e) if e.is_timeout() => Outcome::TimedOut(e),
            Err(e) if e.is_panic() => Outcome::Panicked(e),
            Err(e) if e.is_saturated() => Outcome::Refused(e),
            Err(e) => Outcome::Other(e.to_string()),
        }
    }
}

/// The outcomes of one section, by kind.
#[derive(Default)]
struct Tally {
    ok: usize,
    timed_out_room: usize,
    timed_out_queued: usize,
    timed_out_running: usize,
    panicked: usize,
    refused: usize,
    /// The stuck-thread counts the refusals reported.
    refused_stuck: BTreeSet<usize>,
    /// When each refusal was answered (refusals are immediate).
    refused_at: Vec<Instant>,
    /// When each queued timeout was answered.
    timed_out_queued_at: Vec<Instant>,
    other: usize,
    clients: BTreeSet<u64>,
    /// One message of each failure kind, to show what callers see.
    examples: Vec<(&'static str, String)>,
}

impl Tally {
    fn record(&mut self, outcome: Outcome, answered_at: Instant) {
        match outcome {
            Outcome::Ok(reply) => {
                self.ok += 1;
                self.clients.insert(reply.client);
            }
            Outcome::TimedOut(e) => {
                let (counter, what) = match e.phase() {
                    Some(Phase::WaitingForRoom) => (&mut self.timed_out_room, "timeout, room"),
                    Some(Phase::Queued) => (&mut self.timed_out_queued, "timeout, queued"),
                    Some(Phase::Running) => (&mut self.timed_out_running, "timeout, running"),
                    // `Phase` may grow; a timeout we cannot place is "other".
                    _ => (&mut self.other, "other"),
                };
                *counter += 1;
                if e.phase() == Some(Phase::Queued) {
                    self.timed_out_queued_at.push(answered_at);
                }
                self.example(what, &e);
            }
            Outcome::Panicked(e) => {
                self.panicked += 1;
                self.example("panic", &e);
            }
            Outcome::Refused(e) => {
                self.refused += 1;
                self.refused_stuck.insert(e.stuck_threads());
                self.refused_at.push(answered_at);
                self.example("refusal", &e);
            }
            Outcome::Other(message) => {
                self.other += 1;
                self.example("other", &message);
            }
        }
    }

    fn example(&mut self, what: &'static str, message: &dyn fmt::Display) {
        if !self.examples.iter().any(|(w, _)| *w == what) {
            self.examples.push((what, message.to_string()));
        }
    }

    fn timed_out(&self) -> usize {
        self.timed_out_room + self.timed_out_queued + self.timed_out_running
    }

    fn total(&self) -> usize {
        self.ok + self.timed_out() + self.panicked + self.refused + self.other
    }
}

/// Whether every caller got exactly one answer.
struct Answers {
    /// Answers per request id.
    per_caller: Vec<u32>,
    /// Caller tasks that died without answering (they should not).
    lost_tasks: usize,
}

impl Answers {
    fn answered_once(&self) -> usize {
        self.per_caller.iter().filter(|&&n| n == 1).count()
    }

    fn missing(&self) -> usize {
        self.per_caller.iter().filter(|&&n| n == 0).count()
    }

    fn duplicated(&self) -> usize {
        self.per_caller.iter().filter(|&&n| n > 1).count()
    }

    fn total(&self) -> u32 {
        self.per_caller.iter().sum()
    }
}

// ---------------------------------------------------------------------------
// The service: callers plus a probe.
// ---------------------------------------------------------------------------

/// What one wrapping measured.
struct Section {
    label: &'static str,
    tally: Tally,
    answers: Answers,
    /// SDK calls that hung during this section (and hang still).
    hung: usize,
    /// Refusals answered before any call of this section hung: the thread
    /// was "stuck" only in a call that overran its deadline and then
    /// returned.
    refused_before_hang: usize,
    /// Queued timeouts answered after the first hang began: calls that were
    /// already queued behind the hung call when it was abandoned.
    queued_behind_hang: usize,
    /// When the first call of this section hung, from the section's start.
    first_hang: Option<Duration>,
    metrics: PoolMetrics,
    probe: Lateness,
    wall: Duration,
}

/// Serves the 1,000 callers through `vendor` with the probe running.
async fn run_section(vendor: Vendor) -> Section {
    let vendor = Arc::new(vendor);
    let stop = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn(probe(stop.clone()));

    let started = Instant::now();
    let (tally, answers) = serve_callers(vendor.clone()).await;
    let wall = started.elapsed();

    stop.store(true, Ordering::Relaxed);
    let lateness = probe.await.expect("the probe does not panic");
    let hangs: Vec<Instant> = lock(&HANGS)
        .iter()
        .copied()
        .filter(|&at| at >= started)
        .collect();
    let first_hang = hangs.iter().min().copied();
    let before_hang = |at: &&Instant| first_hang.is_none_or(|first| **at < first);
    let refused_before_hang = tally.refused_at.iter().filter(before_hang).count();
    let queued_behind_hang = tally.timed_out_queued_at.len()
        - tally.timed_out_queued_at.iter().filter(before_hang).count();
    Section {
        label: vendor.label(),
        tally,
        answers,
        hung: hangs.len(),
        refused_before_hang,
        queued_behind_hang,
        first_hang: first_hang.map(|at| at - started),
        metrics: vendor.metrics(),
        probe: Lateness::of(lateness),
        wall,
    }
}

/// Spawns every caller at once and waits for all of them.
///
/// All 1,000 tasks are alive together, but each makes its call at its own
/// arrival time, spread evenly over `ARRIVAL_WINDOW` like requests reaching
/// a server. (In a single instant burst every call would be submitted before
/// the first one hung, and `ThreadBound`'s fail-fast would have nothing to
/// refuse.)
async fn serve_callers(vendor: Arc<Vendor>) -> (Tally, Answers) {
    let start = tokio::time::Instant::now();
    let mut callers = JoinSet::new();
    for request in 0..CALLERS {
        let arrival = start + ARRIVAL_WINDOW * request / CALLERS;
        let vendor = vendor.clone();
        callers.spawn(async move {
            tokio::time::sleep_until(arrival).await;
            let outcome = vendor.lookup(request).await;
            (request, outcome, Instant::now())
        });
    }

    let mut tally = Tally::default();
    let mut answers = Answers {
        per_caller: vec![0; CALLERS as usize],
        lost_tasks: 0,
    };
    while let Some(joined) = callers.join_next().await {
        match joined {
            Ok((request, outcome, answered_at)) => {
                answers.per_caller[request as usize] += 1;
                tally.record(outcome, answered_at);
            }
            Err(_join_error) => answers.lost_tasks += 1,
        }
    }
    (tally, answers)
}

/// Sleeps `PROBE_PERIOD` in a loop until told to stop, recording how late
/// each wake-up is. A runtime worker stuck in blocking code shows up here
/// at once.
async fn probe(stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut lateness = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let due = Instant::now() + PROBE_PERIOD;
        tokio::time::sleep(PROBE_PERIOD).await;
        lateness.push(Instant::now().saturating_duration_since(due));
    }
    lateness
}

/// The probe on the idle runtime: what "responsive" looks like here, timer
/// granularity included.
async fn idle_baseline() -> Lateness {
    let stop = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn(probe(stop.clone()));
    tokio::time::sleep(BASELINE).await;
    stop.store(true, Ordering::Relaxed);
    Lateness::of(probe.await.expect("the probe does not panic"))
}

/// Percentiles of the probe's lateness.
struct Lateness {
    samples: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Lateness {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        // Nearest rank: the smallest sample with at least q of them at or below it.
        let quantile = |q: f64| -> Duration {
            let rank = (q * samples.len() as f64).ceil() as usize;
            samples
                .get(rank.clamp(1, samples.len().max(1)) - 1)
                .copied()
                .unwrap_or_default()
        };
        Lateness {
            samples: samples.len(),
            p50: quantile(0.50),
            p99: quantile(0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

// ---------------------------------------------------------------------------
// Reporting.
// ---------------------------------------------------------------------------

/// Prints one table row: a label and one cell per section.
fn row(label: &str, cell: impl Fn(&Section) -> String, sections: &[&Section]) {
    print!("  {label:<40}");
    for section in sections {
        print!(" {:>22}", cell(section));
    }
    println!();
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn stuck_counts(set: &BTreeSet<usize>) -> String {
    let counts: Vec<String> = set.iter().map(usize::to_string).collect();
    if counts.is_empty() {
        "-".to_owned()
    } else {
        counts.join(",")
    }
}

fn print_workload() {
    let hangs: Vec<u32> = (0..CALLERS).filter(|&r| fate(r) == Fate::Hang).collect();
    let panics = (0..CALLERS).filter(|&r| fate(r) == Fate::Panic).count();
    println!(
        "Workload: {CALLERS} callers arriving over {ARRIVAL_WINDOW:?}, deadline {CALL_TIMEOUT:?} \
         per call; the SDK would panic on {panics} of them and hang on {} (requests {hangs:?}).",
        hangs.len()
    );
    println!(
        "Runtime: multi-thread, {RUNTIME_WORKERS} workers. Bulkhead: limit {BULKHEAD_LIMIT}, \
         max_abandoned {BULKHEAD_MAX_ABANDONED}.\n"
    );
}

fn print_table(sections: &[&Section]) {
    print!("  {:<40}", "");
    for section in sections {
        print!(" {:>22}", section.label);
    }
    println!();

    println!(" how the calls ended (as callers saw them)");
    row("ok", |s| s.tally.ok.to_string(), sections);
    row(
        "timed out, waiting for room",
        |s| s.tally.timed_out_room.to_string(),
        sections,
    );
    row(
        "timed out, queued",
        |s| s.tally.timed_out_queued.to_string(),
        sections,
    );
    row(
        "timed out, running (abandoned)",
        |s| s.tally.timed_out_running.to_string(),
        sections,
    );
    row("panicked", |s| s.tally.panicked.to_string(), sections);
    row(
        "refused: saturated",
        |s| s.tally.refused.to_string(),
        sections,
    );
    row(
        "  stuck threads those refusals named",
        |s| stuck_counts(&s.tally.refused_stuck),
        sections,
    );
    row(
        "  of them before any call had hung",
        |s| s.refused_before_hang.to_string(),
        sections,
    );
    row("other", |s| s.tally.other.to_string(), sections);
    row("SDK calls that hung", |s| s.hung.to_string(), sections);
    row(
        "  the first one, after the start",
        |s| s.first_hang.map_or_else(|| "-".to_owned(), ms),
        sections,
    );
    row(
        "clients used (bulkhead: panic retires)",
        |s| s.tally.clients.len().to_string(),
        sections,
    );

    println!(" every caller answered exactly once?");
    row(
        "callers / answers",
        |s| format!("{CALLERS} / {}", s.answers.total()),
        sections,
    );
    row(
        "answered once / missing / twice+",
        |s| {
            let a = &s.answers;
            format!(
                "{} / {} / {}",
                a.answered_once(),
                a.missing(),
                a.duplicated()
            )
        },
        sections,
    );

    println!(" adapter metrics (pool().metrics() after the run)");
    row(
        "threads total / abandoned / peak",
        |s| {
            let t = &s.metrics.threads;
            format!("{} / {} / {}", t.total, t.abandoned, t.peak)
        },
        sections,
    );
    row(
        "completed / panicked",
        |s| {
            let o = &s.metrics.outcomes;
            format!("{} / {}", o.completed, o.panicked)
        },
        sections,
    );
    row(
        "timed out room / queued / running",
        |s| {
            let o = &s.metrics.outcomes;
            format!(
                "{} / {} / {}",
                o.timed_out_waiting_for_room, o.timed_out_queued, o.timed_out_running
            )
        },
        sections,
    );
    row(
        "rejected / cancelled / shut down",
        |s| {
            let o = &s.metrics.outcomes;
            format!(
                "{} / {} / {}",
                o.rejected,
                o.cancelled_queued + o.cancelled_running,
                o.shut_down
            )
        },
        sections,
    );
    row(
        "run time p50 / p99",
        |s| {
            let r = &s.metrics.run_time;
            format!("{} / {}", ms(r.p50), ms(r.p99))
        },
        sections,
    );

    println!(" runtime responsiveness (1 ms probe lateness)");
    row("samples", |s| s.probe.samples.to_string(), sections);
    row(
        "p50 / p99",
        |s| format!("{} / {}", ms(s.probe.p50), ms(s.probe.p99)),
        sections,
    );
    row("max", |s| ms(s.probe.max), sections);
    row("wall time", |s| ms(s.wall), sections);
}

fn print_examples(sections: &[&Section]) {
    println!("\nWhat callers were told (one of each kind):");
    for section in sections {
        for (what, message) in &section.tally.examples {
            println!("  [{}, {what}] {message}", section.label);
        }
    }
}

/// The three lines to read, built from the measurements.
fn print_takeaways(idle: &Lateness, bound: &Section, bulkhead: &Section) {
    let sections = [bound, bulkhead];
    let hung: usize = sections.iter().map(|s| s.hung).sum();
    let worst_max = sections.iter().map(|s| s.probe.max).max();
    let worst_p99 = sections.iter().map(|s| s.probe.p99).max();
    let exact = sections.iter().all(|s| exactly_one_answer_each(s));
    println!("\nWhat to look at:");
    println!(
        "- Responsive: {hung} SDK calls hung for good, yet the 1 ms probe was never more than {} \
         late (worst p99 {}; idle runtime: p99 {}, max {}). The SDK never ran on a runtime worker.",
        ms(worst_max.unwrap_or_default()),
        ms(worst_p99.unwrap_or_default()),
        ms(idle.p99),
        ms(idle.max),
    );
    println!(
        "- Bounded: {} calls hung in the bulkhead, yet it never held more than {} threads (bound: \
         {BULKHEAD_LIMIT} + {BULKHEAD_MAX_ABANDONED} replaced) and answered {} of {CALLERS} ok. \
         ThreadBound's one thread hung {} into the run; it then refused {} calls at once \
         (\"1 thread is stuck\"), those queued behind the hung call included ({} queued calls \
         waited out their deadlines).",
        bulkhead.hung,
        bulkhead.metrics.threads.peak,
        bulkhead.tally.ok,
        bound.first_hang.map_or_else(|| "never".to_owned(), ms),
        bound.tally.refused,
        bound.queued_behind_hang,
    );
    println!(
        "- One answer each: in both wrappings {} of the {CALLERS} callers got exactly one result \
         (a reply or a typed error): none lost, none answered twice.",
        if exact { "all" } else { "NOT all" }
    );
}

/// Every caller answered once, and every answer was counted once.
fn exactly_one_answer_each(section: &Section) -> bool {
    let callers = CALLERS as usize;
    section.answers.answered_once() == callers
        && section.answers.lost_tasks == 0
        && section.tally.total() == callers
}

fn main() -> Result<(), Box<dyn Error>> {
    silence_vendor_panics();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_WORKERS)
        .enable_all()
        .build()?;

    print_workload();
    let idle = runtime.block_on(runtime.spawn(idle_baseline()))?;
    // Each section is spawned, not run by `block_on` itself, so the service
    // lives on the runtime's two workers like a real server.
    let bound = runtime.block_on(runtime.spawn(run_section(Vendor::thread_bound()?)))?;
    let bulkhead = runtime.block_on(runtime.spawn(run_section(Vendor::bulkhead()?)))?;

    print_table(&[&bound, &bulkhead]);
    print_examples(&[&bound, &bulkhead]);
    print_takeaways(&idle, &bound, &bulkhead);

    if !(exactly_one_answer_each(&bound) && exactly_one_answer_each(&bulkhead)) {
        return Err("some caller did not get exactly one answer".into());
    }
    Ok(())
}
