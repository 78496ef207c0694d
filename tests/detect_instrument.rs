//! `instrument` times every poll, counts slow ones and reports them with
//! the task's name and call site; `LagMonitor` measures scheduler lag.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use colorseam::detect::{LagMonitor, instrument, set_slow_poll_hook};

#[tokio::test(flavor = "current_thread")]
async fn slow_polls_are_counted_and_reported_with_name_and_call_site() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    assert!(set_slow_poll_hook(move |name, location, took| {
        s.lock()
            .unwrap()
            .push((name.to_owned(), location.line(), took));
    }));
    let line = line!() + 1;
    let task = instrument(
        async {
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(30)); // one slow poll
            tokio::task::yield_now().await;
        },
        "reindex",
    )
    .slow_poll_threshold(Duration::from_millis(20));
    let mut task = Box::pin(task);
    (&mut task).await;
    let stats = task.stats();
    assert_eq!(stats.polls, 3);
    assert_eq!(stats.slow_polls, 1);
    assert!(stats.max_poll >= Duration::from_millis(30));
    assert!(stats.busy >= stats.max_poll);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, "reindex");
    assert_eq!(seen[0].1, line);
    assert!(seen[0].2 >= Duration::from_millis(30));
}

#[test]
fn the_lag_monitor_sees_a_blocked_runtime_and_not_a_healthy_one() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let healthy = rt.block_on(async {
        let lag = LagMonitor::start(&tokio::runtime::Handle::current(), Duration::from_millis(2))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        lag.snapshot()
    });
    assert!(healthy.count >= 10, "{healthy:?}");
    let blocked = rt.block_on(async {
        let lag = LagMonitor::start(&tokio::runtime::Handle::current(), Duration::from_millis(2))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        std::thread::sleep(Duration::from_millis(300));
        tokio::time::sleep(Duration::from_millis(20)).await;
        lag.snapshot()
    });
    assert!(blocked.max >= Duration::from_millis(250), "{blocked:?}");
    assert!(healthy.max < blocked.max, "{healthy:?} vs {blocked:?}");
}
