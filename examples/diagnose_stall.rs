//! Diagnose a stalled runtime *while it is stalled*, then fix it.
//!
//! A small tokio service (a multi-thread runtime with 2 workers) runs two
//! well-behaved instrumented tasks: an HTTP-ish handler loop that serves a
//! request every few milliseconds, and a cache refresher. Then a third
//! instrumented task, `nightly-report`, starts. It uploads its PDF
//! asynchronously, but fetches its rows with a *synchronous* database
//! client (a `std::net::TcpStream` read) from a "database" (a local TCP
//! server) that accepts the connection and then goes silent for 1.5 s: the
//! incident this crate exists for, where a dependency's connection hangs
//! inside async code and the service freezes without a word.
//!
//! colorseam's detection tools watch the whole time:
//!
//! - a [`Watchdog`] with a 100 ms threshold, on its own OS thread, prints
//!   each report the moment it arrives, stamped with the time since start:
//!   the stall while it is still going on (worker, time so far, task name,
//!   call site and, on Linux, what the thread is blocked in: the `read` /
//!   `recvfrom` system call on the TCP socket to the database's address),
//!   the follow-ups, and its end with the total;
//! - a [`LagMonitor`] measures scheduler lag (p50/p99/max) before, during
//!   and after the stall. Whether it notices varies from run to run: often
//!   the healthy worker carries the service and lag barely moves (which is
//!   how this kind of bug hides), sometimes the other tasks sit queued
//!   behind the blocked worker and the whole service waits;
//! - the slow-poll hook ([`set_slow_poll_hook`]) prints every instrumented
//!   poll slower than 10 ms, once that poll has returned.
//!
//! It then prints what the reports told us (which task, where, how long,
//! the fix) and runs the fixed version, where `nightly-report` hands the
//! database call to `colorseam::offload`: it counts the watchdog's reports (none
//! expected) and prints the lag. Every figure is measured on the spot;
//! nothing is hard-coded.
//!
//! Run it with
//!
//! ```text
//! cargo run --release --example diagnose_stall
//! ```
//!
//! It takes about 4 s.

use std::collections::HashSet;
use std::error::Error;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::Location;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use colorseam::detect::{
    LagMonitor, StallReport, StallState, TaskStats, Watchdog, instrument, set_slow_poll_hook,
};
use colorseam::metrics::Latency;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// Worker threads of the service's runtime: more than one, so the stall
/// hides behind a runtime that still looks alive.
const WORKERS: usize = 2;
/// How long one poll may hold a worker before the watchdog speaks.
const STALL_THRESHOLD: Duration = Duration::from_millis(100);
/// How long the database stays silent after accepting a query.
const DB_SILENCE: Duration = Duration::from_millis(1500);
/// The lag monitor's tick: short, so a window of a few hundred ms gives
/// hundreds of samples.
const LAG_TICK: Duration = Duration::from_millis(1);
/// How long the service runs undisturbed before and after the report.
const QUIET_WINDOW: Duration = Duration::from_millis(400);
/// One "request" arrives this often.
const REQUEST_EVERY: Duration = Duration::from_millis(5);
/// The database call each request awaits.
const DB_CALL: Duration = Duration::from_millis(2);
/// The cache refresher's period and the upstream call it awaits.
const CACHE_EVERY: Duration = Duration::from_millis(50);
const UPSTREAM_CALL: Duration = Duration::from_millis(5);
/// The report's async part: uploading the PDF.
const UPLOAD: Duration = Duration::from_millis(20);
/// The watchdog reports a stall's end on its next tick after the poll
/// returns; this bounds how long we wait for that report.
const END_REPORT_WAIT: Duration = Duration::from_secs(1);

/// Slow polls the hook has seen, across both runs (the hook is global).
static SLOW_POLLS: AtomicU64 = AtomicU64::new(0);

