//! 100,000 jobs mixing success, timeouts, dropped futures, panics and
//! shutdown. Checks that every awaited future resolved exactly once, every
//! closure ran at most once, every captured and returned value was dropped
//! exactly once, the thread count never exceeded its cap, and the pool went
//! back to its floor after the keep-alive.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use colorseam::BlockingPool;
use colorseam::pool::ShutdownOptions;
use common::{eventually_async, os_threads_named};

/// A value that counts its drops.
struct Counted(Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Ledger {
    captured_dropped: Arc<AtomicUsize>,
    returned_made: AtomicUsize,
    returned_dropped: Arc<AtomicUsize>,
    ran: Vec<AtomicU8>,
    resolved: Vec<AtomicU8>,
    awaited: AtomicUsize,
}

impl Ledger {
    fn new(jobs: usize) -> Arc<Self> {
        Arc::new(Ledger {
            ran: (0..jobs).map(|_| AtomicU8::new(0)).collect(),
            resolved: (0..jobs).map(|_| AtomicU8::new(0)).collect(),
            ..Ledger::default()
        })
    }
}

/// Submits job `i` in one of four shapes and, unless it is the dropped
/// shape, awaits it and records the resolution.
async fn one_job(pool: BlockingPool, ledger: Arc<Ledger>, i: usize) {
    let captured = Counted(ledger.captured_dropped.clone());
    let job_ledger = ledger.clone();
    let body = move || {
        let _captured = captured;
        job_ledger.ran[i].fetch_add(1, Ordering::Relaxed);
        match i % 4 {
            1 => std::thread::sleep(Duration::from_micros((i % 5) as u64 * 400)),
            3 if i % 8 == 3 => panic!("stress panic {i}"),
            _ => {}
        }
        job_ledger.returned_made.fetch_add(1, Ordering::Relaxed);
        Counted(job_ledger.returned_dropped.clone())
    };
    let future = match i % 4 {
        1 => pool.offload_timeout(body, Duration::from_millis(1)),
        _ => pool.offload(body),
    };
    if i % 4 == 2 {
        // Dropped at once, or after one poll, so both phases are hit.
        if i % 8 == 6 {
            let mut future = Box::pin(future);
            let _ = futures::poll!(future.as_mut());
        }
        return;
    }
    ledger.awaited.fetch_add(1, Ordering::Relaxed);
    let result = future.await;
    ledger.resolved[i].fetch_add(1, Ordering::Relaxed);
    drop(result);
}

async fn run_wave(pool: &BlockingPool, ledger: &Arc<Ledger>, range: std::ops::Range<usize>) {
    let mut set = tokio::task::JoinSet::new();
    for i in range {
        set.spawn(one_job(pool.clone(), ledger.clone(), i));
    }
    while let Some(joined) = set.join_next().await {
        joined.expect("a stress task never panics: job panics come back as errors");
    }
}

async fn check_ledger(ledger: &Ledger, jobs: usize) {
    for (i, ran) in ledger.ran.iter().enumerate() {
        assert!(ran.load(Ordering::Relaxed) <= 1, "job {i} ran twice");
    }
    let resolved: usize = ledger
        .resolved
        .iter()
        .map(|r| {
            let r = r.load(Ordering::Relaxed);
            assert!(r <= 1, "a future resolved twice");
            usize::from(r)
        })
        .sum();
    assert_eq!(
        resolved,
        ledger.awaited.load(Ordering::Relaxed),
        "every awaited future resolved once"
    );
    // Abandoned jobs finish on their own; give them time, then count drops.
    assert!(
        eventually_async(Duration::from_secs(30), || {
            ledger.captured_dropped.load(Ordering::Relaxed) == jobs
                && ledger.returned_dropped.load(Ordering::Relaxed)
                    == ledger.returned_made.load(Ordering::Relaxed)
        })
        .await,
        "captured dropped {} of {jobs}; returned dropped {} of {}",
        ledger.captured_dropped.load(Ordering::Relaxed),
        ledger.returned_dropped.load(Ordering::Relaxed),
        ledger.returned_made.load(Ordering::Relaxed),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_mixed_jobs_resolve_exactly_once_within_the_thread_cap() {
    const MAIN_JOBS: usize = 90_000;
    const ROUNDS: usize = 10;
    const ROUND_JOBS: usize = 1_000;
    const CAP: usize = 8 + 4;

    // Silence the 10,000 expected panic messages; keep any other.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let expected = info
            .payload()
            .downcast_ref::<String>()
            .is_some_and(|m| m.starts_with("stress panic"));
        if !expected {
            default_hook(info);
        }
    }));

    let pool = BlockingPool::builder()
        .name("stress")
        .max_threads(8)
        .max_abandoned(4)
        .min_threads(1)
        .queue_capacity(256)
        .keep_alive(Duration::from_millis(100))
        .build()
        .unwrap();

    // Sample the pool's threads, by its own count and by the OS's.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (pool, sampling) = (pool.clone(), sampling.clone());
        std::thread::spawn(move || {
            let mut peak = (0, 0);
            while sampling.load(Ordering::Relaxed) {
                peak.0 = peak.0.max(pool.metrics().threads.total);
                peak.1 = peak.1.max(os_threads_named("stress-"));
                std::thread::sleep(Duration::from_millis(2));
            }
            peak
        })
    };

    let ledger = Ledger::new(MAIN_JOBS);
    for wave in 0..(MAIN_JOBS / 5_000) {
        run_wave(&pool, &ledger, wave * 5_000..(wave + 1) * 5_000).await;
    }
    check_ledger(&ledger, MAIN_JOBS).await;

    // Shutdown rounds: each pool is shut down while loaded.
    let mut shut_down_errors = 0;
    for round in 0..ROUNDS {
        let small = BlockingPool::builder()
            .name(format!("stress-sd{round}"))
            .max_threads(4)
            .queue_capacity(ROUND_JOBS)
            .build()
            .unwrap();
        let round_ledger = Ledger::new(ROUND_JOBS);
        let mut set = tokio::task::JoinSet::new();
        for i in 0..ROUND_JOBS {
            let (small, round_ledger) = (small.clone(), round_ledger.clone());
            set.spawn(async move {
                let captured = Counted(round_ledger.captured_dropped.clone());
                let l = round_ledger.clone();
                let result = small
                    .offload(move || {
                        let _captured = captured;
                        l.ran[i].fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_micros(50));
                        l.returned_made.fetch_add(1, Ordering::Relaxed);
                        Counted(l.returned_dropped.clone())
                    })
                    .await;
                round_ledger.resolved[i].fetch_add(1, Ordering::Relaxed);
                round_ledger.awaited.fetch_add(1, Ordering::Relaxed);
                result.err().is_some_and(|e| e.is_shutdown())
            });
        }
        tokio::task::yield_now().await;
        let report = small
            .shutdown(ShutdownOptions::cancel_queued(Duration::from_millis(50)))
            .await;
        while let Some(joined) = set.join_next().await {
            shut_down_errors += usize::from(joined.unwrap());
        }
        assert!(report.completed + report.cancelled + report.abandoned <= ROUND_JOBS as u64);
        check_ledger(&round_ledger, ROUND_JOBS).await;
    }
    assert!(shut_down_errors > 0, "the shutdown rounds hit queued work");

    // Back to the floor after the keep-alive.
    assert!(
        eventually_async(Duration::from_secs(30), || pool.metrics().threads.total
            == 1)
        .await,
        "{:?}",
        pool.metrics().threads
    );
    assert!(eventually_async(Duration::from_secs(30), || os_threads_named("stress-") == 1).await);
    sampling.store(false, Ordering::Relaxed);
    let (peak_by_pool, peak_by_os) = sampler.join().unwrap();
    assert!(peak_by_pool <= CAP, "pool counted {peak_by_pool} threads");
    // The OS count includes the shutdown rounds' pools (`stress-sd*`, 4 each,
    // one at a time) beside the main pool.
    assert!(peak_by_os <= CAP + 4, "the OS saw {peak_by_os} threads");
    assert!(pool.metrics().threads.peak <= CAP);

    let m = pool.metrics().outcomes;
    eprintln!(
        "stress: {} jobs; main pool outcomes {m:?}; peak threads {peak_by_pool} (os {peak_by_os}); \
         {shut_down_errors} calls ended by shutdown",
        MAIN_JOBS + ROUNDS * ROUND_JOBS
    );
    assert!(m.completed > 0 && m.panicked > 0 && m.timed_out_running + m.timed_out_queued > 0);
    assert!(m.cancelled_queued + m.cancelled_running > 0);
}
