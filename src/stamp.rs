//! Instants as `u64` nanoseconds since a process-wide epoch, so they fit in
//! an atomic: a thread publishes when something happened, another reads it
//! without a lock. Zero means "none".

use std::sync::LazyLock;
use std::time::{Duration, Instant};

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Nanoseconds since the crate's epoch, plus one so that zero means "none".
#[cfg(test)]
pub(crate) fn stamp(at: Instant) -> u64 {
    stamp_from(*EPOCH, at)
}

/// The stamp of this moment. The epoch is fixed before the clock is read,
/// so (short of the 584-year saturation) two of these differ by exactly
/// the time between them and a poll's length is a subtraction: cheaper
/// than keeping the `Instant`s and subtracting those too.
// Inline: `Instrumented::poll` is monomorphised in the caller's crate, and
// a cross-crate call per poll is measurable at this scale.
#[inline]
pub(crate) fn stamp_now() -> u64 {
    let epoch = *EPOCH;
    stamp_from(epoch, Instant::now())
}

#[inline]
fn stamp_from(epoch: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch).as_nanos())
        .unwrap_or(u64::MAX - 1)
        .saturating_add(1)
}

/// The instant a stamp stands for (the epoch for "none").
pub(crate) fn from_stamp(stamp: u64) -> Instant {
    *EPOCH + Duration::from_nanos(stamp.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_round_trips_and_is_never_zero() {
        let now = Instant::now();
        let s = stamp(now);
        assert_ne!(s, 0);
        assert_eq!(from_stamp(s), now.max(*EPOCH));
        assert!(stamp_now() >= s);
    }
}
