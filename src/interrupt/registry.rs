//! The interrupters a running job registered, and the state machine that
//! decides, for each one, whether it runs.
//!
//! ```text
//!           cancel              runner claims          f returns
//!  ARMED ─────────────▶ PENDING ─────────────▶ RUNNING ──────────▶ DONE
//!    │                     │                      ▲
//!    │ guard dropped       │ guard dropped        │ registered after the
//!    ▼                     ▼                      │ call was cancelled
//!  DISARMED ◀──────────────┘                (runs at once, inline)
//! ```
//!
//! Every transition out of `ARMED` and `PENDING` is a single CAS, so a
//! guard's drop and a cancellation are linearised: either the guard wins
//! (the interrupter is disarmed and dropped unrun) or the cancellation does
//! (and a drop that comes later waits for it to be `DONE`). So an
//! interrupter runs at most once, and never once its guard's drop has
//! returned: a connection given back to its pool after the guard is gone
//! is never interrupted by the call that used it.
//!
//! The job's registry (a mutex held only to flip its stage, list entries and
//! claim them, never while an interrupter runs) orders registrations with the
//! job's own life: *open* while the closure runs, *cancelled* once the call
//! was abandoned (a registration then runs its interrupter at once),
//! *closed* once the closure returned (a registration then drops it unrun,
//! and every entry still armed, of a guard moved out of the job, is
//! disarmed: nothing reaches a call that has returned).

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::sync::{AtomicU8, Condvar, Mutex, Ordering, lock};

const ARMED: u8 = 0;
const PENDING: u8 = 1;
const RUNNING: u8 = 2;
const DONE: u8 = 3;
const DISARMED: u8 = 4;

/// A pool's interrupt counters, shared with the interrupt threads (which
/// count panics) and with the jobs' registries.
pub(crate) struct Stats {
    pub(crate) pool: Arc<str>,
    pub(crate) sent: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) recovered: AtomicU64,
}

impl Stats {
    pub(crate) fn new(pool: Arc<str>) -> Self {
        Stats {
            pool,
            sent: AtomicU64::new(0),
            panicked: AtomicU64::new(0),
            recovered: AtomicU64::new(0),
        }
    }
}

/// One registered interrupter, type-erased.
pub(crate) trait Entry: Send + Sync {
    fn state(&self) -> &AtomicU8;
    /// Takes the interrupter and runs it, catching its panic. Only the
    /// thread that moved the state to `RUNNING` calls this.
    fn run(&self) -> Result<(), Box<dyn Any + Send>>;
    /// Publishes `DONE` and wakes a guard's drop waiting for it.
    fn finish(&self);
    /// Waits until `finish` has been called.
    fn wait_done(&self);
}

/// An interrupter and its state, in one allocation.
struct Registration<F> {
    state: AtomicU8,
    /// The interrupter until it is run or discarded; its mutex is also the
    /// one `done` is waited on, held only for the state's last flip.
    f: Mutex<Option<F>>,
    done: Condvar,
}