/// Time since the program started, for the `[  0.612s]` stamps.
#[derive(Debug, Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn start() -> Self {
        Clock(Instant::now())
    }

    fn stamp(self) -> String {
        format!("[{:>7.3}s]", self.0.elapsed().as_secs_f64())
    }

    /// Prints one line stamped with the time since start.
    fn say(self, line: impl std::fmt::Display) {
        println!("{} {line}", self.stamp());
    }
}

/// `1.50s` above a second, `412.3ms` below: easy to compare at a glance.
fn human(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2}s", d.as_secs_f64())
    } else {
        format!("{:.1}ms", d.as_secs_f64() * 1e3)
    }
}

fn lag_line(label: &str, lag: &Latency) -> String {
    format!(
        "LAG        {label:<7} p50 {:>8}  p99 {:>8}  max {:>8}  ({} ticks)",
        human(lag.p50),
        human(lag.p99),
        human(lag.max),
        lag.count
    )
}

// ---------------------------------------------------------------------------
// The service: two healthy tasks and the nightly report.
// ---------------------------------------------------------------------------

/// Spawns `work` as an instrumented task named `name` and hands back its
/// output with its [`TaskStats`]. `#[track_caller]` makes the call site the
/// watchdog reports the *caller's* line, not this helper's.
#[track_caller]
fn spawn_instrumented<F>(
    handle: &Handle,
    name: &'static str,
    work: F,
) -> JoinHandle<(F::Output, TaskStats)>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let task = instrument(work, name);
    handle.spawn(async move {
        // Pinned here rather than spawned directly so its stats can still
        // be read once it has finished.
        let mut task = pin!(task);
        let output = task.as_mut().await;
        (output, task.stats())
    })
}

/// What the healthy tasks got done, to show the service kept serving.
#[derive(Debug, Default)]
struct Served {
    requests: AtomicU64,
    refreshes: AtomicU64,
}

/// The handler loop and the cache refresher, until told to stop.
struct Service {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<((), TaskStats)>>,
    served: Arc<Served>,
}

impl Service {
    fn start(handle: &Handle) -> Self {
        let (stop, stopped) = watch::channel(false);
        let served = Arc::new(Served::default());
        let tasks = vec![
            spawn_instrumented(
                handle,
                "http-handler",
                http_handler(stopped.clone(), served.clone()),
            ),
            spawn_instrumented(
                handle,
                "cache-refresher",
                cache_refresher(stopped, served.clone()),
            ),
        ];
        Service {
            stop,
            tasks,
            served,
        }
    }

    /// Stops both loops and waits for them.
    async fn stop(self) -> Result<Arc<Served>, tokio::task::JoinError> {
        // Both loops also end if the sender is gone, so a failed send
        // (no loop listening any more) needs no handling.
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.await?;
        }
        Ok(self.served)
    }
}

/// Serves a request every `REQUEST_EVERY`, each awaiting a database call.
async fn http_handler(mut stop: watch::Receiver<bool>, served: Arc<Served>) {
    let mut arrivals = tokio::time::interval(REQUEST_EVERY);
    // A late request is served late, not followed by a burst of catch-ups.
    arrivals.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = arrivals.tick() => {
                tokio::time::sleep(DB_CALL).await;
                served.requests.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Refreshes a cache from upstream every `CACHE_EVERY`.
async fn cache_refresher(mut stop: watch::Receiver<bool>, served: Arc<Served>) {
    let mut period = tokio::time::interval(CACHE_EVERY);
    period.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = period.tick() => {
                tokio::time::sleep(UPSTREAM_CALL).await;
                served.refreshes.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The "database": a local TCP server that accepts each connection, reads
/// the query, and then goes silent for `DB_SILENCE` before it answers (a
/// dropped route, a lock held upstream: the client cannot tell).
fn start_database() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    std::thread::Builder::new()
        .name("fake-database".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut query = String::new();
                    let mut reader = BufReader::new(&conn);
                    if reader.read_line(&mut query).is_err() {
                        return;
                    }
                    std::thread::sleep(DB_SILENCE);
                    let rows: Vec<u8> = (1..=1000u64).flat_map(u64::to_le_bytes).collect();
                    let _ = (&conn).write_all(&rows);
                });
            }
        })?;
    Ok(address)
}

