//! Deadlines that release a caller on time, not at the next timer tick,
//! and in real time, whatever clock the caller's runtime keeps.
//!
//! A deadline passes when the real clock (`std::time::Instant`) reaches it,
//! never earlier: every poll reads the clock first. The rest is about being
//! woken then, cheaply:
//!
//! - tokio's timer wheel has millisecond ticks and fires a sleep at the first
//!   tick at or after its deadline, so a `tokio::time::timeout` releases its
//!   caller up to a millisecond and a half late (p99 on a quiet 2-core VM).
//!   The sleep is first set [`LEAD`] before the deadline. A call that ends
//!   earlier (almost all of them) costs one tokio sleep and nothing more.
//! - When it fires, the sleep is reset to the deadline itself (a fallback),
//!   and the caller's waker is registered with one process-wide thread,
//!   `colorseam-timer`, which parks until the earliest registered deadline
//!   and wakes the caller then (within the OS's timer slack, ~50 µs on
//!   Linux).
//! - The sleep is made when the deadline is first polled, on the runtime
//!   current then, so a call made outside any runtime and polled inside one
//!   (`block_on(pool.offload_timeout(..))`) has a timer. Polled outside any
//!   tokio runtime (another executor), the sleep is made on colorseam's
//!   bridge runtime.
//! - A sleep that fires before its time in real time ran on a clock that is
//!   not real time: a paused test clock (`start_paused`, `time::pause`),
//!   which tokio advances to the next timer as soon as the runtime is idle,
//!   as it is while a job runs on a pool thread. The rest of the wait then
//!   runs on the bridge runtime, whose clock cannot be paused (only
//!   current-thread runtimes can). So a paused clock never cuts an offload
//!   short; it cannot make one time out early either: its deadline is real.
//!
//! The timer thread starts on the first deadline that gets within [`LEAD`],
//! and holds only calls that are that close to timing out. If it cannot
//! start, deadlines fall back to tokio's sleep alone.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::sync::AtomicWaker;
use crate::sync::lock_std as lock;

/// How long before the deadline the tokio sleep first fires: two of its
/// millisecond ticks, so it fires before the deadline however it rounds.
pub(crate) const LEAD: Duration = Duration::from_millis(2);

/// A deadline for an async caller: poll [`Deadline::poll_passed`].
///
/// `Unpin`, so the futures that hold one (`Offload`, `AdapterCall`) are
/// too, like tokio's `JoinHandle`: `select!` on `&mut call` in a loop
/// compiles. The price is the sleep's box, one allocation made at the
/// first poll of a call that has a deadline (see `benches/offload.rs`).
pub(crate) struct Deadline {
    // Made at the first poll, on the runtime current then.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    at: Instant,
    stage: Stage,
    // The sleep is (to be) made on the bridge runtime: the caller's
    // clock ran ahead of real time, or no runtime was current.
    on_bridge: bool,
    // The runtime the sleep was made on, unless on the bridge: a future
    // polled once on one runtime and then awaited elsewhere (moved to
    // another runtime or executor; its first runtime dropped or no longer
    // driven) must not wait on a timer nobody drives.
    made_on: Option<tokio::runtime::Id>,
    alarm: Option<Arc<Alarm>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The sleep is set `LEAD` early.
    Early,
    /// The sleep is set at the deadline; the alarm is armed at the next poll.
    ArmAlarm,
    /// The sleep is set at the deadline, and the alarm armed if it could be.
    Final,
}

impl Deadline {
    /// A deadline at `at`, made at `now`. Needs no runtime: its timer is
    /// made when it is first polled.
    pub(crate) fn new(at: Instant, now: Instant) -> Self {
        let stage = match at.checked_sub(LEAD) {
            Some(early) if early > now => Stage::Early,
            _ => Stage::ArmAlarm,
        };
        Deadline {
            sleep: None,
            at,
            stage,
            on_bridge: false,
            made_on: None,
            alarm: None,
        }
    }

    /// What the sleep of the current stage is set to.
    fn target(&self) -> Instant {
        match self.stage {
            Stage::Early => self.at.checked_sub(LEAD).unwrap_or(self.at),
            Stage::ArmAlarm | Stage::Final => self.at,
        }
    }