impl<F: FnOnce() + Send + 'static> Entry for Registration<F> {
    fn state(&self) -> &AtomicU8 {
        &self.state
    }

    fn run(&self) -> Result<(), Box<dyn Any + Send>> {
        let f = lock(&self.f).take();
        match f {
            Some(f) => catch_unwind(AssertUnwindSafe(f)),
            None => Ok(()),
        }
    }

    fn finish(&self) {
        let _f = lock(&self.f);
        self.state.store(DONE, Ordering::Release);
        self.done.notify_all();
    }

    fn wait_done(&self) {
        let mut f = lock(&self.f);
        while self.state.load(Ordering::Acquire) != DONE {
            f = self
                .done
                .wait(f)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// Where the job's closure is in its life, as its registrations see it.
enum Stage {
    /// Running, not cancelled.
    Open,
    /// Abandoned while running: its interrupters were sent, and later ones
    /// run at once. The flag is set by whoever starts one of them.
    Cancelled(Arc<Stats>, Fired),
    /// The closure returned: nothing may be interrupted any more.
    Closed,
}

/// Set once an interrupter of a cancelled job starts; made only when a job
/// is cancelled, and handed with its interrupters to the interrupt threads.
pub(crate) type Fired = Arc<std::sync::atomic::AtomicBool>;

struct Registry {
    stage: Stage,
    /// The entries, weakly: a guard's drop frees its interrupter without
    /// touching the registry (no lock on the never-cancelled path). Dead
    /// ones are swept when the list grows, and at the close.
    entries: Vec<std::sync::Weak<dyn Entry>>,
    /// Interrupters sent to this job (run, or to be run unless their guard
    /// drops first), for the caller's error.
    sent: usize,
    /// An interrupter was run by the job itself, registered between its
    /// call's abandonment and the abandonment reaching the registry.
    fired_early: bool,
}

/// Entries kept before a registration sweeps the dead ones.
const SWEEP_AT: usize = 8;

/// A job's registry, made on its first registration or its cancellation.
///
/// Most jobs have neither, and every queued job carries this inline, so
/// the untouched and closed states take no allocation and 16 bytes: the
/// registry used to be inline, 72 bytes of every job (`compare`'s heap
/// bytes per queued job went from 234 to 362 with it and the permit
/// loans).
enum Slot {
    /// Open, nothing registered, not cancelled.
    Untouched,
    /// The closure returned before anything was registered or cancelled.
    Closed,
    Used(Box<Registry>),
}

/// A job's interrupters. Costs a job that never registers one a mutex
/// lock when its closure returns.
pub(crate) struct Interrupts {
    slot: Mutex<Slot>,
}

/// What a registration found.
pub(crate) enum Registered {
    /// Armed: it runs if the call is abandoned before its guard drops.
    Armed(Arc<dyn Entry>),
    /// The call was abandoned already: the caller runs it now (claimed as
    /// `RUNNING`, and the job marked fired) with `run_claimed`.
    RunNow(Arc<dyn Entry>, Arc<Stats>),
    /// The closure has returned: the interrupter was dropped unrun.
    Closed,
}

impl Slot {
    /// The registry, made now if the job has none; `None` once closed.
    fn registry(&mut self) -> Option<&mut Registry> {
        if let Slot::Untouched = self {
            *self = Slot::Used(Box::new(Registry {
                stage: Stage::Open,
                entries: Vec::new(),
                sent: 0,
                fired_early: false,
            }));
        }
        match self {
            Slot::Used(registry) => Some(registry),
            Slot::Untouched | Slot::Closed => None,
        }
    }
}

impl Interrupts {
    pub(crate) fn new() -> Self {
        Interrupts {
            slot: Mutex::new(Slot::Untouched),
        }
    }

    pub(crate) fn register<F: FnOnce() + Send + 'static>(&self, f: F) -> Registered {
        let entry: Arc<dyn Entry> = Arc::new(Registration {
            state: AtomicU8::new(ARMED),
            f: Mutex::new(Some(f)),
            done: Condvar::new(),
        });
        let mut slot = lock(&self.slot);
        let Some(registry) = slot.registry() else {
            drop(slot);
            return closed(entry);
        };
        match &registry.stage {
            Stage::Open => {
                registry.list(&entry);
                Registered::Armed(entry)
            }
            Stage::Cancelled(stats, fired) => {
                let stats = stats.clone();
                fired.store(true, std::sync::atomic::Ordering::Release);
                entry.state().store(RUNNING, Ordering::Release);
                // Listed, so that a close from another thread (the job's
                // own, if this context was moved away) waits for it.
                registry.list(&entry);
                registry.sent += 1;
                drop(slot);
                Registered::RunNow(entry, stats)
            }
            Stage::Closed => {
                drop(slot);
                closed(entry)
            }
        }
    }

    /// The call was abandoned: claims every armed interrupter for running
    /// and returns them (the caller hands them to the interrupt threads,
    /// with no lock held). Later registrations run at once. Only the first
    /// call does anything, and nothing once the closure has returned.
    pub(crate) fn cancel(&self, stats: &Arc<Stats>) -> (Vec<Arc<dyn Entry>>, Option<Fired>) {
        let mut slot = lock(&self.slot);
        let Some(registry) = slot.registry() else {
            return (Vec::new(), None);
        };
        if !matches!(registry.stage, Stage::Open) {
            return (Vec::new(), None);
        }
        let fired = Fired::default();
        registry.stage = Stage::Cancelled(stats.clone(), fired.clone());
        // Every entry listed now is this cancellation's to claim; any
        // registered later runs itself. Claimed with the lock released: a
        // handle that fails the claim may be the last one of a guard
        // dropped meanwhile, and dropping it drops the interrupter (user
        // code).
        let listed: Vec<Arc<dyn Entry>> = registry
            .entries
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect();
        drop(slot);
        let (claimed, unclaimed): (Vec<_>, Vec<_>) = listed.into_iter().partition(|entry| {
            entry
                .state()
                .compare_exchange(ARMED, PENDING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        });
        crate::pool::task::drop_quietly(unclaimed);
        if !claimed.is_empty() {
            if let Some(registry) = lock(&self.slot).registry() {
                registry.sent += claimed.len();
            }
        }
        (claimed, Some(fired))
    }

    /// The closure has returned: no interrupter may run from now on. Waits
    /// for one that is running, and disarms (dropping unrun) those whose
    /// guards left the job. True if any interrupter of this job ran.
    pub(crate) fn close(&self) -> bool {
        let (entries, fired) = {
            let mut slot = lock(&self.slot);
            match &mut *slot {
                Slot::Untouched => {
                    *slot = Slot::Closed;
                    return false;
                }
                Slot::Closed => return false,
                Slot::Used(registry) => {
                    let stage = std::mem::replace(&mut registry.stage, Stage::Closed);
                    let fired = match stage {
                        Stage::Cancelled(_, fired) => Some(fired),
                        Stage::Open | Stage::Closed => None,
                    };
                    (std::mem::take(&mut registry.entries), fired)
                }
            }
        };
        // Entries whose guards are still alive (moved out of the job, or
        // being dropped right now): disarmed, or waited for if running.
        for entry in entries.iter().filter_map(std::sync::Weak::upgrade) {
            disarm(&*entry);
            // The guard may have gone meanwhile: this is the last handle.
            crate::pool::task::drop_quietly(entry);
        }
        // Read after the waits above: an interrupter that was running has
        // set its flags by now.
        let early = match &*lock(&self.slot) {
            Slot::Used(registry) => registry.fired_early,
            Slot::Untouched | Slot::Closed => false,
        };
        early || fired.is_some_and(|f| f.load(std::sync::atomic::Ordering::Acquire))
    }

    /// See `JobContext::on_cancel`: an interrupter claimed by the job itself.
    pub(crate) fn fired_early(&self) {
        let mut slot = lock(&self.slot);
        // Called only after `register` returned `Armed`, which leaves the
        // registry made for good.
        debug_assert!(
            matches!(*slot, Slot::Used(_)),
            "fired_early before any registration"
        );
        if let Slot::Used(registry) = &mut *slot {
            registry.sent += 1;
            registry.fired_early = true;
        }
    }

    /// How many interrupters were sent to this job.
    pub(crate) fn sent(&self) -> usize {
        match &*lock(&self.slot) {
            Slot::Used(registry) => registry.sent,
            Slot::Untouched | Slot::Closed => 0,
        }
    }
}

/// A registration made after the closure returned: dropped unrun.
fn closed(entry: Arc<dyn Entry>) -> Registered {
    entry.state().store(DISARMED, Ordering::Release);
    // The interrupter's captures are user code.
    crate::pool::task::drop_quietly(entry);
    Registered::Closed
}

impl Registry {
    /// Lists `entry`, first sweeping out the entries whose guards are gone
    /// once there are [`SWEEP_AT`]: a job that registers in a loop keeps a
    /// short list.
    fn list(&mut self, entry: &Arc<dyn Entry>) {
        if self.entries.len() >= SWEEP_AT {
            self.entries.retain(|e| e.strong_count() > 0);
        }
        self.entries.push(Arc::downgrade(entry));
    }
}

/// Claims a pending interrupter for running: false if its guard was
/// dropped first.
pub(crate) fn claim(entry: &dyn Entry) -> bool {
    entry
        .state()
        .compare_exchange(PENDING, RUNNING, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

/// True once the interrupter has started (it may still be running).
pub(crate) fn has_fired(entry: &dyn Entry) -> bool {
    matches!(entry.state().load(Ordering::Acquire), RUNNING | DONE)
}

/// Makes sure the interrupter will never start, waiting for it if it is
/// running: what a guard's drop (and the closure's return) does. Returns
/// once the interrupter is disarmed or done.
pub(crate) fn disarm(entry: &dyn Entry) {
    loop {
        match entry.state().load(Ordering::Acquire) {
            from @ (ARMED | PENDING) => {
                // The interrupter itself is dropped with its entry's last
                // handle (the guard's, or an interrupt thread's).
                if entry
                    .state()
                    .compare_exchange(from, DISARMED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return;
                }
            }
            RUNNING => {
                // Dropped from inside the interrupter itself (it owns its
                // own guard): waiting would wait for itself.
                if !running_here(entry) {
                    entry.wait_done();
                }
                return;
            }
            _done_or_disarmed => return,
        }
    }
}

/// Claims an armed interrupter for running here, ahead of the abandonment
/// that has not reached the registry yet: false if it claimed it first.
pub(crate) fn claim_armed(entry: &dyn Entry) -> bool {
    entry
        .state()
        .compare_exchange(ARMED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

/// Runs a claimed interrupter here and publishes `DONE`, counting a panic.
/// The caller has marked the job fired.
pub(crate) fn run_claimed(entry: &dyn Entry, stats: &Stats) {
    stats
        .sent
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let previous = set_running_here(entry);
    let outcome = entry.run();
    restore_running_here(previous);
    entry.finish();
    match outcome {
        Ok(()) => {
            #[cfg(feature = "tracing")]
            tracing::debug!(pool = %stats.pool, "colorseam ran an interrupter");
        }
        Err(payload) => {
            stats
                .panicked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            #[cfg(feature = "tracing")]
            tracing::warn!(
                pool = %stats.pool,
                panic = crate::error::panic_message(&*payload).as_deref().unwrap_or("(not a string)"),
                "colorseam interrupter panicked"
            );
            #[cfg(not(feature = "tracing"))]
            let _ = &stats.pool;
            crate::pool::task::drop_quietly(payload);
        }
    }
}

#[cfg(not(colorseam_loom))]
thread_local! {
    /// The entry whose interrupter this thread is running (its address).
    static RUNNING_HERE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn address(entry: &dyn Entry) -> usize {
    std::ptr::from_ref(entry).cast::<()>() as usize
}

#[cfg(not(colorseam_loom))]
fn running_here(entry: &dyn Entry) -> bool {
    RUNNING_HERE
        .try_with(|here| here.get() == address(entry))
        .unwrap_or(false)
}

#[cfg(not(colorseam_loom))]
fn set_running_here(entry: &dyn Entry) -> usize {
    RUNNING_HERE
        .try_with(|here| here.replace(address(entry)))
        .unwrap_or(0)
}

#[cfg(not(colorseam_loom))]
fn restore_running_here(previous: usize) {
    let _ = RUNNING_HERE.try_with(|here| here.set(previous));
}

// loom runs its threads on one OS thread: a thread-local would be shared
// by all of them. The models never drop a guard from inside its own
// interrupter.
#[cfg(colorseam_loom)]
fn running_here(_entry: &dyn Entry) -> bool {
    false
}

#[cfg(colorseam_loom)]
fn set_running_here(entry: &dyn Entry) -> usize {
    address(entry)
}

#[cfg(colorseam_loom)]
fn restore_running_here(_previous: usize) {}

#[cfg(all(test, colorseam_loom))]
mod loom_models {
    //! Run with `RUSTFLAGS="--cfg colorseam_loom" cargo test --release --lib loom`.
    use super::*;
    use loom::sync::atomic::AtomicUsize;

    /// Invariant: an interrupter runs at most once, never after its
    /// guard's drop returned, and is not lost: whatever the interleaving
    /// of the guard's drop (the call returning), the cancellation and the
    /// interrupt thread, it has run exactly when the cancellation claimed
    /// it before the drop, and the drop returns only after it is done.
    #[test]
    fn loom_guard_drop_vs_cancel_vs_runner_runs_at_most_once_and_never_after_the_drop() {
        loom::model(|| {
            let runs = Arc::new(AtomicUsize::new(0));
            let dropped = Arc::new(AtomicUsize::new(0));
            let interrupts = Arc::new(Interrupts::new());
            let stats = Arc::new(Stats::new("loom".into()));
            let entry = {
                let (runs, dropped) = (runs.clone(), dropped.clone());
                match interrupts.register(move || {
                    assert_eq!(dropped.load(Ordering::SeqCst), 0, "ran after the drop");
                    runs.fetch_add(1, Ordering::SeqCst);
                }) {
                    Registered::Armed(entry) => entry,
                    _ => unreachable!("the registry is open"),
                }
            };
            let canceller = {
                let (interrupts, stats) = (interrupts.clone(), stats.clone());
                loom::thread::spawn(move || {
                    // The pool abandons the call and hands the claimed
                    // entries to an interrupt thread.
                    let (claimed, fired) = interrupts.cancel(&stats);
                    loom::thread::spawn(move || {
                        for entry in claimed {
                            if claim(&*entry) {
                                if let Some(fired) = &fired {
                                    fired.store(true, std::sync::atomic::Ordering::Release);
                                }
                                run_claimed(&*entry, &stats);
                            }
                        }
                    })
                })
            };
            // The job's closure drops its guard, then returns.
            disarm(&*entry);
            drop(entry);
            dropped.store(1, Ordering::SeqCst);
            let ran_at_drop = runs.load(Ordering::SeqCst);
            let fired = interrupts.close();
            let runner = canceller.join().unwrap();
            runner.join().unwrap();
            let runs = runs.load(Ordering::SeqCst);
            assert!(runs <= 1);
            assert_eq!(runs, ran_at_drop, "nothing ran after the drop");
            assert_eq!(fired, ran_at_drop == 1, "fired exactly when it ran");
        });
    }

    /// Invariant: a registration racing the cancellation either is claimed
    /// by it or runs at once itself: never lost, never twice.
    #[test]
    fn loom_registration_vs_cancel_runs_exactly_once() {
        loom::model(|| {
            let runs = Arc::new(AtomicUsize::new(0));
            let interrupts = Arc::new(Interrupts::new());
            let stats = Arc::new(Stats::new("loom".into()));
            let canceller = {
                let (interrupts, stats) = (interrupts.clone(), stats.clone());
                loom::thread::spawn(move || {
                    // As the interrupt threads do: the job is marked fired
                    // when one of its interrupters starts.
                    let (claimed, fired) = interrupts.cancel(&stats);
                    for entry in claimed {
                        if claim(&*entry) {
                            if let Some(fired) = &fired {
                                fired.store(true, std::sync::atomic::Ordering::Release);
                            }
                            run_claimed(&*entry, &stats);
                        }
                    }
                })
            };
            let r = runs.clone();
            let entry = match interrupts.register(move || {
                r.fetch_add(1, Ordering::SeqCst);
            }) {
                Registered::Armed(entry) => Some(entry),
                Registered::RunNow(entry, stats) => {
                    run_claimed(&*entry, &stats);
                    Some(entry)
                }
                Registered::Closed => None,
            };
            canceller.join().unwrap();
            assert_eq!(runs.load(Ordering::SeqCst), 1, "cancelled: runs once");
            if let Some(entry) = entry {
                disarm(&*entry);
            }
            assert_eq!(runs.load(Ordering::SeqCst), 1);
            // Whichever made the registry (the registration or the
            // cancellation of an untouched job), it is counted once and
            // the close reports it ran.
            assert_eq!(interrupts.sent(), 1, "sent once");
            assert!(interrupts.close(), "the close reports the run");
        });
    }

    /// Invariant: an interrupter registered while the closure of a job that
    /// never registered one returns (an untouched registry closed without
    /// an allocation) never runs, is dropped exactly once, and a later
    /// cancellation finds nothing to claim.
    #[test]
    fn loom_registration_vs_close_of_an_untouched_job_never_runs_and_drops_once() {
        struct CountDrop(Arc<AtomicUsize>);
        impl Drop for CountDrop {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        loom::model(|| {
            let runs = Arc::new(AtomicUsize::new(0));
            let drops = Arc::new(AtomicUsize::new(0));
            let interrupts = Arc::new(Interrupts::new());
            let closer = {
                let interrupts = interrupts.clone();
                loom::thread::spawn(move || interrupts.close())
            };
            let (token, r) = (CountDrop(drops.clone()), runs.clone());
            let registered = interrupts.register(move || {
                let _token = &token;
                r.fetch_add(1, Ordering::SeqCst);
            });
            assert!(!closer.join().unwrap(), "nothing ran");
            match registered {
                Registered::Armed(entry) => {
                    disarm(&*entry);
                    drop(entry);
                }
                Registered::Closed => {}
                Registered::RunNow(..) => panic!("nothing was cancelled"),
            }
            let stats = Arc::new(Stats::new("loom".into()));
            let (claimed, fired) = interrupts.cancel(&stats);
            assert!(
                claimed.is_empty() && fired.is_none(),
                "closed: nothing to claim"
            );
            assert_eq!(runs.load(Ordering::SeqCst), 0, "never ran");
            assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped once");
        });
    }
}