/// The synchronous database client a dependency hides inside async code:
/// a plain `std::net::TcpStream`, blocking its thread until the answer.
fn query_rows_blocking(db: SocketAddr) -> std::io::Result<Vec<u64>> {
    let mut conn = TcpStream::connect(db)?;
    conn.write_all(b"SELECT * FROM orders WHERE day = today\n")?;
    let mut bytes = vec![0u8; 1000 * 8];
    conn.read_exact(&mut bytes)?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("chunks of 8")))
        .collect())
}

fn render_pdf(rows: &[u64]) -> Vec<u8> {
    rows.iter().flat_map(|r| r.to_le_bytes()).collect()
}

async fn upload(pdf: Vec<u8>) -> usize {
    tokio::time::sleep(UPLOAD).await;
    pdf.len()
}

/// The bug: a blocking call inside async code. The worker polling this
/// task can do nothing else until the database answers.
async fn nightly_report_blocking(db: SocketAddr) -> std::io::Result<usize> {
    let rows = query_rows_blocking(db)?;
    let pdf = render_pdf(&rows);
    Ok(upload(pdf).await)
}

/// The fix: the query runs on colorseam's bounded blocking pool and this
/// task just awaits it, leaving the worker free.
async fn nightly_report_offloaded(db: SocketAddr) -> Result<usize, Box<dyn Error + Send + Sync>> {
    let rows = colorseam::offload(move || query_rows_blocking(db)).await??;
    let pdf = render_pdf(&rows);
    Ok(upload(pdf).await)
}

// ---------------------------------------------------------------------------
// Detection: the watchdog, its live output, the slow-poll hook.
// ---------------------------------------------------------------------------

/// One watchdog report and when it arrived.
#[derive(Debug, Clone)]
struct Seen {
    at: Duration,
    report: StallReport,
}

fn install_slow_poll_hook(clock: Clock) -> Result<(), Box<dyn Error>> {
    let installed = set_slow_poll_hook(move |task, location, took| {
        SLOW_POLLS.fetch_add(1, Ordering::Relaxed);
        clock.say(format_args!(
            "SLOW POLL  task {task:?} ({location}): one poll took {}",
            human(took)
        ));
    });
    if installed {
        Ok(())
    } else {
        Err("a slow-poll hook was already set in this process".into())
    }
}

/// Installs a watchdog that prints each report as it arrives and forwards
/// it, so the run can wait for a stall's end and summarise afterwards.
fn install_watchdog(
    handle: &Handle,
    clock: Clock,
) -> std::io::Result<(Watchdog, mpsc::UnboundedReceiver<Seen>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    // Stalls reported as ongoing and not yet ended, so follow-ups read as
    // follow-ups. Keyed by thread: one stall per worker at a time.
    let ongoing: Mutex<HashSet<Option<ThreadId>>> = Mutex::new(HashSet::new());
    let watchdog = Watchdog::builder()
        .threshold(STALL_THRESHOLD)
        .on_report(move |report: &StallReport| {
            let first = {
                let mut ongoing = ongoing.lock().unwrap_or_else(PoisonError::into_inner);
                match report.state {
                    StallState::Ongoing => ongoing.insert(report.thread),
                    // Ended (the enum is non-exhaustive, so anything else
                    // is treated as an end too).
                    _ => ongoing.remove(&report.thread),
                }
            };
            clock.say(describe(report, first));
            // The receiver goes away when its run ends; a report after
            // that has been printed, which is all it is still good for.
            let _ = tx.send(Seen {
                at: clock.0.elapsed(),
                report: report.clone(),
            });
        })
        .install(handle)?;
    Ok((watchdog, rx))
}

