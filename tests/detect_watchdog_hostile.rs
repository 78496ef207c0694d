//! The watchdog under hostile conditions: one freeze is one stall however
//! its parts are instrumented, threads that ran other executors first are
//! still watched, an idle runtime is not a stalled one, clocks may be
//! paused, and report hooks may panic, re-enter, be slow or drop the
//! watchdog itself.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use colorseam::detect::{StallReport, StallState, Watchdog, instrument};

const THRESHOLD: Duration = Duration::from_millis(100);

type Seen = Arc<Mutex<Vec<StallReport>>>;

fn watch(handle: &tokio::runtime::Handle) -> (Watchdog, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let watchdog = Watchdog::builder()
        .threshold(THRESHOLD)
        .on_report(move |report| s.lock().unwrap().push(report.clone()))
        .install(handle)
        .unwrap();
    (watchdog, seen)
}

fn reports(seen: &Seen) -> Vec<StallReport> {
    seen.lock().unwrap().clone()
}

/// Drives `rt` (idle: its only work is the heartbeat) for `time`. A
/// blocking task, not a tokio timer, so it also works with a paused clock.
///
/// A current-thread runtime is kept driven while the test waits: one that
/// nobody drives after it has run looks exactly like a blocked one (tokio
/// does not say whether anyone is in its `block_on`), as the watchdog's
/// docs say.
fn drive(rt: &tokio::runtime::Runtime, time: Duration) {
    rt.block_on(async move {
        tokio::task::spawn_blocking(move || std::thread::sleep(time))
            .await
            .unwrap();
    });
}

/// Waits, driving `rt`, until an end report arrived, then a little longer,
/// so a second (wrong) stall or end would have been seen too.
fn wait_for_end(rt: &tokio::runtime::Runtime, seen: &Seen) -> Vec<StallReport> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reports(seen).iter().any(|r| r.state == StallState::Ended) {
        assert!(
            Instant::now() < deadline,
            "no end report: {:?}",
            reports(seen)
        );
        drive(rt, Duration::from_millis(5));
    }
    drive(rt, 4 * THRESHOLD);
    reports(seen)
}

