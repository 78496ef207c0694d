//! Plain snapshots of a pool's state, and the histogram behind them.
//!
//! Every figure is either a *gauge* (a value at the moment of the snapshot)
//! or a *counter* (monotonic since the pool was built); each field says
//! which. Snapshots are plain data: cheap to clone, print or export.
//!
//! # Publishing to a metrics backend
//!
//! With the `metrics` feature, [`publish()`](publish) sets every live pool's
//! and adapter's figures in the [`metrics`](https://docs.rs/metrics) crate
//! facade's recorder (the convention tokio-metrics follows): thread gauges
//! (`colorseam_pool_threads{pool, state}`), the queue depth, stuck calls,
//! calls ended by `outcome` and `phase` (`colorseam_pool_calls_total`), and
//! queue-wait and run-time histograms as Prometheus `_bucket{le}` /
//! `_count` / `_sum` series, all labelled with the pool's name. Nothing
//! runs in the background: call it from the scrape handler or a task of
//! yours. Its docs list every series. [`Latency`] carries the count, the
//! sum and the power-of-two [`buckets`](Latency::buckets) those series
//! come from, for building a histogram by other means.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

#[cfg(feature = "metrics")]
mod publish;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use publish::publish;

/// Snapshots of every live pool in the process, in creation order: the
/// default pool, pools you built, and the pools behind
/// [`ForAsync`](crate::adapter::ForAsync) and
/// [`ThreadBound`](crate::adapter::ThreadBound) adapters, each under its
/// adapter's name. For dashboards: one call, every seam.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let vendor = colorseam::adapter::ForAsync::new("vendor", ()).unwrap();
/// vendor.call(|_| ()).await.unwrap();
/// let all = colorseam::metrics::all();
/// let mine = all.iter().find(|m| m.name == "vendor").unwrap();
/// assert_eq!(mine.outcomes.completed, 1);
/// # }
/// ```
pub fn all() -> Vec<PoolMetrics> {
    // Upgraded first and snapshotted with the registry unlocked: a snapshot
    // takes the pool's own lock, and a pool built meanwhile registers here.
    let sources: Vec<Arc<dyn Source>> = crate::sync::lock_std(&SOURCES)
        .list
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    sources.iter().map(|source| source.snapshot()).collect()
}

/// Something [`all`] reports on: a pool (adapters' pools included).
///
/// Pools register themselves here when they are built, so this module
/// knows nothing of the pool's internals and the module graph has no cycle
/// (`pool` uses `metrics` for its snapshot types, never the reverse).
pub(crate) trait Source: Send + Sync {
    /// A snapshot of the source now.
    fn snapshot(&self) -> PoolMetrics;
}

/// Every registered source, in creation order; dead entries are swept out
/// at a registration that finds the list twice as long as after the last
/// sweep (so a registration costs O(1) amortised, not O(pools): building
/// 1,000 pools walked the list half a million times).
static SOURCES: Mutex<Sources> = Mutex::new(Sources {
    list: Vec::new(),
    sweep_at: 0,
});

struct Sources {
    list: Vec<Weak<dyn Source>>,
    /// The length at which the next registration sweeps.
    sweep_at: usize,
}

/// Makes `source` appear in [`all`] for as long as it is alive.
pub(crate) fn register(source: Weak<dyn Source>) {
    let mut sources = crate::sync::lock_std(&SOURCES);
    if sources.list.len() >= sources.sweep_at {
        sources.list.retain(|s| s.strong_count() > 0);
        sources.sweep_at = (2 * sources.list.len()).max(16);
    }
    sources.list.push(source);
}