    /// True once the deadline has passed in real time; otherwise registers
    /// `cx`'s waker to be woken when it does.
    pub(crate) fn poll_passed(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let this = self.get_mut();
        loop {
            if Instant::now() >= this.at {
                return true;
            }
            let target = this.target();
            if this.stage == Stage::ArmAlarm {
                this.stage = Stage::Final;
                this.alarm = arm(this.at);
            }
            if let Some(alarm) = this.alarm.as_ref() {
                crate::sync::register(&alarm.waker, cx.waker());
                if alarm.rang.load(Ordering::Acquire) {
                    return true;
                }
            }
            if this.sleep.is_some() && !this.on_bridge {
                let here = tokio::runtime::Handle::try_current()
                    .ok()
                    .map(|handle| handle.id());
                if here != this.made_on {
                    // Polled away from the runtime its sleep is on: make
                    // the sleep again, here or on the bridge.
                    this.sleep = None;
                    this.on_bridge = here.is_none();
                }
            }
            if this.sleep.is_none() {
                match make_sleep(target, this.on_bridge) {
                    Some((sleep, made_on)) => {
                        this.on_bridge = made_on.is_none();
                        this.made_on = made_on;
                        this.sleep = Some(Box::pin(sleep));
                    }
                    // No timer at all (the bridge could not start): the
                    // alarm alone, if the timer thread runs; else give up
                    // waiting rather than never wake.
                    None => {
                        if this.alarm.is_none() {
                            this.alarm = arm(this.at);
                        }
                        match this.alarm.as_ref() {
                            Some(alarm) => {
                                crate::sync::register(&alarm.waker, cx.waker());
                                return alarm.rang.load(Ordering::Acquire);
                            }
                            None => return true,
                        }
                    }
                }
            }
            let sleep = this.sleep.as_mut().expect("the sleep was made above");
            match sleep.as_mut().poll(cx) {
                Poll::Pending => return false,
                Poll::Ready(()) if Instant::now() < target && !this.on_bridge => {
                    // Fired early in real time: this runtime's clock is not
                    // real time (paused and auto-advanced). Wait out the
                    // rest on the bridge, whose clock is.
                    this.on_bridge = true;
                    this.sleep = None;
                }
                Poll::Ready(()) if this.stage == Stage::Early => {
                    sleep
                        .as_mut()
                        .reset(tokio::time::Instant::from_std(this.at));
                    this.stage = Stage::ArmAlarm;
                }
                // At the deadline (checked at the top), or the bridge's own
                // sleep a hair early: the alarm, if armed, wakes us on time.
                Poll::Ready(()) => return this.alarm.is_none() || Instant::now() >= this.at,
            }
        }
    }
}

/// A tokio sleep until `target`: on the current runtime unless `on_bridge`
/// or none is current, else on the bridge runtime. Returns the id of the
/// runtime it is on, `None` for the bridge; `None` in all if there is no
/// runtime to make it on.
fn make_sleep(
    target: Instant,
    on_bridge: bool,
) -> Option<(tokio::time::Sleep, Option<tokio::runtime::Id>)> {
    let target = tokio::time::Instant::from_std(target);
    if !on_bridge {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            return Some((tokio::time::sleep_until(target), Some(handle.id())));
        }
    }
    // The bridge's IO half: colorseam spawns nothing there, so futures
    // blocking the spawn half's workers cannot stall this timer.
    let bridge = crate::bridge::bridge_io_handle().ok()?;
    let _entered = bridge.enter();
    Some((tokio::time::sleep_until(target), None))
}

/// One caller's wake-up at its deadline.
struct Alarm {
    waker: AtomicWaker,
    rang: AtomicBool,
}