fn assert_one_stall(seen: &[StallReport]) {
    let first = seen.first().expect("reported");
    assert!(
        seen.iter().all(|r| r.stall == first.stall),
        "one freeze, one stall id: {seen:#?}"
    );
    let ends = seen.iter().filter(|r| r.state == StallState::Ended).count();
    assert_eq!(ends, 1, "one end report: {seen:#?}");
    assert_eq!(
        seen.last().map(|r| r.state),
        Some(StallState::Ended),
        "the end comes last: {seen:#?}"
    );
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn one_worker() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// An uninstrumented hiccup shorter than the threshold, then, in the same
/// poll, an instrumented stall: the worker never comes back in between.
fn hiccup_then_instrumented_stall(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(50)).await; // the heartbeat runs
        tokio::spawn(async {
            std::thread::sleep(THRESHOLD * 4 / 5); // uninstrumented
            instrument(
                async { std::thread::sleep(Duration::from_millis(800)) },
                "after-hiccup",
            )
            .await;
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
}

#[test]
fn a_hiccup_before_an_instrumented_stall_is_one_stall_on_a_current_thread_runtime() {
    let rt = current_thread();
    let (watchdog, seen) = watch(rt.handle());
    hiccup_then_instrumented_stall(&rt);
    let seen = wait_for_end(&rt, &seen);
    assert_one_stall(&seen);
    assert_eq!(watchdog.stalls(), 1, "{seen:#?}");
    assert!(
        seen.iter()
            .any(|r| r.task.as_deref() == Some("after-hiccup")),
        "the instrumented task is named: {seen:#?}"
    );
    let end = seen.last().unwrap();
    assert!(end.stalled_for >= Duration::from_millis(800), "{end}");
    assert!(end.stalled_for < Duration::from_secs(5), "{end}");
}

#[test]
fn a_hiccup_before_an_instrumented_stall_is_one_stall_on_a_one_worker_runtime() {
    let rt = one_worker();
    let (watchdog, seen) = watch(rt.handle());
    hiccup_then_instrumented_stall(&rt);
    let seen = wait_for_end(&rt, &seen);
    assert_one_stall(&seen);
    assert_eq!(watchdog.stalls(), 1, "{seen:#?}");
}

#[test]
fn an_instrumented_stall_followed_by_a_short_hiccup_is_one_stall() {
    let rt = current_thread();
    let (watchdog, seen) = watch(rt.handle());
    rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        tokio::spawn(async {
            instrument(
                async { std::thread::sleep(Duration::from_millis(600)) },
                "before-hiccup",
            )
            .await;
            std::thread::sleep(THRESHOLD * 4 / 5); // uninstrumented
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
    let seen = wait_for_end(&rt, &seen);
    assert_one_stall(&seen);
    assert_eq!(watchdog.stalls(), 1, "{seen:#?}");
    assert_eq!(seen[0].task.as_deref(), Some("before-hiccup"), "{seen:#?}");
}

#[test]
fn a_long_uninstrumented_stall_then_an_instrumented_one_share_one_id() {
    let rt = current_thread();
    let (watchdog, seen) = watch(rt.handle());
    rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        tokio::spawn(async {
            std::thread::sleep(THRESHOLD * 4); // reported as uninstrumented
            instrument(
                async { std::thread::sleep(Duration::from_millis(600)) },
                "second-half",
            )
            .await;
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
    let seen = wait_for_end(&rt, &seen);
    assert_one_stall(&seen);
    assert_eq!(watchdog.stalls(), 1, "{seen:#?}");
    assert!(
        seen[0].task.is_none(),
        "first seen uninstrumented: {seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|r| r.task.as_deref() == Some("second-half")),
        "then named: {seen:#?}"
    );
    let end = seen.last().unwrap();
    assert!(
        end.stalled_for >= Duration::from_millis(900),
        "the whole freeze: {end}"
    );
}

fn stall_named(rt: &tokio::runtime::Runtime, name: &'static str) {
    rt.block_on(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        tokio::spawn(instrument(
            async { std::thread::sleep(Duration::from_millis(500)) },
            name,
        ))
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    });
}

#[test]
fn a_thread_whose_first_instrumented_poll_ran_under_another_executor_is_still_watched() {
    std::thread::spawn(|| {
        // This thread's first instrumented poll: no tokio runtime at all.
        futures::executor::block_on(instrument(async { 1 }, "elsewhere"));
        let rt = current_thread();
        let (_watchdog, seen) = watch(rt.handle());
        stall_named(&rt, "later-on-tokio");
        let seen = wait_for_end(&rt, &seen);
        assert_eq!(
            seen[0].task.as_deref(),
            Some("later-on-tokio"),
            "named, not uninstrumented: {seen:#?}"
        );
        assert_one_stall(&seen);
    })
    .join()
    .unwrap();
}

#[test]
fn a_thread_that_drove_an_earlier_runtime_is_watched_on_the_next_one() {
    std::thread::spawn(|| {
        let first = current_thread();
        first.block_on(instrument(async { 1 }, "first-runtime"));
        drop(first);
        let rt = current_thread();
        let (_watchdog, seen) = watch(rt.handle());
        stall_named(&rt, "second-runtime");
        let seen = wait_for_end(&rt, &seen);
        assert_eq!(seen[0].task.as_deref(), Some("second-runtime"), "{seen:#?}");
    })
    .join()
    .unwrap();
}

#[test]
fn a_stall_on_another_runtime_is_not_reported() {
    let watched = current_thread();
    let (watchdog, seen) = watch(watched.handle());
    let other = current_thread();
    stall_named(&other, "not-watched");
    drive(&watched, 4 * THRESHOLD);
    assert!(reports(&seen).is_empty(), "{:#?}", reports(&seen));
    assert_eq!(watchdog.stalls(), 0);
}

#[test]
fn an_idle_current_thread_runtime_nobody_drives_is_not_reported() {
    let rt = current_thread();
    let (watchdog, seen) = watch(rt.handle());
    // Built, watched, and not driven yet: nothing runs, nothing is stuck.
    std::thread::sleep(8 * THRESHOLD);
    assert!(reports(&seen).is_empty(), "{:#?}", reports(&seen));
    // Driven, and idle, parked in its driver.
    drive(&rt, 4 * THRESHOLD);
    assert!(reports(&seen).is_empty(), "{:#?}", reports(&seen));
    assert_eq!(watchdog.stalls(), 0);
    // It is still watched once it runs.
    stall_named(&rt, "once-driven");
    let seen = wait_for_end(&rt, &seen);
    assert_eq!(seen[0].task.as_deref(), Some("once-driven"), "{seen:#?}");
}

#[test]
fn a_parked_runtime_with_a_paused_clock_is_not_reported() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let (watchdog, seen) = watch(rt.handle());
    // A blocking task in flight stops the paused clock from advancing: the
    // runtime parks, idle, for real time.
    drive(&rt, 6 * THRESHOLD);
    assert!(reports(&seen).is_empty(), "{:#?}", reports(&seen));
    assert_eq!(watchdog.stalls(), 0);
}

#[test]
fn a_busy_runtime_with_a_paused_clock_is_not_reported() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let (_watchdog, seen) = watch(rt.handle());
    let longest_gap = rt.block_on(async {
        // Never idle, so the paused clock never moves; yet every poll is
        // short. The loop also measures how long the OS kept this thread
        // from running (on a loaded machine it may), which no runtime can
        // help: a stall that long is real, one longer is not.
        let started = Instant::now();
        let mut last = started;
        let mut longest_gap = Duration::ZERO;
        while started.elapsed() < 6 * THRESHOLD {
            tokio::task::yield_now().await;
            let now = Instant::now();
            longest_gap = longest_gap.max(now - last);
            last = now;
        }
        longest_gap
    });
    drive(&rt, THRESHOLD);
    // The heartbeat is run within a turn or two of the loop after its wake.
    let allowed = 2 * longest_gap + Duration::from_millis(10);
    for report in reports(&seen) {
        assert!(
            report.stalled_for <= allowed,
            "{report} though the loop never waited more than {longest_gap:?}"
        );
    }
}

#[test]
fn a_stall_under_a_paused_clock_is_still_reported() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let (_watchdog, seen) = watch(rt.handle());
    rt.block_on(async {
        tokio::task::yield_now().await;
        std::thread::sleep(6 * THRESHOLD); // uninstrumented
        tokio::task::yield_now().await;
    });
    let seen = wait_for_end(&rt, &seen);
    assert_one_stall(&seen);
    assert!(seen[0].task.is_none());
}

#[test]
fn a_panicking_report_hook_is_contained_and_the_stall_still_ends() {
    let rt = current_thread();
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let watchdog = Watchdog::builder()
        .threshold(THRESHOLD)
        .on_report(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            std::panic::resume_unwind(Box::new("the hook is broken"));
        })
        .install(rt.handle())
        .unwrap();
    stall_named(&rt, "hook-panics");
    drive(&rt, 2 * THRESHOLD);
    // The start and the end of the stall both reached the hook.
    assert_eq!(calls.load(Ordering::SeqCst), watchdog.reports());
    assert!(watchdog.reports() >= 2);
    assert_eq!(watchdog.stalls(), 1);
    // And it keeps watching: a second stall is a second report.
    stall_named(&rt, "hook-panics-again");
    drive(&rt, 2 * THRESHOLD);
    assert_eq!(watchdog.stalls(), 2);
}

#[test]
fn a_report_hook_may_read_its_own_watchdog() {
    let rt = current_thread();
    let slot: Arc<Mutex<Option<Arc<Watchdog>>>> = Arc::default();
    let seen: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let (s, w) = (slot.clone(), seen.clone());
    let handle = rt.handle().clone();
    let watchdog = Arc::new(
        Watchdog::builder()
            .threshold(THRESHOLD)
            .on_report(move |_| {
                if let Some(watchdog) = s.lock().unwrap().as_ref() {
                    w.lock()
                        .unwrap()
                        .push((watchdog.stalls(), watchdog.reports()));
                }
                // Another watchdog, installed and dropped from the hook.
                drop(Watchdog::builder().install(&handle).unwrap());
            })
            .install(rt.handle())
            .unwrap(),
    );
    *slot.lock().unwrap() = Some(watchdog.clone());
    stall_named(&rt, "reads-itself");
    drive(&rt, 2 * THRESHOLD);
    let seen = seen.lock().unwrap().clone();
    // Each report is counted before the hook sees it.
    assert_eq!(seen[0], (1, 1), "{seen:?}");
    slot.lock().unwrap().take();
}

#[test]
fn a_slow_report_hook_delays_reports_but_not_their_figures() {
    let rt = current_thread();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let watchdog = Watchdog::builder()
        .threshold(THRESHOLD)
        .on_report(move |report| {
            s.lock().unwrap().push(report.clone());
            std::thread::sleep(Duration::from_millis(300));
        })
        .install(rt.handle())
        .unwrap();
    rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        tokio::spawn(instrument(
            async { std::thread::sleep(Duration::from_millis(800)) },
            "slow-hook",
        ))
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    });
    let seen = wait_for_end(&rt, &seen);
    assert_one_stall(&seen);
    assert_eq!(watchdog.stalls(), 1);
    let end = seen.last().unwrap();
    assert!(end.stalled_for >= Duration::from_millis(800), "{end}");
    assert!(end.stalled_for < Duration::from_millis(1500), "{end}");
}