/// A snapshot of one pool, returned by
/// [`BlockingPool::metrics`](crate::BlockingPool::metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolMetrics {
    /// The pool's name.
    pub name: String,
    /// Threads, by what they are doing (gauges).
    pub threads: ThreadMetrics,
    /// Jobs accepted and waiting for a thread (gauge).
    pub queue_depth: usize,
    /// Jobs ended, by outcome (counters).
    pub outcomes: OutcomeCounters,
    /// Time jobs spent queued before a thread took them.
    pub queue_wait: Latency,
    /// Time jobs spent running, abandoned ones included once they return.
    pub run_time: Latency,
    /// Every call whose caller gave up while its thread still runs it,
    /// with what that thread waits on (see [`StuckCall`]). Empty on a
    /// healthy pool: `/proc` is read only for these threads.
    pub stuck_calls: Vec<StuckCall>,
    /// Interrupters sent to abandoned jobs, and what came of them (counters).
    pub interrupts: InterruptCounters,
}

/// Interrupters ([`JobContext::on_cancel`](crate::job::JobContext::on_cancel),
/// the adapters' `interrupt_with`) and what came of them, counted since the
/// pool was built (counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct InterruptCounters {
    /// Interrupters sent and run because their call was abandoned while its
    /// job ran. One sent and then disarmed by its guard before it started
    /// (the job returned by itself first) is not counted: it never ran.
    pub sent: u64,
    /// Interrupters that panicked (caught; the job and the pool go on).
    pub panicked: u64,
    /// Jobs whose interrupter ran and that returned after their call was
    /// abandoned: their threads came back (stuck no more).
    pub recovered: u64,
}

/// A call whose caller gave up (timed out, dropped its future, or was
/// released by shutdown) while a pool thread still runs it: listed by
/// [`BlockingPool::stuck_calls`](crate::BlockingPool::stuck_calls), in
/// [`PoolMetrics::stuck_calls`] and in the error that says threads are
/// stuck ([`Error::stuck_calls`](crate::Error::stuck_calls)).
///
/// `Display` is one line: `call at src/db.rs:40:9 in pool "db" stuck for
/// 2.0s, blocked in read on tcp 127.0.0.1:40000 -> 10.1.2.3:5432`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StuckCall {
    /// The pool (or adapter) whose thread it holds.
    pub pool: String,
    /// Where the call was made.
    pub location: &'static std::panic::Location<'static>,
    /// How long since the call was made (it has been stuck at least since
    /// its caller gave up).
    pub stuck_for: Duration,
    /// The name of the thread running it.
    pub thread: Option<String>,
    /// What that thread waits on, read from `/proc` for this snapshot
    /// (Linux with a readable `/proc`; otherwise `None`).
    pub wait: Option<crate::procfs::ThreadWait>,
}

impl std::fmt::Display for StuckCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "call at {} in pool {:?} stuck for {:.1?}",
            self.location, self.pool, self.stuck_for
        )?;
        match &self.wait {
            Some(wait) => write!(f, ", {wait}"),
            None => Ok(()),
        }
    }
}

/// The pool's OS threads at the moment of the snapshot (gauges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ThreadMetrics {
    /// All OS threads the pool holds; never above `max_threads + max_abandoned`.
    ///
    /// A thread counts until it is gone from the OS (joined and, where
    /// there is `/proc`, no longer listed there), not just until it stops
    /// taking work: a thread that is still exiting is counted.
    pub total: usize,
    /// Threads waiting for work.
    pub idle: usize,
    /// Threads running a job some caller still waits for.
    pub busy: usize,
    /// Threads still running a job whose caller gave up (timed out, dropped
    /// its future, or was released by shutdown).
    pub abandoned: usize,
    /// The most threads the pool ever held at once (a high-water mark),
    /// counted as `total` is, so it is never below what the OS listed.
    pub peak: usize,
}

