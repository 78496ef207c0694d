//! Shutdown refuses new work, settles queued work, waits for running work
//! until its deadline, reports, and never hangs. Dropping a pool never
//! blocks and never panics, in any context.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use colorseam::BlockingPool;
use colorseam::pool::ShutdownOptions;
use common::{Gate, eventually};

const LONG: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_runs_queued_work_and_reports_it_completed() {
    let pool = BlockingPool::builder()
        .name("sd-run")
        .max_threads(1)
        .build()
        .unwrap();
    let jobs: Vec<_> = (0..5)
        .map(|i| pool.offload(move || std::thread::sleep(Duration::from_millis(5 + i))))
        .collect();
    let report = pool.shutdown(ShutdownOptions::run_queued(LONG)).await;
    assert_eq!(report.completed, 5, "{report:?}");
    assert_eq!((report.cancelled, report.abandoned), (0, 0), "{report:?}");
    for job in jobs {
        job.await.unwrap();
    }
    let refused = pool.offload(|| ()).await.unwrap_err();
    assert!(refused.is_shutdown(), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_can_cancel_queued_work_which_then_never_runs() {
    let pool = BlockingPool::builder()
        .name("sd-cancel")
        .max_threads(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let running = {
        let gate = gate.clone();
        pool.offload(move || {
            let _ = started_tx.send(());
            gate.wait(LONG);
            "finished"
        })
    };
    started_rx.await.unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let queued: Vec<_> = (0..3)
        .map(|_| {
            let ran = ran.clone();
            pool.offload(move || ran.store(true, Ordering::SeqCst))
        })
        .collect();
    let shutdown = tokio::spawn(pool.shutdown(ShutdownOptions::cancel_queued(LONG)));
    for q in queued {
        let err = q.await.unwrap_err();
        assert!(err.is_shutdown(), "{err}");
        assert_eq!(err.phase(), Some(colorseam::Phase::Queued));
    }
    gate.open();
    assert_eq!(running.await.unwrap(), "finished");
    let report = shutdown.await.unwrap();
    assert_eq!(
        (report.completed, report.cancelled, report.abandoned),
        (1, 3, 0),
        "{report:?}"
    );
    assert!(!ran.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_never_hangs_past_its_deadline_and_releases_callers_of_hung_work() {
    let pool = BlockingPool::builder()
        .name("sd-hung")
        .max_threads(2)
        .build()
        .unwrap();
    let gate = Gate::new();
    let (started_tx, mut started_rx) = tokio::sync::mpsc::channel(2);
    let hung: Vec<_> = (0..2)
        .map(|_| {
            let (gate, started_tx) = (gate.clone(), started_tx.clone());
            tokio::spawn(pool.offload(move || {
                let _ = started_tx.try_send(());
                gate.wait(LONG);
                let job = colorseam::job::current().unwrap();
                job.is_cancelled()
            }))
        })
        .collect();
    started_rx.recv().await.unwrap();
    started_rx.recv().await.unwrap();
    let started = Instant::now();
    let report = pool
        .shutdown(ShutdownOptions::run_queued(Duration::from_millis(100)))
        .await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(report.abandoned, 2, "{report:?}");
    for caller in hung {
        let err = caller.await.unwrap().unwrap_err();
        assert!(err.is_shutdown(), "{err}");
        assert_eq!(err.phase(), Some(colorseam::Phase::Running));
    }
    gate.open();
}

#[test]
fn shutdown_blocking_waits_for_running_work_then_reports() {
    let pool = BlockingPool::builder()
        .name("sd-block")
        .max_threads(2)
        .build()
        .unwrap();
    pool.detach(|| std::thread::sleep(Duration::from_millis(50)))
        .unwrap();
    let report = pool.shutdown_blocking(ShutdownOptions::run_queued(LONG));
    assert_eq!(report.completed, 1, "{report:?}");
    assert!(report.elapsed < LONG);
    // Threads exit once the work is settled.
    assert!(eventually(LONG, || pool.metrics().threads.total == 0));
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_a_pool_with_hung_work_inside_a_current_thread_runtime_returns_at_once() {
    let pool = BlockingPool::builder()
        .name("sd-drop-ct")
        .max_threads(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let hung = pool.offload(move || g.wait(LONG));
    let queued = pool.offload(|| "still runs");
    let started = Instant::now();
    drop(pool);
    assert!(started.elapsed() < Duration::from_millis(500));
    gate.open();
    hung.await.unwrap();
    assert_eq!(
        queued.await.unwrap(),
        "still runs",
        "queued work is run after the drop"
    );
}

#[test]
fn dropping_a_pool_from_a_plain_thread_and_from_a_pool_thread_never_blocks() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let outer = BlockingPool::builder().name("sd-outer").build().unwrap();
    let inner = BlockingPool::builder().name("sd-inner").build().unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let hung = inner.offload(move || g.wait(LONG));
    // The last handle of `inner` is dropped on one of `outer`'s threads.
    let dropped_in = rt
        .block_on(outer.offload(move || {
            let started = Instant::now();
            drop(inner);
            started.elapsed()
        }))
        .unwrap();
    assert!(dropped_in < Duration::from_millis(500));
    let started = Instant::now();
    drop(outer);
    assert!(started.elapsed() < Duration::from_millis(500));
    gate.open();
    rt.block_on(hung).unwrap();
}
