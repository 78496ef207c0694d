//! What watching costs: the watchdog's thread uses under 0.1% of one core
//! with the default threshold, on an idle runtime and with 1,000 pools
//! built and idle, in an optimized build (`cargo test --release --test
//! detect_cost -- --nocapture` prints the figures). An unoptimized build
//! runs tokio's wake path and the look itself several times slower, so
//! there the bound checked is 0.5%. CPU time is read from `/proc/self/task/<tid>/schedstat`
//! (nanoseconds on a CPU), so the figure is the thread's own use, not
//! wall-clock time, and does not depend on how loaded the machine is.
//! Linux only. (Its own binary: it finds the watchdog's thread by name.)
#![cfg(target_os = "linux")]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use colorseam::BlockingPool;
use colorseam::detect::Watchdog;

const WINDOW: Duration = Duration::from_secs(2);

/// The tasks of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task is readable on Linux")
        .filter_map(Result::ok)
        .map(|t| t.path())
        .filter(|t| {
            std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.trim_end().starts_with(prefix))
        })
        .collect()
}

/// The one task named `prefix`, once it has named itself (a new thread
/// sets its name as it starts).
fn the_thread_named(prefix: &str) -> PathBuf {
    let start = Instant::now();
    loop {
        let found = threads_named(prefix);
        if let [task] = found.as_slice() {
            return task.clone();
        }
        assert!(
            found.len() <= 1 && start.elapsed() < Duration::from_secs(20),
            "one thread named {prefix}: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Nanoseconds the task has spent on a CPU.
fn cpu_ns(task: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(task.join("schedstat")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Total CPU of every task of the process.
fn process_cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task is readable on Linux")
        .filter_map(Result::ok)
        .filter_map(|t| cpu_ns(&t.path()))
        .sum()
}

/// How many times the task has been switched out (its wake-ups, for a
/// thread that sleeps between looks).
fn switches(task: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(task.join("schedstat")).ok()?;
    text.split_whitespace().nth(2)?.parse().ok()
}

/// The share of one core `task` used over WINDOW, the process's, and the
/// task's wake-ups per second.
fn measure(task: &std::path::Path) -> Option<(f64, f64, f64)> {
    let (before, slices, process_before, start) = (
        cpu_ns(task)?,
        switches(task)?,
        process_cpu_ns(),
        Instant::now(),
    );
    std::thread::sleep(WINDOW);
    let (after, slices_after, process_after) = (cpu_ns(task)?, switches(task)?, process_cpu_ns());
    let wall = start.elapsed().as_nanos() as f64;
    Some((
        (after - before) as f64 / wall * 100.0,
        process_after.saturating_sub(process_before) as f64 / wall * 100.0,
        (slices_after - slices) as f64 / start.elapsed().as_secs_f64(),
    ))
}

#[test]
fn the_watchdog_uses_under_a_thousandth_of_a_core_idle_and_with_a_thousand_pools() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let watchdog = Watchdog::builder()
        .install(rt.handle())
        .expect("the watchdog starts");
    let task = &the_thread_named("colorseam-watch");
    if cpu_ns(task).is_none() {
        eprintln!("no schedstat here (kernel without CONFIG_SCHEDSTATS): skipped");
        return;
    }

    let (idle, idle_process, wakes) = measure(task).expect("the watchdog is alive");
    eprintln!(
        "watchdog (threshold 100ms), idle runtime: {idle:.4}% of a core, {wakes:.0} wake-ups/s; whole process {idle_process:.4}%"
    );

    // 1,000 pools, each with a thread that has run a job and waits idle.
    let pools: Vec<BlockingPool> = (0..1000)
        .map(|i| {
            BlockingPool::builder()
                .name(format!("cost-{i}"))
                .max_threads(1)
                .build()
                .expect("a pool")
        })
        .collect();
    rt.block_on(async {
        for pool in &pools {
            pool.offload(|| ()).await.expect("runs");
        }
    });
    let (busy, busy_process, wakes) = measure(task).expect("the watchdog is alive");
    eprintln!(
        "watchdog (threshold 100ms), 1,000 idle pools: {busy:.4}% of a core, {wakes:.0} wake-ups/s; whole process {busy_process:.4}%"
    );
    drop(watchdog);

    // For the record: the threshold `deny_blocking` is typically given
    // (10 ms) makes the watchdog look at least once per 10 ms.
    let tight = Watchdog::builder()
        .threshold(Duration::from_millis(10))
        .install(rt.handle())
        .expect("the watchdog starts");
    // The first watchdog's thread exits at its next look.
    std::thread::sleep(Duration::from_millis(300));
    let task = the_thread_named("colorseam-watch");
    if let Some((share, process, wakes)) = measure(&task) {
        eprintln!(
            "watchdog (threshold 10ms), 1,000 idle pools: {share:.4}% of a core, {wakes:.0} wake-ups/s; whole process {process:.4}%"
        );
    }
    drop(tight);

    let bound = if cfg!(debug_assertions) { 0.5 } else { 0.1 };
    assert!(idle < bound, "idle: {idle:.4}% of a core");
    assert!(busy < bound, "with 1,000 pools: {busy:.4}% of a core");
    drop(pools);
}