/// How calls ended, counted since the pool was built (counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct OutcomeCounters {
    /// Jobs that ran to completion and returned a value.
    pub completed: u64,
    /// Jobs that panicked.
    pub panicked: u64,
    /// Calls whose deadline passed while they waited for room in a full
    /// queue (never accepted, never ran).
    pub timed_out_waiting_for_room: u64,
    /// Calls whose deadline passed while the job was queued (it never ran).
    pub timed_out_queued: u64,
    /// Calls whose deadline passed while the job ran (the job was abandoned).
    pub timed_out_running: u64,
    /// Calls dropped by their caller before the job started (it never ran).
    pub cancelled_queued: u64,
    /// Calls dropped by their caller while the job ran (it was abandoned).
    pub cancelled_running: u64,
    /// Calls refused because the pool had no room.
    pub rejected: u64,
    /// Calls ended by shutdown: refused, cancelled in the queue, or released
    /// while running past the shutdown deadline.
    pub shut_down: u64,
    /// Detached jobs that failed (error, panic or cancellation), each also
    /// sent to the pool's error sink.
    pub detached_failures: u64,
}

/// Percentiles of a duration distribution, to about 12% precision, with
/// the count, sum and power-of-two buckets a Prometheus histogram is made
/// of ([`buckets`](Self::buckets)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Latency {
    /// How many durations were recorded (counter).
    pub count: u64,
    /// Every recorded duration, summed (counter).
    pub sum: Duration,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest recorded.
    pub max: Duration,
    /// How many durations fell in each of [`Latency::BUCKET_BOUNDS`]'s
    /// buckets (not cumulative; see [`buckets`](Self::buckets)).
    bucket_counts: [u64; LATENCY_BUCKETS],
}

/// How many buckets [`Latency::buckets`] has (`+Inf` aside).
const LATENCY_BUCKETS: usize = 27;
/// The first bucket's bound is `2^FIRST_BOUND_BITS` ns (1.024 µs).
const FIRST_BOUND_BITS: u32 = 10;

impl Latency {
    /// The buckets' upper bounds, ascending: powers of two nanoseconds,
    /// 2^10 ns (1.024 µs) to 2^36 ns (68.7 s), each twice the one before.
    ///
    /// They follow the recording histogram's octaves, so the counts are
    /// exact, not interpolated. A bucket holds the durations below its
    /// bound and at or above the previous one: a duration of exactly a
    /// bound counts in the next bucket (1 ns of difference from
    /// Prometheus' `le`, "at or below").
    pub const BUCKET_BOUNDS: [Duration; LATENCY_BUCKETS] = {
        let mut bounds = [Duration::ZERO; LATENCY_BUCKETS];
        let mut i = 0;
        while i < LATENCY_BUCKETS {
            bounds[i] = Duration::from_nanos(1 << (FIRST_BOUND_BITS + i as u32));
            i += 1;
        }
        bounds
    };

    /// Each bucket's upper bound and the number of durations below it
    /// (cumulative, as Prometheus' `_bucket{le="..."}` series are), in
    /// ascending order. Durations past the last bound are counted only in
    /// [`count`](Self::count) (the `+Inf` bucket).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = colorseam::BlockingPool::builder().name("db").build().unwrap();
    /// # pollster::block_on(async {
    /// pool.offload(|| std::thread::sleep(std::time::Duration::from_millis(2)))
    ///     .await
    ///     .unwrap();
    /// # });
    /// let run = pool.metrics().run_time;
    /// let (bound, below) = run.buckets().last().unwrap();
    /// assert_eq!(bound, colorseam::metrics::Latency::BUCKET_BOUNDS[26]);
    /// assert_eq!(below, run.count); // all of them are under 68.7 s
    /// assert!(run.sum >= std::time::Duration::from_millis(2));
    /// ```
    pub fn buckets(&self) -> impl Iterator<Item = (Duration, u64)> + '_ {
        let mut below = 0;
        Self::BUCKET_BOUNDS
            .iter()
            .zip(self.bucket_counts)
            .map(move |(bound, count)| {
                below += count;
                (*bound, below)
            })
    }
}