/// A registered alarm, ordered by deadline (then by registration).
struct Entry {
    at: Instant,
    seq: u64,
    alarm: Weak<Alarm>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

static ALARMS: Mutex<BinaryHeap<Reverse<Entry>>> = Mutex::new(BinaryHeap::new());
static EARLIER: Condvar = Condvar::new();
static NEXT_SEQ: AtomicU64 = AtomicU64::new(0);
static STARTED: OnceLock<bool> = OnceLock::new();

/// Registers an alarm at `at`; `None` if the timer thread cannot run.
fn arm(at: Instant) -> Option<Arc<Alarm>> {
    let started = *STARTED.get_or_init(|| {
        std::thread::Builder::new()
            .name("colorseam-timer".to_owned())
            .spawn(ring_alarms)
            .is_ok()
    });
    if !started {
        return None;
    }
    let alarm = Arc::new(Alarm {
        waker: AtomicWaker::new(),
        rang: AtomicBool::new(false),
    });
    let entry = Entry {
        at,
        seq: NEXT_SEQ.fetch_add(1, Ordering::Relaxed),
        alarm: Arc::downgrade(&alarm),
    };
    let mut alarms = lock(&ALARMS);
    let earliest = alarms.peek().is_none_or(|Reverse(first)| entry < *first);
    alarms.push(Reverse(entry));
    drop(alarms);
    if earliest {
        EARLIER.notify_one();
    }
    Some(alarm)
}

/// The timer thread: parks until the earliest alarm is due, rings it.
/// Alarms whose caller has gone (resolved or dropped) are skipped.
fn ring_alarms() {
    let mut alarms = lock(&ALARMS);
    let mut due = Vec::new();
    loop {
        let now = Instant::now();
        while alarms.peek().is_some_and(|Reverse(first)| first.at <= now) {
            let Some(Reverse(entry)) = alarms.pop() else {
                break;
            };
            due.extend(entry.alarm.upgrade());
        }
        if !due.is_empty() {
            // Wakers are user code: run with the list unlocked (one could
            // arm another alarm), and a panicking one must not stop the
            // thread that times everyone else's deadline.
            drop(alarms);
            for alarm in due.drain(..) {
                alarm.rang.store(true, Ordering::Release);
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    alarm.waker.wake();
                }));
                crate::pool::task::drop_quietly(alarm);
            }
            alarms = lock(&ALARMS);
            continue;
        }
        alarms = match alarms.peek() {
            None => EARLIER
                .wait(alarms)
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            Some(Reverse(first)) => {
                let wait = first.at.saturating_duration_since(now);
                EARLIER
                    .wait_timeout(alarms, wait)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alarm_rings_at_or_after_its_deadline_and_wakes_its_caller() {
        struct Flag(std::thread::Thread, AtomicBool);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.1.store(true, Ordering::Release);
                self.0.unpark();
            }
        }
        let flag = Arc::new(Flag(std::thread::current(), AtomicBool::new(false)));
        let at = Instant::now() + Duration::from_millis(5);
        let alarm = arm(at).expect("the timer thread starts");
        crate::sync::register(&alarm.waker, &std::task::Waker::from(flag.clone()));
        let give_up = Instant::now() + Duration::from_secs(20);
        while !flag.1.load(Ordering::Acquire) && Instant::now() < give_up {
            std::thread::park_timeout(Duration::from_millis(50));
        }
        assert!(
            flag.1.load(Ordering::Acquire),
            "the alarm never woke its caller"
        );
        assert!(alarm.rang.load(Ordering::Acquire));
        assert!(Instant::now() >= at, "rang before its deadline");
    }

    #[tokio::test]
    async fn a_deadline_is_never_passed_early_whichever_timer_fires_first() {
        // 1 ms (alarm armed at once) and 7 ms (tokio sleep first, then both).
        for millis in [1, 7, 1, 7, 1, 7] {
            let at = Instant::now() + Duration::from_millis(millis);
            passed(at).await;
            assert!(Instant::now() >= at, "released before the deadline");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_never_makes_a_deadline_pass_early_in_real_time() {
        // 40 ms (tokio sleep first, auto-advanced at once) and 1 ms (alarm
        // and sleep at the deadline from the start).
        for millis in [40, 1] {
            let at = Instant::now() + Duration::from_millis(millis);
            passed(at).await;
            assert!(Instant::now() >= at, "released before the real deadline");
        }
    }

    #[test]
    fn a_deadline_needs_no_runtime_to_be_polled() {
        let at = Instant::now() + Duration::from_millis(30);
        futures::executor::block_on(passed(at));
        assert!(Instant::now() >= at);
    }

    /// Resolves once a `Deadline` at `at` says it has passed.
    async fn passed(at: Instant) {
        let mut deadline = std::pin::pin!(Deadline::new(at, Instant::now()));
        std::future::poll_fn(|cx| {
            if deadline.as_mut().poll_passed(cx) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}
