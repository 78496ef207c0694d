//! What colorseam costs while nothing happens. Once calls stop, its
//! threads (pool workers, the growth monitor, the deadline timer thread,
//! the bridge runtime's) park without a timeout they would wake for, so an
//! idle process using colorseam wakes no thread of its own.
//!
//! Counted from outside, from `/proc/self/task/<tid>/schedstat`: the
//! number of times each thread was scheduled and its CPU time, summed over
//! every thread of this process but the one measuring. Wake-ups do not
//! depend on how loaded the machine is, so the bound is a count. Linux
//! only; where `/proc` cannot be read the test fails rather than passes.
//! (Its own binary: no other test's threads run beside it.)
#![cfg(target_os = "linux")]

use std::path::PathBuf;
use std::time::Duration;

use colorseam::BlockingPool;

/// The tasks of this process, but the calling thread.
fn other_threads() -> Vec<PathBuf> {
    let me =
        std::fs::read_link("/proc/thread-self").expect("/proc/thread-self is readable on Linux");
    let me = me.file_name().expect("a task id").to_owned();
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task is readable on Linux")
        .filter_map(Result::ok)
        .filter(|t| t.file_name() != me)
        .map(|t| t.path())
        .collect()
}

/// (CPU nanoseconds, times scheduled) of a task; `None` once it is gone.
fn schedstat(task: &std::path::Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(task.join("schedstat")).ok()?;
    let mut fields = text.split_whitespace();
    let cpu = fields.next()?.parse().ok()?;
    let slices = fields.nth(1)?.parse().ok()?;
    Some((cpu, slices))
}

fn name(task: &std::path::Path) -> String {
    std::fs::read_to_string(task.join("comm")).map_or_else(|_| "?".into(), |n| n.trim().into())
}

#[test]
fn after_calls_stop_no_thread_of_colorseam_wakes_or_burns_cpu() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let pool = BlockingPool::builder()
        .name("idle-cost")
        .max_threads(8)
        // Longer than the test: no worker wakes to retire while it looks.
        .keep_alive(Duration::from_secs(60))
        .build()
        .expect("a valid pool");
    // Everything that starts a thread of colorseam's: a burst past the
    // eager limit (the growth monitor watches it), blocking jobs that make
    // the pool grow, calls with deadlines (the timer thread), and a
    // `block_on` from a plain thread (the bridge runtime).
    rt.block_on(async {
        let burst: Vec<_> = (0..2_000).map(|i| pool.offload(move || i)).collect();
        for call in burst {
            call.await.expect("a trivial job");
        }
        let sleepers: Vec<_> = (0..8)
            .map(|_| pool.offload(|| std::thread::sleep(Duration::from_millis(30))))
            .collect();
        for call in sleepers {
            call.await.expect("a sleeping job");
        }
        for _ in 0..50 {
            pool.offload_timeout(|| 1, Duration::from_millis(500))
                .await
                .expect("within its deadline");
        }
    });
    let value = colorseam::block_on(pool.offload(|| 7))
        .expect("a plain thread may block")
        .expect("a trivial job");
    assert_eq!(value, 7);
    // The monitor lets a pool go 20 ms after its queue empties, and backs
    // off from there: give it time to park.
    std::thread::sleep(Duration::from_millis(300));

    let tasks = other_threads();
    let before: Vec<_> = tasks.iter().map(|t| schedstat(t)).collect();
    assert!(
        before.iter().all(Option::is_some),
        "every thread's schedstat is readable"
    );
    std::thread::sleep(Duration::from_secs(1));
    let mut woken = Vec::new();
    let (mut cpu, mut slices) = (0, 0);
    for (task, before) in tasks.iter().zip(&before) {
        let (cpu_before, slices_before) = before.expect("checked above");
        let Some((cpu_after, slices_after)) = schedstat(task) else {
            // A thread that exits on an idle timeout woke to do so.
            woken.push(format!("{} (ended)", name(task)));
            slices += 1;
            continue;
        };
        if slices_after > slices_before {
            woken.push(format!("{} ×{}", name(task), slices_after - slices_before));
        }
        cpu += cpu_after - cpu_before;
        slices += slices_after - slices_before;
    }
    eprintln!(
        "{} threads; over 1 s idle: {slices} wake-ups, {} µs of CPU ({woken:?})",
        tasks.len(),
        cpu / 1_000
    );
    // The test harness's own threads (the one waiting for this test) are
    // idle too; a handful of wake-ups is left for the kernel's own reasons.
    assert!(
        slices <= 5,
        "threads woke {slices} times in 1 s of idle: {woken:?}"
    );
    assert!(
        cpu < 2_000_000,
        "idle threads used {} µs of CPU",
        cpu / 1_000
    );
    drop(pool);
    drop(rt);
}