/// The [`Latency`] bucket a recording-histogram bucket falls in, if any
/// (past the last bound: none).
fn latency_bucket_of(index: usize) -> Option<usize> {
    if index < SUB_BUCKETS {
        return Some(0); // the values 0..8 ns, one per bucket
    }
    // Every value in the bucket lies in one octave, [2^octave, 2^(octave+1)),
    // so all of them are below the bound 2^(octave+1). (The table's last
    // indices are octaves no u64 reaches.)
    let octave = (index / SUB_BUCKETS) as u32 + SUB_BUCKET_BITS - 1;
    let bucket = (octave + 1).saturating_sub(FIRST_BOUND_BITS) as usize;
    (octave < u64::BITS && bucket < LATENCY_BUCKETS).then_some(bucket)
}

const SUB_BUCKET_BITS: u32 = 3;
const SUB_BUCKETS: usize = 1 << SUB_BUCKET_BITS;
const BUCKETS: usize = 64 * SUB_BUCKETS;

/// A lock-free log-linear histogram of nanosecond durations.
///
/// Recording is one relaxed `fetch_add` on a bucket plus one `fetch_max`,
/// cheap enough for the offload hot path; reading walks the buckets of the
/// octaves that were ever recorded in ([`octaves`](Self::octaves)).
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    max_nanos: AtomicU64,
    sum_nanos: AtomicU64,
    /// Bit `r` set once a duration fell in row `r` of the buckets (an
    /// octave, [`SUB_BUCKETS`] buckets). A snapshot reads only those rows:
    /// durations cluster in a few octaves, so a snapshot touches a few
    /// cache lines instead of all 4 KiB of buckets, which is what
    /// `metrics::all()` over many pools costs. Set with a plain load first,
    /// so the hot path pays an RMW only the first time an octave is seen.
    octaves: AtomicU64,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_nanos: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
            octaves: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, duration: Duration) {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let bucket = bucket_of(nanos);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let row = 1u64 << (bucket / SUB_BUCKETS);
        if self.octaves.load(Ordering::Relaxed) & row == 0 {
            self.octaves.fetch_or(row, Ordering::Relaxed);
        }
        self.max_nanos.fetch_max(nanos, Ordering::Relaxed);
        // Wraps after 584 years of summed time.
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Latency {
        // Only the rows of octaves ever recorded in are read, the rest are
        // empty (a record bumps its bucket before it marks its octave, so
        // one still under way may be missed, as if it came just after this
        // snapshot). Reading all 512 buckets (4 KiB) per histogram made
        // `metrics::all()` over 1,000 pools stream 8 MiB through the cache.
        let max_nanos = self.max_nanos.load(Ordering::Relaxed);
        let octaves = self.octaves.load(Ordering::Relaxed);
        let mut counts = [0u64; BUCKETS];
        let mut count = 0;
        let mut bucket_counts = [0; LATENCY_BUCKETS];
        let mut rows = octaves;
        while rows != 0 {
            let row = rows.trailing_zeros() as usize;
            rows &= rows - 1;
            let span = row * SUB_BUCKETS..(row + 1) * SUB_BUCKETS;
            for (index, bucket) in span.zip(&self.buckets[row * SUB_BUCKETS..]) {
                let c = bucket.load(Ordering::Relaxed);
                counts[index] = c;
                count += c;
                if let Some(latency_bucket) = latency_bucket_of(index) {
                    bucket_counts[latency_bucket] += c;
                }
            }
        }
        // The quantiles walk no further than the highest octave recorded.
        let top = (u64::BITS - octaves.leading_zeros()) as usize * SUB_BUCKETS;
        let counts = &counts[..top];
        let max = Duration::from_nanos(max_nanos);
        let quantile = |q: f64| -> Duration {
            if count == 0 {
                return Duration::ZERO;
            }
            // Rank of the q-quantile, 1-based, rounded up.
            let rank = ((count as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (index, &c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Duration::from_nanos(upper_bound_of(index)).min(max);
                }
            }
            max
        };
        Latency {
            count,
            sum: Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)),
            bucket_counts,
            p50: quantile(0.50),
            p90: quantile(0.90),
            p99: quantile(0.99),
            max,
        }
    }
}

