//! The detection threads go away with what they watch: dropping the
//! watchdog or lag monitor, or shutting down the runtime they watch, ends
//! their OS thread (counted from /proc, so not from their own bookkeeping).
//! One test in its own binary: no other test's threads are counted.

use std::time::Duration;

use colorseam::detect::{LagMonitor, Watchdog};

mod common;
use common::{eventually, os_threads_named};

// Thread names are cut to 15 bytes in /proc.
const WATCHDOG: &str = "colorseam-watch";
const LAG: &str = "colorseam-lag";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn drive(rt: &tokio::runtime::Runtime) {
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(30)).await });
}

#[test]
fn detection_threads_end_with_their_handle_or_their_runtime() {
    let limit = Duration::from_secs(20);
    assert_eq!(os_threads_named(WATCHDOG), 0);
    assert_eq!(os_threads_named(LAG), 0);

    // Dropped handles.
    let rt = runtime();
    let watchdog = Watchdog::builder().install(rt.handle()).unwrap();
    let lag = LagMonitor::start(rt.handle(), Duration::from_millis(1)).unwrap();
    drive(&rt);
    assert_eq!(os_threads_named(WATCHDOG), 1);
    assert_eq!(os_threads_named(LAG), 1);
    drop(watchdog);
    drop(lag);
    assert!(eventually(limit, || os_threads_named(WATCHDOG) == 0));
    assert!(eventually(limit, || os_threads_named(LAG) == 0));

    // A runtime shut down under live handles.
    let watchdog = Watchdog::builder().install(rt.handle()).unwrap();
    let lag = LagMonitor::start(rt.handle(), Duration::from_millis(1)).unwrap();
    drive(&rt);
    assert_eq!(os_threads_named(WATCHDOG), 1);
    assert_eq!(os_threads_named(LAG), 1);
    drop(rt);
    assert!(eventually(limit, || os_threads_named(WATCHDOG) == 0));
    assert!(eventually(limit, || os_threads_named(LAG) == 0));
    assert_eq!(watchdog.stalls(), 0);
    drop((watchdog, lag));

    // Installed on a runtime already gone.
    let rt = runtime();
    let handle = rt.handle().clone();
    drop(rt);
    let watchdog = Watchdog::builder().install(&handle).unwrap();
    let lag = LagMonitor::start(&handle, Duration::from_millis(1)).unwrap();
    assert!(eventually(limit, || os_threads_named(WATCHDOG) == 0));
    assert!(eventually(limit, || os_threads_named(LAG) == 0));
    drop((watchdog, lag));
}
