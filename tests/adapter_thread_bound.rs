//! `ThreadBound<T>`: a resource that stays on one thread, called in
//! submission order; a hung thread makes later calls fail fast.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use colorseam::adapter::ThreadBound;
use common::{Gate, eventually_async};

const LONG: Duration = Duration::from_secs(20);

/// Neither Send nor Sync, like many C SDK handles.
struct Connection {
    log: Rc<RefCell<Vec<u32>>>,
    thread: String,
}

fn connect() -> Connection {
    Connection {
        log: Rc::new(RefCell::new(Vec::new())),
        thread: std::thread::current().name().unwrap_or("").to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_runs_on_the_one_thread_that_made_the_resource_in_submission_order() {
    let conn = ThreadBound::new("tb-order", connect).unwrap();
    let calls: Vec<_> = (0..50)
        .map(|i| {
            conn.call(move |c| {
                c.log.borrow_mut().push(i);
                (
                    c.thread.clone(),
                    std::thread::current().name().unwrap_or("").to_owned(),
                )
            })
        })
        .collect();
    for call in calls {
        let (made_on, ran_on) = call.await.unwrap();
        assert_eq!(made_on, ran_on);
        assert!(ran_on.starts_with("tb-order-"), "{ran_on}");
    }
    let log = conn.call(|c| c.log.borrow().clone()).await.unwrap();
    assert_eq!(log, (0..50).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_call_releases_its_caller_and_later_calls_fail_fast_until_it_returns() {
    let conn = ThreadBound::new("tb-hung", connect)
        .unwrap()
        .with_timeout(Duration::from_millis(50));
    let gate = Gate::new();
    let g = gate.clone();
    let started = Instant::now();
    let err = conn.call(move |_| g.wait(LONG)).await.unwrap_err();
    assert!(err.is_timeout());
    assert!(started.elapsed() < Duration::from_secs(2));

    let started = Instant::now();
    let err = conn.call(|_| ()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(500), "fails fast");
    assert!(err.is_saturated(), "{err}");
    assert_eq!(err.stuck_threads(), 1);
    assert!(err.to_string().contains("1 thread is stuck"), "{err}");
    assert!(err.to_string().contains("tb-hung"), "{err}");
    assert_eq!(
        conn.pool().metrics().outcomes.rejected,
        1,
        "refusals are counted"
    );

    gate.open();
    assert!(eventually_async(LONG, || conn.pool().metrics().threads.abandoned == 0).await);
    assert_eq!(conn.call(|c| c.log.borrow().len()).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resource_is_dropped_on_its_own_thread_when_the_adapter_goes() {
    struct Tell(std::sync::mpsc::Sender<String>);
    impl Drop for Tell {
        fn drop(&mut self) {
            let _ = self
                .0
                .send(std::thread::current().name().unwrap_or("").to_owned());
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let conn = ThreadBound::new("tb-drop", move || Tell(tx.clone())).unwrap();
    conn.call(|_| ()).await.unwrap();
    drop(conn);
    let dropped_on = tokio::task::spawn_blocking(move || rx.recv_timeout(LONG))
        .await
        .unwrap()
        .unwrap();
    assert!(dropped_on.starts_with("tb-drop-"), "{dropped_on}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_factory_that_panics_is_an_error_and_is_tried_again() {
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let a = attempts.clone();
    let conn = ThreadBound::new("tb-factory", move || {
        if a.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            panic!("first connect fails");
        }
        7u32
    })
    .unwrap();
    let err = conn.call(|n| *n).await.unwrap_err();
    assert_eq!(err.panic_message(), Some("first connect fails"));
    assert_eq!(conn.call(|n| *n).await.unwrap(), 7);
}
