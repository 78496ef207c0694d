//! A pool's threads are counted until they are gone from the OS, so
//! `max_threads + max_abandoned` holds for the threads `/proc` lists, at
//! every instant a watcher thread samples it, and the pool's peak agrees.
//!
//! The two churn tests take turns (`ONE_AT_A_TIME`): each samples `/proc`
//! in a tight loop while churning threads, and each is about its own
//! pool's threads only. A third holds an exiting thread in its exit, so the
//! gap the churn hits by chance is held open on purpose.

mod common;

use std::time::Duration;

use colorseam::BlockingPool;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A thread stays counted until it is gone from the OS's list: an abandoned
/// thread that comes back and exits is still running its exit (its last
/// job's drop, thread-local destructors) when the next abandonment would
/// start a replacement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_os_never_sees_more_than_max_threads_plus_max_abandoned_while_calls_time_out() {
    let _turn = ONE_AT_A_TIME.lock().await;
    const CALLS: usize = 3_000;
    let pool = BlockingPool::builder()
        .name("th-gone")
        .max_threads(1)
        .max_abandoned(1)
        .build()
        .unwrap();
    let sampler = common::ThreadSampler::start("th-gone-");
    let mut timed_out = 0;
    for _ in 0..CALLS {
        let call = pool.offload_timeout(
            || std::thread::sleep(Duration::from_millis(2)),
            Duration::from_millis(1),
        );
        timed_out += usize::from(call.await.is_err_and(|e| e.is_timeout()));
    }
    let (seen, samples) = sampler.peak();
    let peak = pool.metrics().threads.peak;
    eprintln!(
        "{timed_out} of {CALLS} timed out; the OS saw {seen} at most ({samples} samples), the pool's peak {peak}"
    );
    assert!(
        timed_out > CALLS / 10,
        "too few abandonments to test: {timed_out}"
    );
    assert!(
        seen <= 2,
        "the OS saw {seen} threads of a pool bounded at 2"
    );
    assert!(peak <= 2, "the pool's peak is {peak}");
    assert!(
        seen <= peak,
        "the OS saw {seen} threads, the pool's peak says {peak}"
    );
}

/// The same under a churn of mixed calls: quick ones, hung ones that time
/// out, dropped ones, detached ones, and idle threads exiting between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_os_never_sees_more_than_the_bound_under_a_churn_of_mixed_calls() {
    let _turn = ONE_AT_A_TIME.lock().await;
    const CALLS: usize = 20_000;
    const BOUND: usize = 16 + 8;
    let pool = BlockingPool::builder()
        .name("th-churn")
        .max_threads(16)
        .max_abandoned(8)
        .queue_capacity(64)
        .keep_alive(Duration::from_millis(1))
        .build()
        .unwrap();
    let sampler = common::ThreadSampler::start("th-churn-");
    let mut set = tokio::task::JoinSet::new();
    for i in 0..CALLS {
        if set.len() >= 48 {
            set.join_next().await.expect("a call in flight").unwrap();
        }
        let pool = pool.clone();
        set.spawn(async move {
            match i % 10 {
                0 | 1 => drop(pool.offload(move || i).await),
                2..=6 => drop(
                    pool.offload_timeout(
                        || std::thread::sleep(Duration::from_millis(2)),
                        Duration::from_millis(1),
                    )
                    .await,
                ),
                7 => {
                    let call = pool.offload(|| std::thread::sleep(Duration::from_millis(1)));
                    let _ = tokio::time::timeout(Duration::from_micros(500), call).await;
                }
                8 => drop(pool.detach(|| std::thread::sleep(Duration::from_micros(200)))),
                _ => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        joined.unwrap();
    }
    let (seen, samples) = sampler.peak();
    let peak = pool.metrics().threads.peak;
    eprintln!("the OS saw {seen} at most ({samples} samples), the pool's peak {peak}");
    assert!(
        seen <= BOUND,
        "the OS saw {seen} threads of a pool bounded at {BOUND}"
    );
    assert!(peak <= BOUND, "the pool's peak is {peak}");
    assert!(
        seen <= peak,
        "the OS saw {seen} threads, the pool's peak says {peak}"
    );
}

/// Makes the thread that runs it linger in its exit: a thread-local whose
/// destructor waits for `gate` (at most 20 s).
struct Linger(common::Gate);

impl Drop for Linger {
    fn drop(&mut self) {
        self.0.wait(Duration::from_secs(20));
    }
}

thread_local! {
    static LINGER: std::cell::RefCell<Option<Linger>> = const { std::cell::RefCell::new(None) };
}

/// Deterministic: the exiting thread is held in its thread-local
/// destructors, after it has left the pool's work, for as long as the test
/// says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_still_running_its_exit_keeps_its_room_until_it_is_gone() {
    const LONG: Duration = Duration::from_secs(20);
    let pool = BlockingPool::builder()
        .name("th-linger")
        .max_threads(1)
        .max_abandoned(0)
        .keep_alive(Duration::from_millis(100))
        .build()
        .unwrap();
    let gate = common::Gate::new();
    let g = gate.clone();
    pool.offload(move || LINGER.with(|l| *l.borrow_mut() = Some(Linger(g))))
        .await
        .unwrap();
    // Idle past the keep-alive, the thread leaves the work and exits, and
    // its thread-local's destructor holds it there.
    // Idle first, then not idle with nothing to run: it left the work.
    assert!(common::eventually_async(LONG, || pool.metrics().threads.idle == 1).await);
    assert!(common::eventually_async(LONG, || pool.metrics().threads.idle == 0).await);
    assert_eq!(common::os_threads_named("th-linger"), 1, "it lingers");
    assert_eq!(
        pool.metrics().threads.total,
        1,
        "a thread still exiting is counted"
    );

    // A new call needs a thread; the bound (1) is taken by the one exiting.
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = ran.clone();
    let call = tokio::spawn(pool.offload(move || {
        r.store(true, std::sync::atomic::Ordering::SeqCst);
        2
    }));
    // Nothing may start for it while the exiting thread is alive: watched
    // for a while (a check that something does not happen needs a wait).
    let until = std::time::Instant::now() + Duration::from_millis(200);
    while std::time::Instant::now() < until {
        assert!(
            common::os_threads_named("th-linger") <= 1,
            "a replacement started beside a thread still exiting"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    assert!(pool.metrics().threads.peak <= 1);

    // Once it is gone, the start it put off is made.
    gate.open();
    assert_eq!(
        tokio::time::timeout(LONG, call)
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        2
    );
    assert!(
        pool.metrics().threads.peak <= 1,
        "{:?}",
        pool.metrics().threads
    );
}
