//! Growth past the core count, for jobs that block.
//!
//! A pool starts threads on demand only up to its *eager* limit: the number
//! of cores, or `max_threads` if that is smaller. More threads than cores
//! cannot run trivial or CPU-bound jobs any faster; they contend for the
//! same cores (a burst of small jobs on 64 threads runs 5× slower than on 2
//! here). They are what jobs that *block* need, though: a thread asleep in
//! a socket read or a lock leaves its core idle while work waits.
//!
//! So past the eager limit a pool grows only when its queue says so. One
//! process-wide thread, `colorseam-monitor`, looks at every pool that has
//! work queued and no idle thread, once per tick (100 µs, backing off to
//! 10 ms while nothing changes). A busy worker still in the job it was
//! running at the previous tick is *blocked* if the OS says it is not
//! running (Linux: its state in `/proc`, so a thread that is merely
//! preempted by a busy machine does not count), or if it has been in that
//! job for 20 ms whatever it does (jobs that wait on each other by spinning
//! must still get threads; without `/proc`, 1 ms). The pool then starts as
//! many threads as are blocked, at least enough to give the cores back
//! their runnable threads, bounded by the work queued and by `max_threads`:
//! a pool of blocking jobs doubles per tick, a pool of CPU-bound jobs stays
//! at the core count. This is Go's `sysmon` hand-off of a processor from a
//! thread stuck in a system call, applied to a pool of plain threads.
//!
//! The monitor only runs while some pool is watched; a pool stops being
//! watched once its queue has been empty for `WATCH_GRACE` (20 ms: a burst
//! of short jobs empties the queue between submits, and re-watching on
//! every refill cost the submitter a global lock and a wake-up each time)
//! or it is at `max_threads` (a shutting down pool is still watched while
//! queued work waits to run). It costs the
//! hot path nothing: workers bump a per-slot counter under the lock they
//! already hold.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::Inner;
use crate::sync::lock_std as lock;

/// The first tick after a pool is watched, and the tick while pools grow.
const MIN_TICK: Duration = Duration::from_micros(100);
/// The slowest tick, reached by doubling while nothing needs a thread.
const MAX_TICK: Duration = Duration::from_millis(10);
/// Ticks with nothing to do before the tick starts doubling.
const QUIET_TICKS_BEFORE_BACKOFF: u32 = 10;
/// How long a watched pool stays watched after the monitor last saw work
/// queued: long enough to span the gaps of a burst of short jobs (whose
/// queue empties between submits), short enough that an idle pool leaves
/// the list within a few ticks of the slowest rate.
pub(crate) const WATCH_GRACE: Duration = Duration::from_millis(20);
/// A job this long in one run counts as blocked whatever the OS says.
pub(crate) const LONG_RUNNING: Duration = Duration::from_millis(20);
/// Where the OS cannot say whether a thread runs: in one job this long.
const BLOCKED_WITHOUT_OS_STATE: Duration = Duration::from_millis(1);

struct Watched {
    pools: Vec<Weak<Inner>>,
    /// A pool was newly watched: tick at once and at the fastest rate.
    fresh: bool,
}

static WATCHED: Mutex<Watched> = Mutex::new(Watched {
    pools: Vec::new(),
    fresh: false,
});
static TICK: Condvar = Condvar::new();
/// Whether the monitor thread started (tried once, when first needed).
static STARTED: OnceLock<bool> = OnceLock::new();

/// Starts watching `pool`, starting the monitor thread if this is the first
/// watch in the process. The caller set the pool's `monitored` flag under
/// the pool lock, so a pool is in the list at most once.
///
/// False if the monitor thread could not start: the caller then grows the
/// pool at once, as if every job blocked.
pub(crate) fn watch(pool: &Arc<Inner>) -> bool {
    let started = *STARTED.get_or_init(|| {
        std::thread::Builder::new()
            .name("colorseam-monitor".to_owned())
            .spawn(run)
            .is_ok()
    });
    if !started {
        return false;
    }
    let mut watched = lock(&WATCHED);
    if !watched
        .pools
        .iter()
        .any(|w| w.as_ptr() == Arc::as_ptr(pool))
    {
        watched.pools.push(Arc::downgrade(pool));
    }
    watched.fresh = true;
    drop(watched);
    TICK.notify_one();
    true
}

