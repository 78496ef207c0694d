//! Regression tests for bugs found in review of the pool: each failed
//! before its fix.

mod common;

use std::time::{Duration, Instant};

use colorseam::pool::ShutdownOptions;
use colorseam::{BlockingPool, Phase};
use common::{Gate, eventually_async};

const LONG: Duration = Duration::from_secs(20);

/// A caller timing out during a run-queued shutdown took the only thread
/// out of the active count, and nothing replaced it: queued work was
/// stranded and its caller waited forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_work_still_runs_when_the_running_call_is_abandoned_during_shutdown() {
    let pool = BlockingPool::builder()
        .name("rg-strand")
        .max_threads(1)
        .max_abandoned(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let hung = {
        let gate = gate.clone();
        pool.offload_timeout(
            move || {
                let _ = started_tx.send(());
                gate.wait(LONG);
            },
            Duration::from_millis(100),
        )
    };
    started_rx.await.unwrap();
    let queued = tokio::spawn(pool.offload(|| "ran"));
    let shutdown = tokio::spawn(pool.shutdown(ShutdownOptions::run_queued(LONG)));
    assert!(hung.await.unwrap_err().is_timeout());
    let value = tokio::time::timeout(Duration::from_secs(10), queued)
        .await
        .expect("the queued job was not stranded")
        .unwrap()
        .unwrap();
    assert_eq!(value, "ran");
    let report = shutdown.await.unwrap();
    assert_eq!(report.completed, 1, "{report:?}");
    gate.open();
}

/// At the shutdown deadline, queued work was neither run nor cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_work_is_cancelled_at_the_shutdown_deadline() {
    let pool = BlockingPool::builder()
        .name("rg-late")
        .max_threads(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let hung = {
        let gate = gate.clone();
        tokio::spawn(pool.offload(move || {
            let _ = started_tx.send(());
            gate.wait(LONG);
        }))
    };
    started_rx.await.unwrap();
    let queued = tokio::spawn(pool.offload(|| "never"));
    let report = pool
        .shutdown(ShutdownOptions::run_queued(Duration::from_millis(100)))
        .await;
    assert_eq!((report.abandoned, report.cancelled), (1, 1), "{report:?}");
    let err = queued.await.unwrap().unwrap_err();
    assert!(err.is_shutdown());
    assert_eq!(err.phase(), Some(Phase::Queued));
    let err = hung.await.unwrap().unwrap_err();
    assert_eq!(err.phase(), Some(Phase::Running));
    gate.open();
}

/// A second, longer shutdown was not told when the first abandoned the
/// running work, and waited for the hung job itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shutdown_waiter_learns_when_a_shorter_one_abandons_the_rest() {
    let pool = BlockingPool::builder()
        .name("rg-notify")
        .max_threads(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    pool.detach(move || g.wait(LONG)).unwrap();
    assert!(eventually_async(LONG, || pool.metrics().threads.busy == 1).await);
    let started = Instant::now();
    let long = tokio::spawn(pool.shutdown(ShutdownOptions::run_queued(Duration::from_secs(15))));
    let short = pool
        .shutdown(ShutdownOptions::run_queued(Duration::from_millis(50)))
        .await;
    assert_eq!(short.abandoned, 1);
    let long = long.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(long.abandoned, 0, "{long:?}");
    gate.open();
}

