//! The watchdog reports a real stall while it is happening, naming the
//! instrumented task and its call site, then its end; and it reports
//! nothing on a healthy runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use colorseam::detect::{StallReport, StallState, Watchdog, instrument};

/// Reports as they arrive, each with whether the stall was still going on
/// (per the test's own flag) when it arrived.
type Seen = Arc<Mutex<Vec<(StallReport, bool)>>>;

fn watch(rt: &tokio::runtime::Runtime, stalling: Arc<AtomicBool>) -> (Watchdog, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let watchdog = Watchdog::builder()
        .threshold(Duration::from_millis(100))
        .on_report(move |report| {
            s.lock()
                .unwrap()
                .push((report.clone(), stalling.load(Ordering::SeqCst)));
        })
        .install(rt.handle())
        .unwrap();
    (watchdog, seen)
}

fn stall_in_instrumented_task(rt: &tokio::runtime::Runtime, stalling: &Arc<AtomicBool>) -> u32 {
    let flag = stalling.clone();
    let line = line!() + 2;
    rt.block_on(async move {
        tokio::spawn(instrument(
            async move {
                flag.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(800)); // the bug
                flag.store(false, Ordering::SeqCst);
            },
            "nightly-export",
        ))
        .await
        .unwrap();
    });
    line
}

fn check_reports(seen: &Seen, line: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && !seen
            .lock()
            .unwrap()
            .iter()
            .any(|(r, _)| r.state == StallState::Ended)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let seen = seen.lock().unwrap().clone();
    let (first, during) = seen.first().expect("the stall was reported");
    assert!(*during, "reported while the stall was happening: {first}");
    assert_eq!(first.state, StallState::Ongoing);
    assert_eq!(first.task.as_deref(), Some("nightly-export"));
    let location = first.location.expect("the call site");
    assert!(location.file().ends_with("detect_watchdog.rs"));
    assert_eq!(location.line(), line);
    assert!(first.stalled_for >= Duration::from_millis(100));
    assert!(first.worker.is_some(), "names the worker thread");
    let text = first.to_string();
    assert!(text.contains("so far in task \"nightly-export\""), "{text}");
    let (end, during) = seen
        .iter()
        .find(|(r, _)| r.state == StallState::Ended)
        .expect("the end of the stall was reported");
    assert!(!*during);
    assert_eq!(end.stall, first.stall, "one stall, one id");
    assert!(end.stalled_for >= Duration::from_millis(800), "{end}");
    assert!(end.stalled_for < Duration::from_secs(5), "{end}");
}

#[test]
fn a_stall_on_a_multi_thread_runtime_is_reported_while_it_happens_with_the_task_name() {
    let rt = multi_thread_runtime();
    let stalling = Arc::new(AtomicBool::new(false));
    let (_watchdog, seen) = watch(&rt, stalling.clone());
    let line = stall_in_instrumented_task(&rt, &stalling);
    check_reports(&seen, line);
}

#[test]
fn a_stall_on_a_current_thread_runtime_is_reported_while_it_happens_with_the_task_name() {
    let rt = current_thread_runtime();
    let stalling = Arc::new(AtomicBool::new(false));
    let (_watchdog, seen) = watch(&rt, stalling.clone());
    let line = stall_in_instrumented_task(&rt, &stalling);
    check_reports(&seen, line);
}

#[test]
fn an_uninstrumented_stall_of_a_current_thread_runtime_is_still_reported() {
    let rt = current_thread_runtime();
    let stalling = Arc::new(AtomicBool::new(false));
    let (_watchdog, seen) = watch(&rt, stalling.clone());
    let flag = stalling.clone();
    rt.block_on(async move {
        tokio::time::sleep(Duration::from_millis(50)).await; // let the heartbeat start
        flag.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(700));
        flag.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await; // let it see the end
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && seen.lock().unwrap().len() < 2 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let seen = seen.lock().unwrap().clone();
    let (first, during) = seen.first().expect("reported");
    assert!(*during, "{first}");
    assert!(first.task.is_none());
    assert!(first.to_string().contains("uninstrumented"), "{first}");
}

#[test]
fn a_healthy_runtime_gets_no_report() {
    let rt = multi_thread_runtime();
    let stalling = Arc::new(AtomicBool::new(false));
    let (watchdog, seen) = watch(&rt, stalling);
    rt.block_on(async {
        // The same wall time as the stall tests, spent on well-behaved work.
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                tokio::spawn(instrument(
                    async move {
                        for _ in 0..20 {
                            tokio::time::sleep(Duration::from_millis(20 + i % 7)).await;
                            tokio::task::yield_now().await;
                        }
                    },
                    format!("healthy-{i}"),
                ))
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let seen = seen.lock().unwrap();
    assert!(seen.is_empty(), "{:?}", seen.first());
    assert_eq!(watchdog.reports(), 0);
    assert_eq!(watchdog.stalls(), 0);
}

#[test]
fn a_poll_that_panicked_leaves_no_stall_behind() {
    let rt = current_thread_runtime();
    let stalling = Arc::new(AtomicBool::new(false));
    let (watchdog, seen) = watch(&rt, stalling);
    rt.block_on(async {
        // `resume_unwind` skips the panic hook, whose backtrace could
        // itself take longer than the threshold inside the poll.
        let panicked = tokio::spawn(instrument(
            async { std::panic::resume_unwind(Box::new("the task's own bug")) },
            "panics-once",
        ))
        .await;
        assert!(panicked.unwrap_err().is_panic());
        // The worker thread carries on, healthy, for several thresholds:
        // a mark left behind by the panicking poll would read as a stall.
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
    let seen = seen.lock().unwrap();
    assert!(seen.is_empty(), "{:?}", seen.first());
    assert_eq!(watchdog.stalls(), 0);
}

fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