/// What a pool wants after a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing waits, or it cannot grow: stop watching (the flag is cleared).
    Done,
    /// Still work waiting; nothing to do this tick.
    Watch,
    /// Started threads this tick.
    Grew,
}

fn run() {
    let mut interval = MIN_TICK;
    let mut quiet = 0;
    let mut watched = lock(&WATCHED);
    loop {
        if watched.pools.is_empty() {
            watched = TICK
                .wait(watched)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            continue;
        }
        if !watched.fresh {
            watched = TICK
                .wait_timeout(watched, interval)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        if watched.fresh {
            watched.fresh = false;
            interval = MIN_TICK;
            quiet = 0;
        }
        let now = Instant::now();
        // Ticked with the list unlocked: a tick may start threads or, if one
        // fails to start, cancel queued jobs (user destructors), and those
        // may submit to a pool that needs watching.
        let pools: Vec<Arc<Inner>> = watched.pools.iter().filter_map(Weak::upgrade).collect();
        drop(watched);
        let mut grew = false;
        let mut done = Vec::new();
        for pool in &pools {
            // A tick runs user code (a stranded caller's waker, an error
            // sink, destructors), contained where it runs; this is the last
            // line, so that nothing kills the thread every pool's growth
            // depends on. A tick that panicked is retried at the next one.
            let verdict =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.monitor_tick(now)));
            match verdict.unwrap_or(Verdict::Watch) {
                Verdict::Grew => grew = true,
                Verdict::Done => done.push(Arc::as_ptr(pool)),
                Verdict::Watch => {}
            }
        }
        watched = lock(&WATCHED);
        // A pool done this tick leaves the list unless it was watched again
        // meanwhile (its flag is set under its lock, so this sees it). The
        // snapshot keeps every pool alive until the list is unlocked, so no
        // pool is dropped (user destructors) under this lock.
        watched.pools.retain(|pool| match pool.upgrade() {
            None => false,
            Some(pool) => !done.contains(&Arc::as_ptr(&pool)) || pool.is_monitored(),
        });
        drop(watched);
        drop(pools);
        watched = lock(&WATCHED);
        if grew {
            interval = MIN_TICK;
            quiet = 0;
        } else {
            quiet += 1;
            if quiet >= QUIET_TICKS_BEFORE_BACKOFF {
                interval = (interval * 2).min(MAX_TICK);
            }
        }
    }
}

/// Which closure a worker is inside, if any: its job count while the
/// user's closure runs, 0 otherwise. Only the closure counts: a worker
/// waiting for the pool lock after its job is not blocked in a job.
#[derive(Debug, Default)]
pub(crate) struct InClosure(AtomicU64);

impl InClosure {
    pub(crate) fn enter(&self, job: u64) {
        self.0.store(job, Ordering::Relaxed);
    }