/// One line per report, in the words a person on call would want.
fn describe(report: &StallReport, first: bool) -> String {
    let worker = report.worker.as_deref().unwrap_or("<unnamed>");
    let task = match (&report.task, report.location) {
        (Some(task), Some(at)) => format!("task {task:?} (instrumented at {at})"),
        (Some(task), None) => format!("task {task:?}"),
        _ => "an uninstrumented task".to_owned(),
    };
    let so_far = human(report.stalled_for);
    // What the thread is blocked in, as the kernel says (Linux).
    let wait = report
        .wait
        .as_ref()
        .map_or_else(String::new, |wait| format!("; {wait}"));
    match report.state {
        StallState::Ongoing if first => {
            format!("STALL      worker {worker:?} blocked for {so_far} so far, in {task}{wait}")
        }
        StallState::Ongoing => {
            format!("STALL      still stalled, {so_far} so far ({worker:?}){wait}")
        }
        _ => format!("STALL END  worker {worker:?} is back after {so_far} in total"),
    }
}

/// Moves every report that has arrived into `seen`, waiting up to
/// `END_REPORT_WAIT` for a stall's end to be reported. Returns whether it
/// was.
async fn collect_until_end(rx: &mut mpsc::UnboundedReceiver<Seen>, seen: &mut Vec<Seen>) -> bool {
    let deadline = tokio::time::Instant::now() + END_REPORT_WAIT;
    loop {
        if seen.iter().any(|s| s.report.state == StallState::Ended) {
            return true;
        }
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(report)) => seen.push(report),
            Ok(None) | Err(_) => return false,
        }
    }
}

/// Runs a fresh lag monitor for the length of `during`. A monitor's
/// figures are cumulative, so each window gets its own.
async fn measure_lag<T>(handle: &Handle, during: impl Future<Output = T>) -> (T, Latency) {
    let lag = LagMonitor::start(handle, LAG_TICK).expect("the lag monitor's thread starts");
    let output = during.await;
    (output, lag.snapshot())
}

// ---------------------------------------------------------------------------
// The two runs.
// ---------------------------------------------------------------------------

/// What the buggy run measured.
struct BuggyRun {
    reports: Vec<Seen>,
    report_stats: TaskStats,
    db: SocketAddr,
    lag_before: Latency,
    lag_during: Latency,
    lag_after: Latency,
    slow_polls: u64,
}

async fn run_buggy(
    handle: &Handle,
    clock: Clock,
    db: SocketAddr,
) -> Result<BuggyRun, Box<dyn Error>> {
    let slow_polls_at_start = SLOW_POLLS.load(Ordering::Relaxed);
    let (watchdog, mut rx) = install_watchdog(handle, clock)?;
    let service = Service::start(handle);
    clock.say(format_args!(
        "service up: {WORKERS} workers, http-handler and cache-refresher running; \
         watchdog threshold {}",
        human(STALL_THRESHOLD)
    ));

    let ((), lag_before) = measure_lag(handle, tokio::time::sleep(QUIET_WINDOW)).await;
    clock.say(lag_line("before", &lag_before));

    clock.say("nightly-report starts");
    let requests_before = service.served.requests.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut reports = Vec::new();
    let ((finished, ended), lag_during) = measure_lag(handle, async {
        let job = spawn_instrumented(handle, "nightly-report", nightly_report_blocking(db));
        let finished = job.await;
        let ended = collect_until_end(&mut rx, &mut reports).await;
        (finished, ended)
    })
    .await;
    let (bytes, report_stats) = finished?;
    let bytes = bytes?;
    clock.say(format_args!("nightly-report done: uploaded {bytes} bytes"));
    if !ended {
        clock.say("(no stall end reported within the wait)");
    }
    clock.say(lag_line("during", &lag_during));
    let requests_during = service.served.requests.load(Ordering::Relaxed) - requests_before;
    // One request arrives every REQUEST_EVERY: what a healthy handler
    // would have served in the same time.
    let arrivals = started.elapsed().as_nanos() / REQUEST_EVERY.as_nanos();
    clock.say(format_args!(
        "meanwhile http-handler served {requests_during} requests (about {arrivals} arrived)"
    ));

    let ((), lag_after) = measure_lag(handle, tokio::time::sleep(QUIET_WINDOW)).await;
    clock.say(lag_line("after", &lag_after));

    let served = service.stop().await?;
    drop(watchdog);
    // Anything reported after the end (another stall) belongs in the tally.
    while let Ok(late) = rx.try_recv() {
        reports.push(late);
    }
    clock.say(format_args!(
        "service stopped: {} requests served, {} cache refreshes",
        served.requests.load(Ordering::Relaxed),
        served.refreshes.load(Ordering::Relaxed)
    ));
    Ok(BuggyRun {
        reports,
        report_stats,
        db,
        lag_before,
        lag_during,
        lag_after,
        slow_polls: SLOW_POLLS.load(Ordering::Relaxed) - slow_polls_at_start,
    })
}

