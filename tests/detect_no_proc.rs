//! Where `/proc` cannot be read, stall reports stay as they were: no
//! wait, nothing guessed, nothing panics. (Its own test binary: the
//! override that hides `/proc` is process-wide.)

use std::sync::Mutex;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use colorseam::detect::{StallState, Watchdog, instrument, override_proc_root};

#[test]
fn without_proc_a_stall_is_reported_as_before_with_no_wait() {
    // A directory with nothing of `/proc` in it.
    let empty = std::env::temp_dir().join(format!("colorseam-no-proc-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("a temp dir");
    override_proc_root(Some(empty.clone()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    let _watchdog = Watchdog::builder()
        .threshold(Duration::from_millis(50))
        .on_report(move |r| {
            let _ = tx.lock().unwrap().send(r.clone());
        })
        .install(rt.handle())
        .expect("the watchdog starts");
    rt.block_on(async {
        tokio::spawn(instrument(
            async { std::thread::sleep(Duration::from_millis(400)) },
            "no-proc",
        ))
        .await
        .expect("the task ends");
    });
    let start = Instant::now();
    let mut ongoing = Vec::new();
    while start.elapsed() < Duration::from_secs(20) {
        let Ok(report) = rx.recv_timeout(Duration::from_millis(50)) else {
            continue;
        };
        if report.state == StallState::Ended {
            break;
        }
        ongoing.push(report);
    }
    // A stuck pool call is listed, with nothing said of its wait.
    let pool = colorseam::BlockingPool::builder()
        .name("no-proc-pool")
        .build()
        .expect("a pool");
    let (tx, rx) = channel::<()>();
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    // Given up on once it runs (its future dropped), so it is stuck however
    // long it waited in the queue on a loaded machine.
    rt.block_on(async {
        let call = pool.offload(move || {
            let _ = started_tx.send(());
            let _ = rx.recv_timeout(Duration::from_secs(20));
        });
        tokio::select! {
            result = call => panic!("the call ended first: {result:?}"),
            _ = started => {}
        }
    });
    let stuck = pool.stuck_calls();
    drop(tx);
    override_proc_root(None);
    assert_eq!(stuck.len(), 1, "{stuck:?}");
    assert_eq!(stuck[0].wait, None, "{}", stuck[0]);
    assert!(!stuck[0].to_string().contains("blocked"), "{}", stuck[0]);
    assert!(!ongoing.is_empty(), "the stall was reported");
    for report in &ongoing {
        assert_eq!(report.wait, None, "{report}");
        let line = report.to_string();
        assert!(
            line.ends_with(&format!(
                "in task \"no-proc\" at {}",
                report.location.unwrap()
            )),
            "{line}"
        );
    }
    let _ = std::fs::remove_dir(&empty);
}