    pub(crate) fn leave(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// The job count of the closure running now; 0 if none.
    pub(crate) fn current(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The monitor's view of one worker slot.
#[derive(Default)]
pub(crate) struct Sighting {
    /// The closure (`InClosure::current`) the slot was in when last seen.
    closure: u64,
    /// When the monitor first saw the slot in that closure.
    since: Option<Instant>,
}

/// How long a worker has been in the closure it is in now (`job`, 0 for
/// none), as the monitor saw it; `None` if it entered since the last tick
/// (the first sighting is recorded) or is in none.
pub(crate) fn sighted(sighting: &mut Sighting, job: u64, now: Instant) -> Option<Duration> {
    if job == 0 {
        sighting.since = None;
        return None;
    }
    // (Not a let-chain: those need Rust 1.88, and the MSRV is 1.85.)
    if sighting.closure == job {
        if let Some(since) = sighting.since {
            return Some(now.saturating_duration_since(since));
        }
    }
    sighting.closure = job;
    sighting.since = Some(now);
    None
}

/// Whether a worker that has been in one job for `ran` is blocked.
pub(crate) fn is_blocked(stat: Option<&Path>, ran: Duration) -> bool {
    if ran >= LONG_RUNNING {
        return true;
    }
    match stat.and_then(os_says_running) {
        Some(running) => !running,
        None => ran >= BLOCKED_WITHOUT_OS_STATE,
    }
}

/// The calling thread's `/proc` stat file, where the OS has one.
pub(crate) fn own_stat_path() -> Option<PathBuf> {
    // `/proc/thread-self` links to `<pid>/task/<tid>`.
    let task = std::fs::read_link("/proc/thread-self").ok()?;
    Some(PathBuf::from("/proc").join(task).join("stat"))
}

/// Whether `/proc` still has the thread whose stat file is `stat`: its
/// lookup finds it (or fails in a way that cannot say it is missing), or
/// its process's task list still names it.
pub(crate) fn still_listed(stat: &Path) -> bool {
    match std::fs::metadata(stat) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        _ => return true,
    }
    let Some(task) = stat.parent() else {
        return false;
    };
    let (tid, tasks) = (task.file_name(), task.parent());
    tasks.is_some_and(|tasks| {
        std::fs::read_dir(tasks).map_or(true, |mut list| {
            list.any(|t| t.is_ok_and(|t| Some(t.file_name().as_os_str()) == tid))
        })
    })
}

/// Linux: `R` (running or runnable) in the thread's stat line. A thread
/// waiting for a core is runnable: more threads would not help it.
fn os_says_running(stat: &Path) -> Option<bool> {
    let line = std::fs::read(stat).ok()?;
    // "tid (comm) S ...": the name may hold spaces and parentheses.
    let close = line.iter().rposition(|&b| b == b')')?;
    let state = *line.get(close + 2)?;
    Some(state == b'R')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_timed_from_its_first_sighting() {
        let mut s = Sighting::default();
        let t0 = Instant::now();
        assert_eq!(sighted(&mut s, 1, t0), None);
        let later = t0 + Duration::from_millis(3);
        assert_eq!(sighted(&mut s, 1, later), Some(Duration::from_millis(3)));
        // A new job on the same slot starts the clock again.
        assert_eq!(sighted(&mut s, 2, later), None);
    }

    #[test]
    fn a_sleeping_thread_reads_as_blocked_and_a_spinning_one_does_not() {
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spin_stop = stop.clone();
        let sleeper = std::thread::spawn({
            let tx = tx.clone();
            move || {
                tx.send(own_stat_path()).expect("the test waits");
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        let spinner = std::thread::spawn(move || {
            tx.send(own_stat_path()).expect("the test waits");
            while !spin_stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        let a = rx.recv().expect("a path");
        let b = rx.recv().expect("a path");
        if a.is_none() {
            // No /proc here: the time rule alone decides.
            assert!(!is_blocked(None, Duration::from_micros(100)));
            assert!(is_blocked(None, BLOCKED_WITHOUT_OS_STATE));
        } else {
            std::thread::sleep(Duration::from_millis(50));
            let states: Vec<_> = [&a, &b]
                .iter()
                .map(|p| is_blocked(p.as_deref(), Duration::from_micros(100)))
                .collect();
            // One sleeps, one spins (runnable even when it waits for a core).
            assert_eq!(states.iter().filter(|b| **b).count(), 1, "{states:?}");
        }
        assert!(is_blocked(a.as_deref(), LONG_RUNNING));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        sleeper.join().expect("the sleeper ends");
        spinner.join().expect("the spinner ends");
    }
}