/// What the fixed run measured.
struct FixedRun {
    watchdog_reports: u64,
    report_stats: TaskStats,
    lag: Latency,
    slow_polls: u64,
    report_wall: Duration,
}

async fn run_fixed(
    handle: &Handle,
    clock: Clock,
    db: SocketAddr,
) -> Result<FixedRun, Box<dyn Error>> {
    let slow_polls_at_start = SLOW_POLLS.load(Ordering::Relaxed);
    let (watchdog, _reports) = install_watchdog(handle, clock)?;
    let service = Service::start(handle);
    clock.say("service up again, nightly-report now offloads its database call");

    let ((finished, report_wall), lag) = measure_lag(handle, async {
        let started = Instant::now();
        let job = spawn_instrumented(handle, "nightly-report", nightly_report_offloaded(db));
        let finished = job.await;
        let report_wall = started.elapsed();
        // Give the watchdog a few of its ticks after the end, so a stall
        // at the very end would still be reported before we count.
        tokio::time::sleep(STALL_THRESHOLD * 2).await;
        (finished, report_wall)
    })
    .await;
    let (bytes, report_stats) = finished?;
    let bytes = bytes.map_err(|e| e.to_string())?;
    clock.say(format_args!("nightly-report done: uploaded {bytes} bytes"));
    clock.say(lag_line("during", &lag));

    let served = service.stop().await?;
    clock.say(format_args!(
        "service stopped: {} requests served, {} cache refreshes",
        served.requests.load(Ordering::Relaxed),
        served.refreshes.load(Ordering::Relaxed)
    ));
    Ok(FixedRun {
        watchdog_reports: watchdog.reports(),
        report_stats,
        lag,
        slow_polls: SLOW_POLLS.load(Ordering::Relaxed) - slow_polls_at_start,
        report_wall,
    })
}

// ---------------------------------------------------------------------------
// What it told us.
// ---------------------------------------------------------------------------

