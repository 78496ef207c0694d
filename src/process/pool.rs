//! The pool's inside: the queue, the worker slots and their supervisor
//! threads, the counters and shutdown.

use std::collections::VecDeque;
use std::io::{self, BufRead, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::address::{Endpoint, random_u64};
use super::frame;
use super::functions::{self, Limits};
use super::job::{self, Job, State};
use crate::error::{Error, ErrorKind, Phase, ProcessInfo};
use crate::metrics::{Histogram, OutcomeCounters, PoolMetrics, ThreadMetrics};
use crate::pool::{QueuedWork, ShutdownOptions, ShutdownReport};
use crate::sync::lock_std as lock;

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) name: Arc<str>,
    pub(crate) max_workers: usize,
    pub(crate) queue_capacity: usize,
    pub(crate) reject_when_full: bool,
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) limits: Limits,
    pub(crate) recycle_after: Option<u64>,
    pub(crate) start_timeout: Duration,
    pub(crate) program: PathBuf,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) completed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) crashed: AtomicU64,
    pub(crate) killed: AtomicU64,
    pub(crate) timed_out_waiting_for_room: AtomicU64,
    pub(crate) timed_out_queued: AtomicU64,
    pub(crate) timed_out_running: AtomicU64,
    pub(crate) cancelled_queued: AtomicU64,
    pub(crate) cancelled_running: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) shut_down: AtomicU64,
    pub(crate) started: AtomicU64,
    pub(crate) start_failures: AtomicU64,
    pub(crate) recycled: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

struct Shared {
    queue: VecDeque<Arc<Job>>,
    /// Supervisor threads alive (each owns at most one worker process).
    supervisors: usize,
    /// Supervisors waiting for a job, not yet claimed by a wake-up.
    idle: usize,
    /// Wake-ups sent to idle supervisors and not yet received.
    pending_wakeups: usize,
    /// Jobs on a worker now.
    running: Vec<Arc<Job>>,
    /// Worker processes started and not yet reaped, with their pids.
    workers: Vec<u32>,
    peak_workers: usize,
    /// No new work: supervisors finish the queue, then stop their workers.
    closing: bool,
    next_slot: usize,
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) admission: Arc<Semaphore>,
    shared: Mutex<Shared>,
    /// Idle supervisors wait here for work.
    work: Condvar,
    /// Shutdown waits here for the queue, running jobs and workers to end.
    settled: Condvar,
    pub(crate) counters: Counters,
    queue_wait: Histogram,
    run_time: Histogram,
    start_time: Histogram,
}

impl Inner {
    pub(crate) fn new(config: Config) -> Arc<Inner> {
        let permits = config.max_workers + config.queue_capacity;
        Arc::new(Inner {
            admission: Arc::new(Semaphore::new(permits)),
            shared: Mutex::new(Shared {
                queue: VecDeque::new(),
                supervisors: 0,
                idle: 0,
                pending_wakeups: 0,
                running: Vec::new(),
                workers: Vec::new(),
                peak_workers: 0,
                closing: false,
                next_slot: 0,
            }),
            work: Condvar::new(),
            settled: Condvar::new(),
            counters: Counters::default(),
            queue_wait: Histogram::new(),
            run_time: Histogram::new(),
            start_time: Histogram::new(),
            config,
        })
    }

    /// Queues an admitted job, waking or starting a supervisor for it.
    /// `Err(job)` if the pool is closing.
    pub(crate) fn submit(self: &Arc<Self>, job: Arc<Job>) -> Result<(), Arc<Job>> {
        let start_slot = {
            let mut shared = lock(&self.shared);
            if shared.closing {
                return Err(job);
            }
            shared.queue.push_back(job);
            if shared.idle > 0 {
                shared.idle -= 1;
                shared.pending_wakeups += 1;
                self.work.notify_one();
                None
            } else if shared.supervisors < self.config.max_workers {
                shared.supervisors += 1;
                shared.next_slot += 1;
                Some(shared.next_slot)
            } else {
                None
            }
        };
        if let Some(slot) = start_slot {
            self.start_supervisor(slot);
        }
        Ok(())
    }