fn bucket_of(nanos: u64) -> usize {
    if nanos < SUB_BUCKETS as u64 {
        return nanos as usize;
    }
    let octave = 63 - nanos.leading_zeros(); // >= SUB_BUCKET_BITS
    let sub = (nanos >> (octave - SUB_BUCKET_BITS)) as usize & (SUB_BUCKETS - 1);
    ((octave - SUB_BUCKET_BITS + 1) as usize) * SUB_BUCKETS + sub
}

fn upper_bound_of(index: usize) -> u64 {
    if index < SUB_BUCKETS {
        return index as u64;
    }
    let octave = (index / SUB_BUCKETS) as u32 + SUB_BUCKET_BITS - 1;
    let sub = (index % SUB_BUCKETS) as u64;
    let base = 1u64 << octave;
    let width = base >> SUB_BUCKET_BITS;
    base.saturating_add((sub + 1) * width - 1)
}

#[cfg(all(test, not(colorseam_loom)))]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        for nanos in (0..100_000u64).chain([u64::MAX / 2, u64::MAX]) {
            let b = bucket_of(nanos);
            assert!(b < BUCKETS);
            assert!(upper_bound_of(b) >= nanos, "{nanos} -> bucket {b}");
            if b > 0 {
                assert!(upper_bound_of(b - 1) < nanos, "{nanos} -> bucket {b}");
            }
        }
    }

    #[test]
    fn latency_buckets_count_exactly_the_durations_below_each_bound() {
        let h = Histogram::new();
        let nanos = [
            0,
            1,
            1023,
            1024,
            1025,
            2047,
            2048,
            1_000_000,
            1 << 36,
            1 << 40,
        ];
        for n in nanos {
            h.record(Duration::from_nanos(n));
        }
        let s = h.snapshot();
        assert_eq!(s.count, nanos.len() as u64);
        for (bound, below) in s.buckets() {
            let truth = nanos
                .iter()
                .filter(|&&n| u128::from(n) < bound.as_nanos())
                .count() as u64;
            assert_eq!(below, truth, "below {bound:?}");
        }
        let sum: u64 = nanos.iter().sum();
        assert_eq!(s.sum, Duration::from_nanos(sum));
    }

    #[test]
    fn a_snapshot_reads_every_octave_recorded_in_and_only_those() {
        let h = Histogram::new();
        let nanos = [3u64, 1_000, 1_000_000, 1_000_000_000, 1 << 62];
        for n in nanos {
            h.record(Duration::from_nanos(n));
        }
        assert_eq!(h.octaves.load(Ordering::Relaxed).count_ones(), 5);
        let s = h.snapshot();
        assert_eq!(s.count, 5);
        assert_eq!(s.max, Duration::from_nanos(1 << 62));
        assert_eq!(s.p99, s.max);
        // The median is the 1 ms one, to the bucket's precision.
        let p50 = s.p50.as_nanos() as f64;
        assert!((1e6..=1.13e6).contains(&p50), "p50 {p50}");
        // The last latency bucket ends at 68.7 s: the 2^62 ns one is past it.
        assert_eq!(s.buckets().last().map(|(_, below)| below), Some(4));
    }

    #[test]
    fn percentiles_land_within_one_bucket_of_the_truth() {
        let h = Histogram::new();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 100);
        assert_eq!(s.max, Duration::from_millis(100));
        let p50 = s.p50.as_secs_f64() * 1e3;
        let p99 = s.p99.as_secs_f64() * 1e3;
        assert!((50.0..=57.0).contains(&p50), "p50 {p50}");
        assert!((99.0..=100.0).contains(&p99), "p99 {p99}");
    }
}