fn print_diagnosis(run: &BuggyRun) {
    println!();
    println!("What this told us");
    let ended = run
        .reports
        .iter()
        .filter(|s| s.report.state == StallState::Ended)
        .max_by_key(|s| s.report.stalled_for);
    let Some(ended) = ended else {
        println!(
            "  the watchdog reported no finished stall ({} reports)",
            run.reports.len()
        );
        return;
    };
    let stall = &ended.report;
    let live: Vec<&Seen> = run
        .reports
        .iter()
        .filter(|s| s.report.state == StallState::Ongoing && s.report.thread == stall.thread)
        .collect();
    let task = stall.task.as_deref().unwrap_or("<uninstrumented>");
    let location = stall
        .location
        .map_or_else(|| "unknown".to_owned(), Location::to_string);
    println!("  which task: {task:?}");
    println!("  where:      {location}, where the task was spawned and instrumented");
    println!("              (the blocking call is somewhere in that task's body)");
    println!(
        "  how long:   one poll held worker {:?} for {}",
        stall.worker.as_deref().unwrap_or("<unnamed>"),
        human(stall.stalled_for)
    );
    // What the live reports said the thread was blocked in, and whether
    // that names the database.
    match live.iter().rev().find_map(|s| s.report.wait.as_ref()) {
        Some(wait) => {
            let names_db = wait.to_string().contains(&format!("-> {}", run.db));
            println!("  waiting:    {wait}");
            println!(
                "              (the database is at {}: {})",
                run.db,
                if names_db {
                    "named while the stall was still going on"
                } else {
                    "not named"
                }
            );
        }
        None => println!("  blocked in: not known here (needs Linux with a readable /proc)"),
    }
    if let Some(first) = live.first() {
        // The report's own one-line form, as the default hook logs it.
        println!("  as logged:  {}", first.report);
        println!(
            "  when:       first alert at {:.3}s, {} into the stall and {} before it ended; \
             {} live reports in all",
            first.at.as_secs_f64(),
            human(first.report.stalled_for),
            human(ended.at.saturating_sub(first.at)),
            live.len()
        );
    }
    println!(
        "  task stats: {} polls, {} slow, longest poll {} (slow-poll hook fired {} times)",
        run.report_stats.polls,
        run.report_stats.slow_polls,
        human(run.report_stats.max_poll),
        run.slow_polls
    );
    println!(
        "  lag p99:    before {}, during {}, after {} (max during {})",
        human(run.lag_before.p99),
        human(run.lag_during.p99),
        human(run.lag_after.p99),
        human(run.lag_during.max)
    );
    println!("  lag:        {}", lag_verdict(run, stall.stalled_for));
    println!(
        "  the fix:    move the blocking part off the worker: \
         `colorseam::offload(move || query_rows_blocking(db)).await??`"
    );
    println!();
}

/// Whether the lag monitor noticed a stall of length `stall`. With more
/// than one worker the others keep scheduling, so a single stuck worker may
/// barely move it: the question is whether any tick came anywhere near as
/// late as the stall was long.
fn lag_verdict(run: &BuggyRun, stall: Duration) -> String {
    let worst = run.lag_during.max;
    if worst < stall / 2 {
        format!(
            "no tick during the {} stall was more than {} late: the other worker kept \
             the service going, so lag alone would have missed it",
            human(stall),
            human(worst)
        )
    } else {
        format!(
            "the worst tick during the {} stall was {} late: the service's other tasks \
             were stuck behind the blocked worker too",
            human(stall),
            human(worst)
        )
    }
}

fn print_fixed(run: &FixedRun) {
    println!();
    println!("The fixed version");
    println!("  watchdog reports: {}", run.watchdog_reports);
    println!("  slow polls:       {}", run.slow_polls);
    println!(
        "  nightly-report:   {} polls, longest poll {}, whole report {}",
        run.report_stats.polls,
        human(run.report_stats.max_poll),
        human(run.report_wall)
    );
    println!(
        "  lag:              p50 {}, p99 {}, max {}",
        human(run.lag.p50),
        human(run.lag.p99),
        human(run.lag.max)
    );
}

fn build_runtime() -> std::io::Result<Runtime> {
    let next = AtomicUsize::new(0);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        // Numbered names, so a report says *which* worker is stuck.
        .thread_name_fn(move || format!("service-worker-{}", next.fetch_add(1, Ordering::Relaxed)))
        .enable_all()
        .build()
}

fn main() -> Result<(), Box<dyn Error>> {
    let clock = Clock::start();
    install_slow_poll_hook(clock)?;
    let runtime = build_runtime()?;

    let db = start_database()?;

    println!("== 1. the service with the bug ==");
    let buggy = runtime.block_on(run_buggy(runtime.handle(), clock, db))?;
    print_diagnosis(&buggy);

    println!("== 2. the same service, database call offloaded ==");
    let fixed = runtime.block_on(run_fixed(runtime.handle(), clock, db))?;
    print_fixed(&fixed);
    clock.say("done");
    Ok(())
}