#[test]
fn a_watchdog_dropped_from_its_own_hook_stops_reporting() {
    let rt = current_thread();
    let slot: Arc<Mutex<Option<Watchdog>>> = Arc::default();
    let after_drop = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicBool::new(false));
    let (s, a, d) = (slot.clone(), after_drop.clone(), dropped.clone());
    let watchdog = Watchdog::builder()
        .threshold(THRESHOLD)
        .on_report(move |_| {
            if d.swap(true, Ordering::SeqCst) {
                a.fetch_add(1, Ordering::SeqCst);
            }
            // Taken out first, so its `Drop` runs with no lock of ours held.
            let watchdog = s.lock().unwrap().take();
            drop(watchdog);
        })
        .install(rt.handle())
        .unwrap();
    *slot.lock().unwrap() = Some(watchdog);
    stall_named(&rt, "drops-its-watchdog");
    assert!(dropped.load(Ordering::SeqCst));
    stall_named(&rt, "unwatched-now");
    drive(&rt, 2 * THRESHOLD);
    assert_eq!(
        after_drop.load(Ordering::SeqCst),
        0,
        "no report after the drop"
    );
    assert!(slot.lock().unwrap().is_none());
}

#[test]
fn a_stall_on_a_multi_thread_runtime_under_load_is_reported_once() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (watchdog, seen) = watch(rt.handle());
    rt.block_on(async {
        let busy: Vec<_> = (0..8)
            .map(|i| {
                tokio::spawn(instrument(
                    async move {
                        for _ in 0..60 {
                            tokio::time::sleep(Duration::from_millis(5 + i % 3)).await;
                        }
                    },
                    format!("busy-{i}"),
                ))
            })
            .collect();
        tokio::spawn(instrument(
            async { std::thread::sleep(Duration::from_millis(600)) },
            "the-stall",
        ))
        .await
        .unwrap();
        for b in busy {
            b.await.unwrap();
        }
    });
    let seen = wait_for_end(&rt, &seen);
    assert_one_stall(&seen);
    assert_eq!(watchdog.stalls(), 1, "{seen:#?}");
    assert_eq!(seen[0].task.as_deref(), Some("the-stall"));
}

