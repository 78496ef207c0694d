//! Soak: mixed load across pools, adapters and `block_on` from every kind of
//! caller, for a long time. Opt-in:
//!
//! ```text
//! COLORSEAM_SOAK_SECS=600 cargo test --release --test soak -- --ignored --nocapture
//! ```
//!
//! (600 s is the default when the variable is unset; CI runs 60 s.) It prints
//! per-outcome counts, peak threads and RSS at start and end, and asserts
//! that no call was lost or answered twice, that the thread bounds held, and
//! that RSS shows no growth trend.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use colorseam::BlockingPool;
use colorseam::adapter::{ForAsync, ThreadBound};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Counts of submissions and of answers, by category and outcome.
#[derive(Default)]
struct Tally {
    submitted: AtomicU64,
    answered: AtomicU64,
    outcomes: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn submit(&self) {
        self.submitted.fetch_add(1, Ordering::Relaxed);
    }
    fn answer<T>(&self, what: &str, result: &Result<T, colorseam::Error>) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        let outcome = match result {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("{:?}", e.kind()),
        };
        *self
            .outcomes
            .lock()
            .unwrap()
            .entry(format!("{what}: {outcome}"))
            .or_default() += 1;
    }
}

/// A cheap deterministic generator.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
#[ignore = "soak run: COLORSEAM_SOAK_SECS=600 cargo test --release --test soak -- --ignored"]
fn soak_mixed_load_loses_nothing_and_does_not_grow() {
    let secs: u64 = std::env::var("COLORSEAM_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let deadline = Instant::now() + Duration::from_secs(secs);
    // The expected job panics are counted, not printed.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&"soak panic") {
            previous(info);
        }
    }));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pool = BlockingPool::builder()
        .name("soak")
        .max_threads(8)
        .max_abandoned(4)
        .queue_capacity(512)
        .keep_alive(Duration::from_millis(200))
        .build()
        .unwrap();
    let vendor = Arc::new(
        ForAsync::builder("soak-vendor")
            .max_threads(4)
            .max_abandoned(2)
            .default_timeout(Duration::from_millis(30))
            .build(())
            .unwrap(),
    );
    let bound = Arc::new(
        ThreadBound::builder("soak-bound", || 0u64)
            .default_timeout(Duration::from_millis(30))
            .build()
            .unwrap(),
    );
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let peak_threads = Arc::new(AtomicU64::new(0));
    let rss_start = rss_kib();
    let mut rss_samples = Vec::new();

    // Sync callers on plain threads, calling async code.
    let sync_callers: Vec<_> = (0..2)
        .map(|seed| {
            let (tally, stop, pool) = (tally.clone(), stop.clone(), pool.clone());
            std::thread::spawn(move || {
                let mut state = 0x9E37_79B9_7F4A_7C15 ^ (seed + 1);
                while !stop.load(Ordering::Relaxed) {
                    let r = next(&mut state);
                    tally.submit();
                    if r % 2 == 0 {
                        let result = colorseam::block_on(async move {
                            tokio::time::sleep(Duration::from_micros(r % 500)).await;
                        });
                        tally.answer("block_on", &result);
                    } else {
                        let p = pool.clone();
                        let result = colorseam::block_on_timeout(
                            async move { p.offload(move || r % 7).await },
                            Duration::from_millis(if r % 5 == 0 { 1 } else { 200 }),
                        )
                        .and_then(|inner| inner);
                        tally.answer("block_on_timeout+offload", &result);
                    }
                }
            })
        })
        .collect();

    rt.block_on(async {
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut round = 0u64;
        while Instant::now() < deadline {
            round += 1;
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..200 {
                let r = next(&mut state);
                let (pool, vendor, bound, tally) =
                    (pool.clone(), vendor.clone(), bound.clone(), tally.clone());
                tally.submit();
                set.spawn(async move {
                    match r % 6 {
                        0 | 1 => {
                            let result = pool
                                .offload_timeout(
                                    move || {
                                        std::thread::sleep(Duration::from_micros(r % 2_000));
                                        if r % 97 == 0 {
                                            panic!("soak panic");
                                        }
                                        r
                                    },
                                    Duration::from_millis(1 + r % 3),
                                )
                                .await;
                            tally.answer("offload", &result);
                        }
                        2 => {
                            // Dropped after one poll: answered by dropping.
                            let mut f = Box::pin(pool.offload(move || r));
                            let _ = futures::poll!(f.as_mut());
                            drop(f);
                            tally.answer::<()>("dropped", &Ok(()));
                        }
                        3 => {
                            let hang = if r % 50 == 0 { 60 } else { 1 };
                            let result = vendor
                                .call(move |_| std::thread::sleep(Duration::from_millis(hang)))
                                .await;
                            tally.answer("ForAsync", &result);
                        }
                        4 => {
                            let result = bound
                                .call(move |n| {
                                    *n += 1;
                                    *n
                                })
                                .await;
                            tally.answer("ThreadBound", &result);
                        }
                        _ => {
                            // The sandwich: a pool job calling async code that
                            // offloads to the same pool.
                            let p = pool.clone();
                            let result = pool
                                .offload_timeout(
                                    move || {
                                        colorseam::block_on(
                                            async move { p.offload(move || r).await },
                                        )
                                        .and_then(|inner| inner)
                                    },
                                    Duration::from_secs(5),
                                )
                                .await
                                .and_then(|inner| inner);
                            tally.answer("sandwich", &result);
                        }
                    }
                });
            }
            while let Some(joined) = set.join_next().await {
                joined.expect("caller tasks never panic");
            }
            let threads = colorseam::metrics::all()
                .iter()
                .map(|m| m.threads.total as u64)
                .sum::<u64>();
            peak_threads.fetch_max(threads, Ordering::Relaxed);
            for m in colorseam::metrics::all() {
                let bound = match m.name.as_str() {
                    "soak" => 12,
                    "soak-vendor" => 6,
                    "soak-bound" => 1,
                    _ => usize::MAX,
                };
                assert!(
                    m.threads.total <= bound,
                    "{} holds {} threads",
                    m.name,
                    m.threads.total
                );
            }
            if round % 20 == 0 {
                rss_samples.push(rss_kib());
            }
        }
    });
    stop.store(true, Ordering::Relaxed);
    for caller in sync_callers {
        caller.join().unwrap();
    }
    let rss_end = rss_kib();
    let submitted = tally.submitted.load(Ordering::Relaxed);
    let answered = tally.answered.load(Ordering::Relaxed);
    eprintln!("soak: {secs} s, {submitted} calls, {answered} answers");
    for (what, n) in tally.outcomes.lock().unwrap().iter() {
        eprintln!("soak:   {what:<40} {n}");
    }
    eprintln!(
        "soak: peak threads across pools {}; RSS start {rss_start} KiB, end {rss_end} KiB; samples {:?}",
        peak_threads.load(Ordering::Relaxed),
        rss_samples
    );
    assert_eq!(submitted, answered, "every call answered exactly once");
    // No growth trend: the last third of the samples is not markedly above
    // the middle third (warm-up fills the first).
    if rss_samples.len() >= 6 {
        let third = rss_samples.len() / 3;
        let median = |s: &[u64]| {
            let mut s = s.to_vec();
            s.sort_unstable();
            s[s.len() / 2]
        };
        let middle = median(&rss_samples[third..2 * third]);
        let last = median(&rss_samples[2 * third..]);
        assert!(
            last <= middle + middle / 5 + 16 * 1024,
            "RSS grows: middle third {middle} KiB, last third {last} KiB"
        );
    }
}
