//! An offload's deadline is real time from the call: it works wherever the
//! call is made and whoever polls it, a paused tokio clock cannot cut it
//! short, and a deadline already passed at the call is always refused
//! before the job runs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use colorseam::{BlockingPool, Phase};
use common::Gate;

const LIMIT: Duration = Duration::from_secs(20);

fn pool(name: &str) -> BlockingPool {
    BlockingPool::builder().name(name).build().unwrap()
}

#[test]
fn a_deadline_call_made_outside_a_runtime_works_when_block_on_polls_it() {
    let pool = pool("deadline-outside");
    let value = colorseam::block_on(pool.offload_timeout(|| 5, Duration::from_secs(10)))
        .expect("block_on from a plain thread")
        .expect("no false \"polled outside a tokio runtime\"");
    assert_eq!(value, 5);

    let gate = Arc::new(Gate::new());
    let g = gate.clone();
    let started = Instant::now();
    let err =
        colorseam::block_on(pool.offload_timeout(move || g.wait(LIMIT), Duration::from_millis(50)))
            .expect("block_on from a plain thread")
            .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    gate.open();
}

#[test]
fn a_deadline_is_kept_under_an_executor_that_is_not_tokio() {
    let pool = pool("deadline-futures");
    assert_eq!(
        futures::executor::block_on(pool.offload_timeout(|| 6, Duration::from_secs(10))).unwrap(),
        6
    );
    let gate = Arc::new(Gate::new());
    let g = gate.clone();
    let started = Instant::now();
    let err = futures::executor::block_on(
        pool.offload_timeout(move || g.wait(LIMIT), Duration::from_millis(50)),
    )
    .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(50),
        "released early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "released late: {waited:?}");
    gate.open();
}

#[tokio::test(start_paused = true)]
async fn under_a_paused_clock_an_offloads_own_deadline_does_not_fire_while_its_job_runs() {
    let pool = pool("deadline-paused");
    let started = Instant::now();
    let value = pool
        .offload_timeout(
            || {
                std::thread::sleep(Duration::from_millis(50));
                1
            },
            Duration::from_secs(3),
        )
        .await
        .expect("the 50 ms job beats its 3 s deadline in real time");
    assert_eq!(value, 1);
    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[tokio::test(start_paused = true)]
async fn under_a_paused_clock_a_deadline_passes_at_its_real_time_never_before() {
    let pool = pool("deadline-paused-real");
    // 300 ms: tokio's sleep goes first (and is auto-advanced at once);
    // 1 ms: within the timer thread's lead from the start.
    for timeout in [Duration::from_millis(300), Duration::from_millis(1)] {
        let gate = Arc::new(Gate::new());
        let g = gate.clone();
        let started = Instant::now();
        let err = pool
            .offload_timeout(move || g.wait(LIMIT), timeout)
            .await
            .unwrap_err();
        let waited = started.elapsed();
        assert!(err.is_timeout(), "{err}");
        assert!(
            waited >= timeout,
            "{timeout:?} deadline passed after {waited:?}"
        );
        assert!(waited < timeout + Duration::from_secs(5), "{waited:?}");
        gate.open();
    }
}

#[tokio::test(start_paused = true)]
async fn the_documented_workaround_for_tokio_timeout_under_a_paused_clock_holds() {
    let pool = pool("deadline-resume");
    tokio::time::resume();
    let value = tokio::time::timeout(
        Duration::from_secs(3),
        pool.offload(|| {
            std::thread::sleep(Duration::from_millis(50));
            2
        }),
    )
    .await
    .expect("a resumed clock is real time")
    .unwrap();
    assert_eq!(value, 2);
}

#[tokio::test]
async fn a_zero_or_past_deadline_is_refused_before_the_job_runs_every_time() {
    const ROUNDS: usize = 2_000;
    let pool = pool("deadline-past");
    let ran = Arc::new(AtomicUsize::new(0));
    for round in 0..ROUNDS {
        let r = ran.clone();
        let zero = pool
            .offload_timeout(move || r.fetch_add(1, Ordering::SeqCst), Duration::ZERO)
            .await;
        let r = ran.clone();
        let past = pool
            .offload_deadline(
                move || r.fetch_add(1, Ordering::SeqCst),
                Instant::now() - Duration::from_secs(1),
            )
            .await;
        for (what, result) in [("zero timeout", zero), ("past deadline", past)] {
            let err = result.expect_err(what);
            assert!(err.is_timeout(), "round {round}, {what}: {err}");
            assert_eq!(err.phase(), Some(Phase::WaitingForRoom), "{what}: {err}");
        }
    }
    // Give a job that was wrongly queued every chance to show up.
    let _ = pool.offload(|| ()).await;
    assert_eq!(ran.load(Ordering::SeqCst), 0, "a refused job ran");
    let outcomes = pool.metrics().outcomes;
    assert_eq!(outcomes.timed_out_waiting_for_room, 2 * ROUNDS as u64);
    assert_eq!(outcomes.completed, 1);
}
