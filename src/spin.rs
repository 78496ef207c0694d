//! Spinning before parking, for as long as recent waits say it pays.
//!
//! A thread that parks pays a futex wake-up (and the scheduler's latency,
//! tens of microseconds on a virtual machine) when it is woken. If the wake
//! comes within microseconds, as it does for a `block_on` whose future is
//! finished by another thread at once, spinning for that long is cheaper.
//! If it does not, spinning burns CPU for nothing. So each waiter keeps a
//! budget: after a wait that spinning would have covered the budget is full
//! again; after a longer one it halves, down to zero. A waiter woken every
//! millisecond stops spinning after a few waits; one woken every few
//! microseconds always spins.

use std::time::{Duration, Instant};

/// Looks at the condition between yields while spinning.
const SPINS_PER_YIELD: u32 = 32;
/// Below this a spin is not worth its clock reads.
const LEAST: Duration = Duration::from_micros(1);

/// How long a waiter spins before it parks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpinBudget {
    now: Duration,
    full: Duration,
}

impl SpinBudget {
    /// A budget that starts full at `full`.
    pub(crate) const fn new(full: Duration) -> Self {
        SpinBudget { now: full, full }
    }

    /// How long to spin on the next wait.
    pub(crate) fn get(self) -> Duration {
        self.now
    }

    /// Learns from a wait that lasted `waited`, from running out of work
    /// (or being pending) to having work again.
    pub(crate) fn after_wait(&mut self, waited: Duration) {
        self.now = if waited <= self.full {
            self.full
        } else if self.now / 2 < LEAST {
            Duration::ZERO
        } else {
            self.now / 2
        };
    }
}

/// Spins until `ready()` or until `budget` has passed since `started`,
/// yielding the core between looks so the threads that would make it ready
/// can run on a busy machine. True if it became ready.
pub(crate) fn spin_until(started: Instant, budget: Duration, ready: impl Fn() -> bool) -> bool {
    if budget.is_zero() {
        return ready();
    }
    loop {
        for _ in 0..SPINS_PER_YIELD {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        if started.elapsed() >= budget {
            return false;
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_waits_halve_the_budget_to_zero_and_one_short_wait_restores_it() {
        let full = Duration::from_micros(32);
        let mut budget = SpinBudget::new(full);
        let mut seen = vec![budget.get()];
        for _ in 0..7 {
            budget.after_wait(Duration::from_millis(1));
            seen.push(budget.get());
        }
        assert_eq!(
            seen.iter().map(Duration::as_micros).collect::<Vec<_>>(),
            [32, 16, 8, 4, 2, 1, 0, 0]
        );
        budget.after_wait(Duration::from_micros(5));
        assert_eq!(budget.get(), full);
    }

    #[test]
    fn a_spin_ends_when_ready_or_when_the_budget_is_spent() {
        assert!(spin_until(Instant::now(), Duration::from_secs(5), || true));
        let started = Instant::now();
        assert!(!spin_until(started, Duration::from_micros(200), || false));
        assert!(started.elapsed() >= Duration::from_micros(200));
        assert!(!spin_until(Instant::now(), Duration::ZERO, || false));
    }
}
