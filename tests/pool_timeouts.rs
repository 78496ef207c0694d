//! Deadlines are real: the caller is released at the deadline whatever the
//! sync code does; queued work that times out or is dropped never runs;
//! running work is abandoned and told so.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use colorseam::{BlockingPool, Phase};
use common::{Gate, eventually_async};

const LONG: Duration = Duration::from_secs(20);

fn pool(name: &str, threads: usize) -> BlockingPool {
    BlockingPool::builder()
        .name(name)
        .max_threads(threads)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50ms_timeout_around_a_10s_sleep_releases_the_caller_in_under_2s() {
    let pool = pool("to-release", 2);
    let started = Instant::now();
    let err = pool
        .offload_timeout(
            || std::thread::sleep(Duration::from_secs(10)),
            Duration::from_millis(50),
        )
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(50),
        "released early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(2), "released late: {waited:?}");
    assert!(err.is_timeout());
    assert_eq!(err.phase(), Some(Phase::Running));
    assert!(err.elapsed() >= Duration::from_millis(50));
    assert_eq!(pool.metrics().outcomes.timed_out_running, 1);
}

#[tokio::test(flavor = "current_thread")]
async fn the_deadline_fires_on_a_current_thread_runtime_too() {
    let pool = pool("to-ct", 1);
    let started = Instant::now();
    let err = pool
        .offload_timeout(
            || std::thread::sleep(Duration::from_secs(10)),
            Duration::from_millis(50),
        )
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(err.is_timeout());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeout_error_names_phase_pool_call_site_and_elapsed() {
    let pool = pool("to-msg", 1);
    let line = line!() + 2;
    let err = pool
        .offload_timeout(
            || std::thread::sleep(Duration::from_secs(5)),
            Duration::from_millis(30),
        )
        .await
        .unwrap_err();
    assert_eq!(err.location().file(), file!());
    assert_eq!(err.location().line(), line);
    let text = err.to_string();
    assert!(text.starts_with("offload timed out after "), "{text}");
    assert!(text.contains("while running"), "{text}");
    assert!(text.contains("in pool \"to-msg\""), "{text}");
    assert!(text.contains(&format!("{}:{line}", file!())), "{text}");
    assert!(!text.contains('\n'), "one line: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_work_that_times_out_is_removed_and_never_runs() {
    let pool = pool("to-queued", 1);
    let gate = Gate::new();
    let blocker = {
        let gate = gate.clone();
        pool.offload(move || gate.wait(LONG))
    };
    let ran = Arc::new(AtomicBool::new(false));
    let ran2 = ran.clone();
    let err = pool
        .offload_timeout(
            move || ran2.store(true, Ordering::SeqCst),
            Duration::from_millis(30),
        )
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(err.phase(), Some(Phase::Queued));
    assert_eq!(pool.metrics().queue_depth, 0, "removed from the queue");
    gate.open();
    blocker.await.unwrap();
    // The worker has passed the tombstone by now; run one more job to be sure.
    pool.offload(|| ()).await.unwrap();
    assert!(
        !ran.load(Ordering::SeqCst),
        "a timed-out queued job never runs"
    );
    assert_eq!(pool.metrics().outcomes.timed_out_queued, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_queued_future_never_runs_and_its_captures_are_dropped_at_once() {
    let pool = pool("to-drop", 1);
    let gate = Gate::new();
    let blocker = {
        let gate = gate.clone();
        pool.offload(move || gate.wait(LONG))
    };
    let captured = Arc::new(());
    let ran = Arc::new(AtomicBool::new(false));
    let queued = {
        let (captured, ran) = (captured.clone(), ran.clone());
        pool.offload(move || {
            let _keep = captured;
            ran.store(true, Ordering::SeqCst);
        })
    };
    assert_eq!(Arc::strong_count(&captured), 2);
    drop(queued);
    assert_eq!(
        Arc::strong_count(&captured),
        1,
        "the closure was dropped with the future"
    );
    gate.open();
    blocker.await.unwrap();
    pool.offload(|| ()).await.unwrap();
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(pool.metrics().outcomes.cancelled_queued, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_running_work_sees_cancellation_deadline_and_remaining_time() {
    let pool = pool("to-ctx", 1);
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    let err = pool
        .offload_timeout(
            move || {
                let job = colorseam::job::current().expect("a pool thread runs a job");
                let before = (
                    job.is_cancelled(),
                    job.deadline().is_some(),
                    job.remaining(),
                );
                while !job.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let _ = seen_tx.send((
                    before,
                    job.check().is_err(),
                    job.remaining(),
                    job.pool().to_owned(),
                ));
            },
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
    assert_eq!(err.phase(), Some(Phase::Running));
    let ((cancelled_before, had_deadline, remaining_before), check_failed, remaining_after, name) =
        seen_rx
            .recv_timeout(LONG)
            .expect("the job saw its cancellation");
    assert!(!cancelled_before);
    assert!(had_deadline);
    assert!(remaining_before.unwrap() <= Duration::from_millis(100));
    assert!(check_failed);
    assert_eq!(remaining_after, Some(Duration::ZERO));
    assert_eq!(name, "to-ctx");
    assert!(colorseam::job::current().is_none(), "not a pool thread");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_running_future_abandons_the_job_and_its_result_is_dropped_on_the_pool_thread() {
    struct Tell(std::sync::mpsc::Sender<String>);
    impl Drop for Tell {
        fn drop(&mut self) {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            let _ = self.0.send(name);
        }
    }
    let pool = pool("to-res", 1);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (drop_tx, drop_rx) = std::sync::mpsc::channel();
    let gate = Gate::new();
    let gate2 = gate.clone();
    let running = pool.offload(move || {
        let _ = started_tx.send(());
        gate2.wait(LONG);
        Tell(drop_tx)
    });
    let running = tokio::spawn(running);
    started_rx.await.unwrap();
    running.abort();
    assert!(matches!(running.await, Err(e) if e.is_cancelled()));
    let m = pool.metrics();
    assert_eq!(m.outcomes.cancelled_running, 1);
    assert_eq!(m.threads.abandoned, 1);
    gate.open();
    let dropped_on = drop_rx.recv_timeout(LONG).unwrap();
    assert!(
        dropped_on.starts_with("to-res-"),
        "dropped on {dropped_on:?}"
    );
    assert!(eventually_async(LONG, || pool.metrics().threads.abandoned == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_resolves_exactly_once_even_when_its_deadline_races_completion() {
    let pool = pool("to-race", 4);
    let finished = Arc::new(AtomicUsize::new(0));
    let mut ok = 0;
    let mut timed_out = 0;
    for i in 0..400u64 {
        let finished = finished.clone();
        let result = pool
            .offload_timeout(
                move || {
                    std::thread::sleep(Duration::from_micros(i % 7 * 150));
                    finished.fetch_add(1, Ordering::SeqCst);
                },
                Duration::from_micros(500),
            )
            .await;
        match result {
            Ok(()) => ok += 1,
            Err(e) if e.is_timeout() => timed_out += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok + timed_out, 400);
    let m = pool.metrics().outcomes;
    assert_eq!(m.completed, ok, "each value delivered is counted once");
    assert_eq!(m.timed_out_queued + m.timed_out_running, timed_out);
    assert_eq!(m.panicked + m.cancelled_queued + m.cancelled_running, 0);
}