    fn start_supervisor(self: &Arc<Self>, slot: usize) {
        let inner = self.clone();
        let started = std::thread::Builder::new()
            .name(format!("{}-sup-{slot}", self.config.name))
            .spawn(move || supervise(&inner, slot));
        if let Err(e) = started {
            // No thread, no worker: if no other supervisor is left to take
            // the queue, fail what is queued rather than strand it.
            let stranded = {
                let mut shared = lock(&self.shared);
                shared.supervisors -= 1;
                if shared.supervisors == 0 {
                    shared.queue.drain(..).collect()
                } else {
                    Vec::new()
                }
            };
            for job in stranded {
                let error = job
                    .error(ErrorKind::SpawnFailed, None)
                    .with_phase(Phase::Queued)
                    .with_source(Box::new(io::Error::new(e.kind(), e.to_string())));
                if job.finish(Err(error), false, &[]) {
                    job.release_permit();
                }
            }
            self.settled.notify_all();
        }
    }

    /// Takes a queued job out of the queue (a caller that gave up on it).
    pub(crate) fn unqueue(&self, job: &Arc<Job>) {
        let mut shared = lock(&self.shared);
        if let Some(at) = shared.queue.iter().position(|j| Arc::ptr_eq(j, job)) {
            shared.queue.remove(at);
        }
        drop(shared);
        self.settled.notify_all();
    }