/// A value whose `Drop` panics, dropped on the worker after its caller went
/// away, killed the worker with its slot still counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_drop_of_an_unread_value_does_not_cost_the_pool_its_thread() {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("bomb dropped");
        }
    }
    let pool = BlockingPool::builder()
        .name("rg-bomb")
        .max_threads(1)
        .build()
        .unwrap();
    for _ in 0..5 {
        let gate = Gate::new();
        let g = gate.clone();
        let running = pool.offload(move || {
            g.wait(LONG);
            Bomb
        });
        // Abandoned while running: the value is dropped on the worker.
        drop(running);
        gate.open();
    }
    let value = tokio::time::timeout(Duration::from_secs(10), pool.offload(|| 7))
        .await
        .expect("the only thread survived five panicking drops");
    assert_eq!(value.unwrap(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_while_waiting_for_room_has_its_own_counter() {
    let pool = BlockingPool::builder()
        .name("rg-count")
        .max_threads(1)
        .queue_capacity(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let held = common::hold(&pool, 2, &gate);
    let err = pool
        .offload_timeout(|| (), Duration::from_millis(30))
        .await
        .unwrap_err();
    assert_eq!(err.phase(), Some(Phase::WaitingForRoom));
    let outcomes = pool.metrics().outcomes;
    assert_eq!(outcomes.timed_out_waiting_for_room, 1);
    assert_eq!(outcomes.timed_out_queued, 0);
    common::release(&gate, held).await;
}

/// A counting rendezvous that jobs spin-wait at (yielding), like jobs
/// that wait on each other through a shared flag: such a worker reads as
/// running to the OS, so the monitor calls it blocked only after 20 ms in
/// its job, which gives the test a wide window to act before that.
#[derive(Clone)]
struct Rendezvous {
    arrived: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Rendezvous {
    fn new() -> Self {
        Rendezvous {
            arrived: Default::default(),
        }
    }

    fn arrive_and_wait(&self, n: usize, limit: Duration) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.arrived.fetch_add(1, SeqCst);
        let until = Instant::now() + limit;
        while self.arrived.load(SeqCst) < n {
            if Instant::now() >= until {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }

    fn arrived(&self) -> usize {
        self.arrived.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Review of the monitor (src/pool/monitor.rs): `monitor_tick` returns
/// `Done` as soon as the pool is shutting down, so during a run-queued
/// shutdown (which is what dropping the last handle starts) a pool never
/// grows past its eager limit again. Queued work that waits behind blocked
/// workers then waits for them, and jobs that wait on each other (here
/// `eager + 2` jobs meeting at a rendezvous, with `max_threads` room for
/// all of them) never meet. Before the monitor, threads were started at
/// submit time and this worked; the monitor itself grows such a pool when
/// it is not shutting down (the 20 ms rule).
///
/// Could pass spuriously only if the test thread stalled for 20 ms between
/// the first queued `detach` and `drop(pool)`.
#[test]
fn queued_work_behind_blocked_workers_still_gets_threads_after_the_last_handle_is_dropped() {
    let eager = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Two more jobs than the eager limit, so two must wait for the monitor.
    let n = eager + 2;
    let pool = BlockingPool::builder()
        .name("rg-drop-grow")
        .max_threads(n)
        .queue_capacity(n)
        .build()
        .unwrap();
    let meet = Rendezvous::new();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let job = |meet: Rendezvous, done: std::sync::mpsc::Sender<bool>| {
        move || {
            let met = meet.arrive_and_wait(n, Duration::from_secs(5));
            let _ = done.send(met);
        }
    };
    // The eager threads start at once and wait at the rendezvous.
    for _ in 0..eager {
        pool.detach(job(meet.clone(), done_tx.clone())).unwrap();
    }
    assert!(common::eventually(LONG, || meet.arrived() == eager));
    // Two more queue behind them, and the pool is watched; the monitor
    // would call the eager workers blocked 20 ms from now. Drop the pool at
    // once: a run-queued shutdown, which must still run the queued jobs.
    pool.detach(job(meet.clone(), done_tx.clone())).unwrap();
    pool.detach(job(meet.clone(), done_tx.clone())).unwrap();
    drop(pool);
    drop(done_tx);
    let met: Vec<bool> = (0..n)
        .map(|_| {
            done_rx
                .recv_timeout(Duration::from_secs(15))
                .expect("every job ends within the rendezvous bound")
        })
        .collect();
    assert!(
        met.iter().all(|m| *m),
        "the queued jobs never got a thread after the drop: {met:?}"
    );
}

/// Review of `monitor_tick`: `start` is computed once from the room under
/// `max_threads`, then threads are started one by one with the pool lock
/// released in between (`spawn_worker` now starts the OS thread unlocked),
/// and the loop never looks at the count again. A budget-abandoned thread
/// that returns meanwhile rejoins the active count (`after_run`: allowed
/// while `active_threads < max_threads`), and the loop's remaining
/// starts push `active_threads` past `max_threads`: more than `max_threads`
/// jobs run at once.
///
/// Timing-dependent (the rejoin must land inside the loop); it never fails
/// spuriously once the loop re-checks the bound, and tries several times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_never_starts_more_than_max_threads_when_abandoned_threads_rejoin() {
    const MAX: usize = 16;
    const ABANDONED: usize = 8;
    let mut worst = 0;
    for attempt in 0..16 {
        let pool = BlockingPool::builder()
            .name(format!("rg-over-{attempt}"))
            .max_threads(MAX)
            .max_abandoned(ABANDONED)
            .queue_capacity(100)
            .build()
            .unwrap();
        // Eight calls whose callers give up: their threads keep running,
        // outside the active count, until `back` opens.
        let back = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut abandoned = Vec::new();
        for _ in 0..ABANDONED {
            let back = back.clone();
            let started = started.clone();
            abandoned.push(tokio::spawn(pool.offload_timeout(
                move || {
                    started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // Polled, not slept on: returns within a yield of the
                    // gate opening, so it lands inside the start loop.
                    let until = Instant::now() + LONG;
                    while !back.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < until
                    {
                        std::thread::yield_now();
                    }
                },
                Duration::from_millis(400),
            )));
        }
        assert!(
            eventually_async(LONG, || started.load(std::sync::atomic::Ordering::SeqCst)
                == ABANDONED)
            .await
        );
        for a in abandoned {
            assert!(a.await.unwrap().unwrap_err().is_timeout());
        }
        assert_eq!(pool.metrics().threads.abandoned, ABANDONED);

        // Now a burst of blocking jobs: the monitor ramps the pool up. The
        // first job on a monitor-started thread lets the abandoned threads
        // return, while the monitor is still in its start loop.
        let release = Gate::new();
        let running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // The first job on a thread of the ramp's last step (8 -> 16 on
        // two cores), or of the step before it, by attempt.
        let trigger = [7, 11, 9, 5][attempt % 4];
        let mut burst = Vec::new();
        for _ in 0..40 {
            let (back, release) = (back.clone(), release.clone());
            let (running, most) = (running.clone(), most.clone());
            burst.push(tokio::spawn(pool.offload(move || {
                let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                if now == trigger {
                    back.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                release.wait(LONG);
                running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            })));
        }
        // Let the ramp finish: it reaches MAX within milliseconds.
        assert!(
            eventually_async(LONG, || running.load(std::sync::atomic::Ordering::SeqCst)
                >= MAX)
            .await
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seen = most.load(std::sync::atomic::Ordering::SeqCst);
        let threads = pool.metrics().threads;
        release.open();
        for b in burst {
            b.await.unwrap().unwrap();
        }
        worst = worst.max(seen);
        assert!(
            seen <= MAX,
            "attempt {attempt}: {seen} jobs ran at once with max_threads({MAX}); {threads:?}"
        );
    }
    eprintln!("most jobs at once: {worst}");
}
