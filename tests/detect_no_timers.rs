//! Detection on a runtime built without timers (and so with no way to ask
//! tokio whether it has them): the watchdog and the lag monitor use no
//! tokio timer, so they work there, and nothing panics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use colorseam::detect::{LagMonitor, StallReport, StallState, Watchdog};

/// Panics anywhere in this test binary, counted by a hook installed once.
static PANICS: AtomicU64 = AtomicU64::new(0);

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

fn no_timers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Runs the runtime, idle, until a plain thread says `time` has passed.
fn drive(rt: &tokio::runtime::Runtime, time: Duration) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        std::thread::sleep(time);
        let _ = tx.send(());
    });
    rt.block_on(rx).unwrap();
}

#[test]
fn the_watchdog_reports_an_uninstrumented_stall_on_a_runtime_without_timers() {
    count_panics();
    let rt = no_timers();
    let seen: Arc<Mutex<Vec<StallReport>>> = Arc::default();
    let s = seen.clone();
    let watchdog = Watchdog::builder()
        .threshold(Duration::from_millis(100))
        .on_report(move |report| s.lock().unwrap().push(report.clone()))
        .install(rt.handle())
        .unwrap();
    drive(&rt, Duration::from_millis(50));
    rt.block_on(async {
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(600)); // uninstrumented
        tokio::task::yield_now().await;
    });
    drive(&rt, Duration::from_millis(300));
    let seen = seen.lock().unwrap().clone();
    let first = seen.first().expect("the stall is reported");
    assert_eq!(first.state, StallState::Ongoing);
    assert!(first.task.is_none());
    let end = seen
        .iter()
        .find(|r| r.state == StallState::Ended)
        .expect("and its end");
    assert_eq!(end.stall, first.stall);
    assert!(end.stalled_for >= Duration::from_millis(500), "{end}");
    assert_eq!(watchdog.stalls(), 1, "{seen:#?}");
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "nothing panicked");
}

#[test]
fn the_lag_monitor_measures_a_runtime_without_timers() {
    count_panics();
    let rt = no_timers();
    let lag = LagMonitor::start(rt.handle(), Duration::from_millis(2)).unwrap();
    drive(&rt, Duration::from_millis(200));
    let healthy = lag.snapshot();
    assert!(healthy.count >= 10, "{healthy:?}");
    rt.block_on(async {
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(300));
        tokio::task::yield_now().await;
    });
    drive(&rt, Duration::from_millis(20));
    let blocked = lag.snapshot();
    assert!(blocked.max >= Duration::from_millis(250), "{blocked:?}");
    assert!(healthy.max < Duration::from_millis(250), "{healthy:?}");
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "nothing panicked");
}

#[test]
fn the_lag_monitor_measures_real_time_under_a_paused_clock() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let lag = LagMonitor::start(rt.handle(), Duration::from_millis(2)).unwrap();
    drive(&rt, Duration::from_millis(100));
    rt.block_on(async {
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(300));
        tokio::task::yield_now().await;
    });
    drive(&rt, Duration::from_millis(20));
    let snapshot = lag.snapshot();
    assert!(snapshot.count >= 5, "{snapshot:?}");
    assert!(snapshot.max >= Duration::from_millis(250), "{snapshot:?}");
}
