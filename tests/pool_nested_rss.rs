//! Memory stays flat when a job loops `block_on(pool.offload(..))` on its
//! own pool: the old inbox design left a queue tombstone per round trip.
//! In a binary of its own, because RSS is the whole process's: tests
//! running beside it would allocate into the figure.

use std::sync::mpsc;
use std::time::Duration;

use colorseam::BlockingPool;

/// Runs `f` on a thread and fails the test if it does not return in time.
fn within<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("returned within the watchdog's limit (a hang otherwise)")
}

/// Resident set size of this process, from /proc; `None` without /proc.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn block_on_offload_loop(iterations: u64) -> Option<(u64, u64)> {
    let pool = BlockingPool::builder()
        .name("nst-rss")
        .max_threads(1)
        .queue_capacity(4)
        .build()
        .unwrap();
    let p = pool.clone();
    let grown = within(move || {
        colorseam::block_on(p.clone().offload(move || {
            for _ in 0..2_000 {
                colorseam::block_on(p.offload(|| ())).unwrap().unwrap();
            }
            let before = rss_kib()?;
            for _ in 0..iterations {
                colorseam::block_on(p.offload(|| ())).unwrap().unwrap();
            }
            Some((before, rss_kib()?))
        }))
        .unwrap()
        .unwrap()
    });
    assert_eq!(pool.metrics().queue_depth, 0);
    grown
}

#[test]
fn a_job_looping_block_on_offload_keeps_memory_flat() {
    // 40k iterations grew RSS by ~9 MB with the old design (tombstones).
    let Some((before, after)) = block_on_offload_loop(40_000) else {
        return; // no /proc: nothing to measure
    };
    let grown = after.saturating_sub(before);
    eprintln!("RSS {before} → {after} KiB");
    assert!(
        grown < 3 * 1024,
        "RSS grew by {grown} KiB ({before} → {after})"
    );
}

#[test]
#[ignore = "soak: a million round trips, run by hand"]
fn a_million_block_on_offload_round_trips_keep_memory_flat() {
    let Some((before, after)) = block_on_offload_loop(1_000_000) else {
        return;
    };
    let grown = after.saturating_sub(before);
    eprintln!("RSS {before} → {after} KiB");
    assert!(
        grown < 3 * 1024,
        "RSS grew by {grown} KiB ({before} → {after})"
    );
}