    /// The next job for a supervisor, waiting while there is none; `None`
    /// once the pool is closing and the queue is empty.
    fn next_job(&self) -> Option<Arc<Job>> {
        let mut shared = lock(&self.shared);
        loop {
            if let Some(job) = shared.queue.pop_front() {
                return Some(job);
            }
            if shared.closing {
                return None;
            }
            shared.idle += 1;
            shared = self
                .work
                .wait(shared)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Every waiting supervisor is counted once, in `idle` or (once
            // a submission claimed it) in `pending_wakeups`; whichever
            // woke, the sum goes down by one.
            if shared.pending_wakeups > 0 {
                shared.pending_wakeups -= 1;
            } else {
                shared.idle -= 1;
            }
        }
    }

    fn is_closing(&self) -> bool {
        lock(&self.shared).closing
    }

    /// Stops taking work: supervisors finish the queue (or it was drained
    /// by the caller) and then stop their workers. Returns the jobs drained
    /// when `queued` is `Cancel`.
    fn close(&self, cancel_queued: bool) -> Vec<Arc<Job>> {
        let drained = {
            let mut shared = lock(&self.shared);
            shared.closing = true;
            if cancel_queued {
                shared.queue.drain(..).collect()
            } else {
                Vec::new()
            }
        };
        self.work.notify_all();
        drained
    }

    /// The last handle is gone: finish the queue, then stop the workers.
    pub(crate) fn close_when_idle(&self) {
        let _none = self.close(false);
    }

    pub(crate) fn shutdown_blocking(&self, options: ShutdownOptions) -> ShutdownReport {
        let at = Instant::now();
        let deadline = at.checked_add(options.timeout);
        let completed_before = self.completed_total();
        let drained = self.close(options.queued == QueuedWork::Cancel);
        // After the lock, as everywhere: closing wakes every waiter for room.
        self.admission.close();
        let mut cancelled = 0u64;
        for job in drained {
            cancelled += u64::from(self.end_queued_by_shutdown(&job));
        }
        let mut shared = lock(&self.shared);
        let mut killed = 0u64;
        loop {
            let settled = shared.queue.is_empty() && shared.running.is_empty();
            if settled && shared.supervisors == 0 && shared.workers.is_empty() {
                break;
            }
            let left = deadline.and_then(|d| d.checked_duration_since(Instant::now()));
            match left {
                Some(left) if !left.is_zero() => {
                    shared = self
                        .settled
                        .wait_timeout(shared, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
                None if deadline.is_none() => {
                    shared = self
                        .settled
                        .wait(shared)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                _ => {
                    // The deadline: cancel what is still queued, kill what
                    // still runs, then wait (briefly) for the reaping.
                    let queued: Vec<_> = shared.queue.drain(..).collect();
                    let running = shared.running.clone();
                    drop(shared);
                    for job in queued {
                        cancelled += u64::from(self.end_queued_by_shutdown(&job));
                    }
                    for job in running {
                        killed += u64::from(self.kill_by_shutdown(&job));
                    }
                    self.wait_for_workers_gone(Duration::from_secs(5));
                    shared = lock(&self.shared);
                    break;
                }
            }
        }
        drop(shared);
        ShutdownReport {
            completed: self.completed_total().saturating_sub(completed_before),
            cancelled,
            abandoned: killed,
            elapsed: at.elapsed(),
        }
    }

    fn wait_for_workers_gone(&self, limit: Duration) {
        let until = Instant::now() + limit;
        let mut shared = lock(&self.shared);
        while shared.supervisors > 0 || !shared.workers.is_empty() {
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                return;
            };
            shared = self
                .settled
                .wait_timeout(shared, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    fn end_queued_by_shutdown(&self, job: &Arc<Job>) -> bool {
        let error = job
            .error(ErrorKind::ShutDown, None)
            .with_phase(Phase::Queued);
        let ended = job.finish(Err(error), true, &[&self.counters.shut_down]);
        if ended {
            job.release_permit();
        }
        ended
    }

    fn kill_by_shutdown(&self, job: &Arc<Job>) -> bool {
        let running = {
            let state = lock(&job.state);
            match &*state {
                State::Running { child, pid } => Some((child.clone(), *pid)),
                _ => None,
            }
        };
        let Some((child, pid)) = running else {
            return false;
        };
        let error = job
            .error_with(
                ErrorKind::ShutDown,
                ProcessInfo {
                    pid: Some(pid),
                    killed: true,
                    ..ProcessInfo::default()
                },
            )
            .with_phase(Phase::Running);
        let counted = [&self.counters.shut_down, &self.counters.killed];
        if job.finish(Err(error), false, &counted) {
            job::kill(&child);
            true
        } else {
            false
        }
    }

    pub(crate) fn completed_total(&self) -> u64 {
        read(&self.counters.completed)
            + read(&self.counters.failed)
            + read(&self.counters.panicked)
            + read(&self.counters.crashed)
    }

    pub(crate) fn snapshot(&self) -> (PoolMetrics, super::ProcessMetrics) {
        let (depth, busy, idle, workers, peak, pids) = {
            let shared = lock(&self.shared);
            let depth = shared.queue.len();
            let busy = shared.running.len();
            let workers = shared.workers.len();
            (
                depth,
                busy,
                workers.saturating_sub(busy),
                workers,
                shared.peak_workers,
                shared.workers.clone(),
            )
        };
        let c = &self.counters;
        let pool = PoolMetrics {
            name: self.config.name.to_string(),
            threads: ThreadMetrics {
                total: workers,
                idle,
                busy,
                abandoned: 0,
                peak,
            },
            queue_depth: depth,
            outcomes: OutcomeCounters {
                completed: read(&c.completed) + read(&c.failed),
                panicked: read(&c.panicked),
                timed_out_waiting_for_room: read(&c.timed_out_waiting_for_room),
                timed_out_queued: read(&c.timed_out_queued),
                timed_out_running: read(&c.timed_out_running),
                cancelled_queued: read(&c.cancelled_queued),
                cancelled_running: read(&c.cancelled_running),
                rejected: read(&c.rejected),
                shut_down: read(&c.shut_down),
                detached_failures: 0,
            },
            queue_wait: self.queue_wait.snapshot(),
            run_time: self.run_time.snapshot(),
            // A worker process is killed, never left stuck.
            stuck_calls: Vec::new(),
            // Killing the worker is the interrupt: no interrupters here.
            interrupts: Default::default(),
        };
        let process = super::ProcessMetrics {
            pool: pool.clone(),
            workers,
            worker_pids: pids,
            started: read(&c.started),
            start_failures: read(&c.start_failures),
            crashed: read(&c.crashed),
            killed: read(&c.killed),
            recycled: read(&c.recycled),
            failed: read(&c.failed),
            start_time: self.start_time.snapshot(),
        };
        (pool, process)
    }
}

impl crate::metrics::Source for Inner {
    fn snapshot(&self) -> PoolMetrics {
        Inner::snapshot(self).0
    }
}

/// A live worker process, from its supervisor's side.
struct Worker {
    child: Arc<Mutex<Child>>,
    pid: u32,
    stream: UnixStream,
    stderr: Arc<LastWords>,
    jobs: u64,
}

/// The tail of a worker's stderr, which is forwarded line by line to the
/// application's stderr.
#[derive(Default)]
struct LastWords {
    line: Mutex<Option<String>>,
    ended: Mutex<bool>,
    ended_cv: Condvar,
}

impl LastWords {
    /// The last line, once the worker's stderr has closed (waiting up to
    /// `limit` for it: a grandchild may hold it open).
    fn take(&self, limit: Duration) -> Option<String> {
        let until = Instant::now() + limit;
        let mut ended = lock(&self.ended);
        while !*ended {
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                break;
            };
            ended = self
                .ended_cv
                .wait_timeout(ended, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        drop(ended);
        lock(&self.line).take()
    }
}

fn forward_stderr(pipe: std::process::ChildStderr, words: &LastWords) {
    let mut reader = io::BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let _stderr_gone = io::stderr().write_all(&line);
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end();
                if !text.is_empty() && !is_std_trailer(text) {
                    let mut short: String = text.chars().take(300).collect();
                    if short.len() < text.len() {
                        short.push('…');
                    }
                    *lock(&words.line) = Some(short);
                }
            }
        }
    }
    *lock(&words.ended) = true;
    words.ended_cv.notify_all();
}

/// What std prints after a panic or an allocation failure, which is not
/// what the worker said: the hint (`note: run with RUST_BACKTRACE=1 ...`),
/// and with `RUST_BACKTRACE` set, the backtrace (`stack backtrace:`, then
/// indented frames and `at` lines) or the note that it was skipped (after
/// an allocation failure, printing one could allocate). So a worker's last
/// words are its last line that starts in the first column and is none of
/// these, whatever `RUST_BACKTRACE` says.
fn is_std_trailer(line: &str) -> bool {
    line.starts_with("note: ")
        || line.starts_with("stack backtrace:")
        || line.starts_with("skipping backtrace printing")
        || line.starts_with(char::is_whitespace)
}

/// How a job ended on its worker, and whether the worker lives on.
enum Ran {
    Reply(Result<Vec<u8>, Error>),
    /// The worker died or was killed; the exit status tells which.
    Died {
        deadline_passed: bool,
    },
}

/// One worker slot: starts a worker process, feeds it jobs one at a time,
/// reaps and replaces it when it dies, is killed or is recycled.
fn supervise(inner: &Arc<Inner>, slot: usize) {
    let endpoint = Endpoint::bind();
    let mut worker: Option<Worker> = None;
    let mut last_start_error: Option<String> = None;
    loop {
        // A replacement is started as soon as the last worker is gone,
        // before the next job needs it (unless the pool is closing).
        if worker.is_none() && last_start_error.is_none() && !inner.is_closing() {
            match &endpoint {
                Ok(endpoint) => match start_worker(inner, endpoint, slot) {
                    Ok(w) => worker = Some(w),
                    Err(e) => last_start_error = Some(e),
                },
                Err(e) => last_start_error = Some(format!("could not bind its socket: {e}")),
            }
        }
        let Some(job) = inner.next_job() else {
            break;
        };
        if worker.is_none() && !matches!(*lock(&job.state), State::Queued) {
            continue;
        }
        if worker.is_none() {
            // A start failed earlier, or the pool closed meanwhile: try
            // (again) for this job, and fail it if the OS says no.
            let started = match &endpoint {
                Ok(endpoint) => start_worker(inner, endpoint, slot),
                Err(e) => Err(format!("could not bind its socket: {e}")),
            };
            match started {
                Ok(w) => {
                    worker = Some(w);
                    last_start_error = None;
                }
                Err(e) => {
                    let error = job
                        .error(ErrorKind::SpawnFailed, None)
                        .with_phase(Phase::Queued)
                        .with_source(e.into());
                    if job.finish(Err(error), false, &[]) {
                        job.release_permit();
                    }
                    last_start_error = None;
                    // Do not spin on a start that keeps failing.
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let w = worker.as_mut().expect("a worker was started above");
        if !start_job(inner, &job, w) {
            continue;
        }
        let started = Instant::now();
        if let Some(queued_at) = *lock(&job.started_at) {
            inner
                .queue_wait
                .record(queued_at.saturating_duration_since(job.called_at));
        }
        let ran = run_job(&job, w);
        inner.run_time.record(started.elapsed());
        let dead = match ran {
            Ran::Reply(outcome) => {
                w.jobs += 1;
                let counter = match &outcome {
                    Ok(_) => &inner.counters.completed,
                    Err(e) if e.is_panic() => &inner.counters.panicked,
                    Err(_) => &inner.counters.failed,
                };
                leave_running(inner, &job);
                job.finish(outcome, false, &[counter]);
                None
            }
            Ran::Died { deadline_passed } => Some(deadline_passed),
        };
        let recycle = dead.is_none() && inner.config.recycle_after.is_some_and(|n| w.jobs >= n);
        if let Some(deadline_passed) = dead {
            let w = worker.take().expect("the worker just ran the job");
            if deadline_passed {
                job::kill(&w.child);
            }
            let (status, last_words) = reap(inner, w);
            leave_running(inner, &job);
            settle_dead(inner, &job, status, last_words, deadline_passed);
        } else if recycle {
            let w = worker.take().expect("the worker just ran the job");
            stop_worker(inner, w);
            bump(&inner.counters.recycled);
            #[cfg(feature = "tracing")]
            tracing::debug!(pool = %inner.config.name, "process worker recycled");
        }
        job_done(inner, &job);
    }
    if let Some(w) = worker.take() {
        stop_worker(inner, w);
    }
    {
        let mut shared = lock(&inner.shared);
        shared.supervisors -= 1;
    }
    inner.settled.notify_all();
}

/// Marks `job` running on `w`; false if its caller gave up meanwhile.
fn start_job(inner: &Inner, job: &Arc<Job>, w: &Worker) -> bool {
    {
        let mut state = lock(&job.state);
        if !matches!(*state, State::Queued) {
            return false;
        }
        *state = State::Running {
            child: w.child.clone(),
            pid: w.pid,
        };
    }
    *lock(&job.started_at) = Some(Instant::now());
    lock(&inner.shared).running.push(job.clone());
    true
}

/// Out of the running list (so `busy` no longer counts it), before its
/// caller is told: a caller that saw its result never sees it busy.
fn leave_running(inner: &Inner, job: &Arc<Job>) {
    let mut shared = lock(&inner.shared);
    if let Some(at) = shared.running.iter().position(|j| Arc::ptr_eq(j, job)) {
        shared.running.swap_remove(at);
    }
}

/// The job is over for its supervisor: its permit back, after the worker
/// that ran it was reaped (if it died), so admission never counts a dead
/// worker's room as free too early.
fn job_done(inner: &Inner, job: &Arc<Job>) {
    leave_running(inner, job);
    inner.settled.notify_all();
    job.release_permit();
}

fn run_job(job: &Job, w: &mut Worker) -> Ran {
    let input = lock(&job.input).take().unwrap_or_default();
    let name = &*job.function;
    let len = u16::try_from(name.len())
        .expect("names are checked to be at most 1,024 bytes")
        .to_le_bytes();
    if input.len() + name.len() + 2 >= frame::MAX_FRAME {
        return Ran::Reply(Err(job
            .error(ErrorKind::Job, Some(w.pid))
            .with_phase(Phase::Running)
            .with_source(
                format!(
                    "the input of {} bytes is over the 1 GiB frame limit",
                    input.len()
                )
                .into(),
            )));
    }
    let mut out = &w.stream;
    if frame::write_frame(
        &mut out,
        frame::CALL,
        &frame::call_parts(name, &len, &input),
    )
    .is_err()
    {
        return Ran::Died {
            deadline_passed: false,
        };
    }
    drop(input);
    let timeout = match job.deadline {
        None => None,
        Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Some(left),
            _ => {
                return Ran::Died {
                    deadline_passed: true,
                };
            }
        },
    };
    if w.stream.set_read_timeout(timeout).is_err() {
        return Ran::Died {
            deadline_passed: false,
        };
    }
    let mut input = &w.stream;
    match frame::read_frame(&mut input) {
        Ok(Some((tag, body))) => Ran::Reply(match tag {
            frame::OK => Ok(body),
            frame::FAILED => Err(job
                .error(ErrorKind::Job, Some(w.pid))
                .with_phase(Phase::Running)
                .with_source(String::from_utf8_lossy(&body).into_owned().into())),
            frame::PANICKED => {
                let message = String::from_utf8_lossy(&body).into_owned();
                Err(job
                    .error(ErrorKind::Panicked, Some(w.pid))
                    .with_phase(Phase::Running)
                    .with_panic_message((!message.is_empty()).then_some(message)))
            }
            frame::UNKNOWN => Err(job
                .error(ErrorKind::NotRegistered, Some(w.pid))
                .with_source("the worker process has no function of that name".into())),
            _ => {
                return Ran::Died {
                    deadline_passed: false,
                };
            }
        }),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ran::Died {
                deadline_passed: true,
            }
        }
        Ok(None) | Err(_) => Ran::Died {
            deadline_passed: false,
        },
    }
}

/// The error for a job whose worker died: killed at its deadline, or a
/// crash (unless the caller or shutdown ended it first and made its own).
fn settle_dead(
    inner: &Inner,
    job: &Job,
    status: Option<ExitStatus>,
    last_words: Option<String>,
    deadline_passed: bool,
) {
    let info = ProcessInfo {
        pid: None,
        exit_code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        killed: deadline_passed,
        last_words: if deadline_passed { None } else { last_words },
        ..ProcessInfo::default()
    };
    let pid = match &*lock(&job.state) {
        State::Running { pid, .. } => Some(*pid),
        _ => None,
    };
    let info = ProcessInfo { pid, ..info };
    let error = if deadline_passed {
        job.error_with(ErrorKind::Timeout, info)
            .with_phase(Phase::Running)
    } else {
        job.error_with(ErrorKind::Crashed, info)
            .with_phase(Phase::Running)
    };
    let c = &inner.counters;
    let counted: &[&AtomicU64] = if deadline_passed {
        &[&c.timed_out_running, &c.killed]
    } else {
        &[&c.crashed]
    };
    if job.finish(Err(error), false, counted) {
        #[cfg(feature = "tracing")]
        tracing::warn!(
            pool = %inner.config.name,
            function = %job.function,
            killed = deadline_passed,
            "process worker died while running a call"
        );
    }
}

fn start_worker(inner: &Inner, endpoint: &Endpoint, slot: usize) -> Result<Worker, String> {
    let began = Instant::now();
    let token = random_u64();
    let mut command = Command::new(&inner.config.program);
    command
        .env(
            functions::WORKER_ENV,
            functions::worker_spec(&endpoint.address, token),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    match inner.config.limits.encode() {
        Some(limits) => command.env(functions::LIMITS_ENV, limits),
        None => command.env_remove(functions::LIMITS_ENV),
    };
    let mut child = command.spawn().map_err(|e| {
        bump(&inner.counters.start_failures);
        format!("could not start {}: {e}", inner.config.program.display())
    })?;
    let pid = child.id();
    {
        let mut shared = lock(&inner.shared);
        shared.workers.push(pid);
        shared.peak_workers = shared.peak_workers.max(shared.workers.len());
    }
    let stderr = Arc::new(LastWords::default());
    if let Some(pipe) = child.stderr.take() {
        let words = stderr.clone();
        let forwarding = std::thread::Builder::new()
            .name(format!("{}-err-{slot}", inner.config.name))
            .spawn(move || forward_stderr(pipe, &words));
        if forwarding.is_err() {
            // Without the thread the pipe is closed and the worker's
            // stderr writes fail, which is better than blocking it.
            *lock(&stderr.ended) = true;
        }
    } else {
        *lock(&stderr.ended) = true;
    }
    let child = Arc::new(Mutex::new(child));
    let failed = |why: String| -> Result<Worker, String> {
        bump(&inner.counters.start_failures);
        job::kill(&child);
        let _ = reap_parts(inner, &child, pid, &stderr);
        Err(why)
    };
    let until = began + inner.config.start_timeout;
    let mut pause = Duration::from_micros(20);
    loop {
        match endpoint.listener.accept() {
            Ok((stream, _)) => match hello(&stream, token, pid, until) {
                Ok(()) => {
                    bump(&inner.counters.started);
                    inner.start_time.record(began.elapsed());
                    #[cfg(feature = "tracing")]
                    tracing::debug!(pool = %inner.config.name, pid, "process worker started");
                    return Ok(Worker {
                        child,
                        pid,
                        stream,
                        stderr,
                        jobs: 0,
                    });
                }
                // Someone else dialled, or said the wrong thing: not ours.
                Err(_) => continue,
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return failed(format!("could not accept its worker: {e}")),
        }
        let exited = lock(&child).try_wait().ok().flatten();
        if let Some(status) = exited {
            let why = format!(
                "the worker process (pid {pid}) exited {} before it reached the pool; does `main` \
                 call colorseam::process::Functions::init() first?",
                describe_status(status)
            );
            return failed(why);
        }
        if Instant::now() >= until {
            let why = format!(
                "the worker process (pid {pid}) did not reach the pool within {:?}; does `main` \
                 call colorseam::process::Functions::init() first?",
                inner.config.start_timeout
            );
            return failed(why);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(2));
    }
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("with code {code}"),
        (None, Some(signal)) => format!("on signal {signal}"),
        _ => "somehow".to_owned(),
    }
}

/// Reads the worker's hello: its token and its pid must be ours.
fn hello(stream: &UnixStream, token: u64, pid: u32, until: Instant) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    let left = until
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_millis(1));
    stream.set_read_timeout(Some(left))?;
    let mut input = stream;
    match frame::read_frame(&mut input)? {
        Some((frame::HELLO, body)) if body.len() == 12 => {
            let (said_token, said_pid) = body.split_at(8);
            let said_token = u64::from_le_bytes(said_token.try_into().expect("8 bytes"));
            let said_pid = u32::from_le_bytes(said_pid.try_into().expect("4 bytes"));
            if said_token == token && said_pid == pid {
                Ok(())
            } else {
                Err(io::ErrorKind::PermissionDenied.into())
            }
        }
        _ => Err(io::ErrorKind::InvalidData.into()),
    }
}

/// Waits for a dead (or dying) worker and removes it from the count.
/// Polls, since std has no timed wait: a worker whose socket closed exits
/// within microseconds; one still running after a grace period is killed.
fn reap(inner: &Inner, w: Worker) -> (Option<ExitStatus>, Option<String>) {
    drop(w.stream);
    reap_parts(inner, &w.child, w.pid, &w.stderr)
}

fn reap_parts(
    inner: &Inner,
    child: &Mutex<Child>,
    pid: u32,
    stderr: &LastWords,
) -> (Option<ExitStatus>, Option<String>) {
    let grace = Instant::now() + Duration::from_millis(500);
    let mut pause = Duration::from_micros(10);
    let status = loop {
        let polled = lock(child).try_wait();
        match polled {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < grace => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(5));
            }
            Ok(None) => {
                let mut child = lock(child);
                let _already_gone = child.kill();
                break child.wait().ok();
            }
            Err(_) => break None,
        }
    };
    let last_words = stderr.take(Duration::from_millis(100));
    {
        let mut shared = lock(&inner.shared);
        if let Some(at) = shared.workers.iter().position(|&p| p == pid) {
            shared.workers.swap_remove(at);
        }
    }
    inner.settled.notify_all();
    (status, last_words)
}

/// Ends a healthy worker: closing its socket makes it exit.
fn stop_worker(inner: &Inner, w: Worker) {
    let _ = reap(inner, w);
}

#[cfg(test)]
mod tests {
    use super::is_std_trailer;

    #[test]
    fn std_trailers_are_not_last_words_whatever_rust_backtrace_says() {
        for trailer in [
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
            "stack backtrace:",
            "   0: __rustc::rust_begin_unwind",
            "             at /rustc/abc/library/std/src/panicking.rs:689:5",
            "skipping backtrace printing to avoid potential recursion",
        ] {
            assert!(is_std_trailer(trailer), "{trailer}");
        }
        for words in [
            "memory allocation of 16777216 bytes failed",
            "thread 'main' panicked at src/parser.rs:10:5:",
            "bad input on line 3",
        ] {
            assert!(!is_std_trailer(words), "{words}");
        }
    }
}
