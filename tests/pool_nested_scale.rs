//! Nested offloads at scale: a pool thread waiting in `block_on` finds its
//! own nested jobs through its slot's list of the jobs it made, not by
//! walking the queue (which made each sandwich cost O(jobs in flight)).
//! These tests hold what that list must keep: the thread's own jobs, oldest
//! first, found behind a long queue of other callers' jobs, which it leaves
//! alone.

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use colorseam::BlockingPool;

const WATCHDOG: Duration = Duration::from_secs(30);

/// Runs `f` on a thread and fails the test if it does not return in time.
fn within<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(WATCHDOG)
        .expect("returned within the watchdog's limit (a hang otherwise)")
}

fn one_thread_pool(name: &str, queue: usize) -> BlockingPool {
    BlockingPool::builder()
        .name(name)
        .max_threads(1)
        .queue_capacity(queue)
        .build()
        .unwrap()
}

#[test]
fn a_waiting_thread_runs_its_own_nested_jobs_oldest_first() {
    let pool = one_thread_pool("nsc-order", 64);
    let order = Arc::new(Mutex::new(Vec::new()));
    let (p, seen) = (pool.clone(), order.clone());
    within(move || {
        colorseam::block_on(p.clone().offload(move || {
            colorseam::block_on(async move {
                // All three are queued before the wait polls any of them.
                let calls: Vec<_> = (0..3)
                    .map(|i| {
                        let seen = seen.clone();
                        p.offload(move || seen.lock().unwrap().push(i))
                    })
                    .collect();
                for call in calls.into_iter().rev() {
                    call.await.unwrap();
                }
            })
            .unwrap();
        }))
        .unwrap()
        .unwrap();
    });
    assert_eq!(*order.lock().unwrap(), [0, 1, 2]);
}

#[test]
fn a_sandwich_behind_ten_thousand_queued_jobs_finds_its_nested_job_and_leaves_the_rest() {
    const BEHIND: usize = 10_000;
    let pool = one_thread_pool("nsc-behind", BEHIND + 16);
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let p = pool.clone();
    let outer = pool.offload(move || {
        started_tx.send(()).unwrap();
        release_rx.recv().unwrap();
        // The queue is full of other callers' jobs by now; the nested job
        // is queued behind them all, and the only thread is this one.
        let depth_before = p.metrics().queue_depth;
        let nested = p.clone();
        let value =
            colorseam::block_on(async move { nested.offload(|| 7u64).await.unwrap() }).unwrap();
        // Read before this job ends: only then may the thread take the rest.
        (depth_before, value, p.metrics().queue_depth)
    });
    started_rx.recv_timeout(WATCHDOG).unwrap();
    let behind: Vec<_> = (0..BEHIND).map(|_| pool.offload(|| ())).collect();
    assert_eq!(pool.metrics().queue_depth, BEHIND);
    release_tx.send(()).unwrap();
    let (depth_before, value, depth_after) =
        within(move || colorseam::block_on(outer).unwrap().unwrap());
    assert_eq!(value, 7);
    assert_eq!(depth_before, BEHIND);
    // It ran its own job only: every other caller's job was still queued.
    assert_eq!(
        depth_after, BEHIND,
        "the waiting thread ran other callers' jobs"
    );
    let rest = within(move || {
        colorseam::block_on(async move {
            for call in behind {
                call.await.unwrap();
            }
        })
    });
    rest.unwrap();
}
