//! The deadline of `block_on_timeout` is real: the sync caller is released
//! even if the future never yields, and the future is then cancelled on the
//! runtime thread that owns it.

mod common;

use std::time::{Duration, Instant};

use colorseam::Phase;
use common::Gate;

#[test]
fn a_future_that_never_yields_releases_its_caller_at_the_deadline() {
    let gate = Gate::new();
    let g = gate.clone();
    let started = Instant::now();
    let err = colorseam::block_on_timeout(
        async move {
            // Blocks inside poll: no timer inside the future could fire.
            g.wait(Duration::from_secs(20));
        },
        Duration::from_millis(50),
    )
    .unwrap_err();
    let waited = started.elapsed();
    gate.open();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(err.phase(), Some(Phase::Running));
    assert!(waited >= Duration::from_millis(50), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert_eq!(err.operation(), "block_on");
}

#[test]
fn a_future_pending_forever_is_dropped_on_the_runtime_thread_at_the_deadline() {
    struct Tell(std::sync::mpsc::Sender<String>);
    impl Drop for Tell {
        fn drop(&mut self) {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            let _ = self.0.send(name);
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let err = colorseam::block_on_timeout(
        async move {
            let _tell = Tell(tx);
            std::future::pending::<()>().await;
        },
        Duration::from_millis(30),
    )
    .unwrap_err();
    assert!(err.is_timeout());
    let dropped_on = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the future was cancelled");
    assert_eq!(dropped_on, "colorseam-bridge");
}

#[test]
fn block_on_deadline_takes_an_instant() {
    let deadline = Instant::now() + Duration::from_millis(30);
    let err = colorseam::block_on_deadline(std::future::pending::<()>(), deadline).unwrap_err();
    assert!(err.is_timeout());
    let value = colorseam::block_on_deadline(async { 3 }, Instant::now() + Duration::from_secs(5));
    assert_eq!(value.unwrap(), 3);
}

#[test]
fn an_unrepresentable_timeout_means_no_deadline() {
    let value = colorseam::block_on_timeout(
        async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            9
        },
        Duration::MAX,
    );
    assert_eq!(value.unwrap(), 9);
}