#[test]
fn a_watchdog_scoped_to_one_block_on_reports_nothing_after_it() {
    // The remedy the docs give for a current-thread runtime driven now and
    // then: watch it inside the `block_on`, drop the watchdog before it
    // returns.
    let rt = current_thread();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let s = seen.clone();
    rt.block_on(async move {
        let _watchdog = Watchdog::builder()
            .threshold(Duration::from_millis(50))
            .on_report(move |_| {
                s.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
            .install(&tokio::runtime::Handle::current())
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    });
    std::thread::sleep(Duration::from_millis(400)); // undriven, unwatched
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[test]
fn a_slow_instrumented_poll_off_the_runtime_workers_is_not_a_stall() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (watchdog, seen) = watch(rt.handle());
    let pool = colorseam::BlockingPool::builder()
        .name("dw-off-worker")
        .build()
        .unwrap();
    rt.block_on(async {
        // Blocking threads and pool threads are inside the runtime's context
        // but are not its workers: blocking there is what they are for.
        tokio::task::spawn_blocking(|| {
            futures::executor::block_on(instrument(
                async { std::thread::sleep(4 * THRESHOLD) },
                "in-spawn-blocking",
            ))
        })
        .await
        .unwrap();
        pool.offload(|| {
            futures::executor::block_on(instrument(
                async { std::thread::sleep(4 * THRESHOLD) },
                "in-a-pool-job",
            ))
        })
        .await
        .unwrap();
        tokio::time::sleep(THRESHOLD).await;
    });
    assert!(reports(&seen).is_empty(), "{:#?}", reports(&seen));
    assert_eq!(watchdog.stalls(), 0);
}

#[test]
fn a_stall_in_a_local_set_task_is_reported_by_name() {
    let rt = current_thread();
    let (watchdog, seen) = watch(rt.handle());
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        tokio::task::spawn_local(instrument(
            async { std::thread::sleep(Duration::from_millis(500)) },
            "local-task",
        ))
        .await
        .unwrap();
    });
    let seen = wait_for_end(&rt, &seen);
    assert_one_stall(&seen);
    assert_eq!(seen[0].task.as_deref(), Some("local-task"), "{seen:#?}");
    assert_eq!(watchdog.stalls(), 1);
}
