//! A worker of a multi-thread runtime blocked in a task nobody
//! instrumented is reported while its other workers keep serving (and so
//! keep the heartbeat answered), from tokio's per-worker counts; on Linux
//! the report says what the blocked thread waits on.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use colorseam::detect::{FdTarget, StallReport, StallState, ThreadWait, Watchdog};

const LIMIT: Duration = Duration::from_secs(20);

fn silent_server() -> (SocketAddr, Sender<()>, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
    let address = listener.local_addr().expect("its address");
    let (release, released) = channel::<()>();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("the client connects");
        let _ = released.recv_timeout(LIMIT);
        let _ = conn.write_all(b"!");
    });
    (address, release, server)
}

fn blocked_on_peer(wait: &Option<ThreadWait>, server: SocketAddr) -> bool {
    matches!(
        wait,
        Some(ThreadWait::Syscall(call))
            if matches!(call.name, Some("read" | "recvfrom" | "recvmsg"))
            && matches!(call.target, Some(FdTarget::Tcp { peer, .. }) if peer == server)
    )
}

fn next_report(
    rx: &Receiver<StallReport>,
    wanted: impl Fn(&StallReport) -> bool,
) -> Option<StallReport> {
    let start = Instant::now();
    while start.elapsed() < LIMIT {
        if let Ok(report) = rx.recv_timeout(Duration::from_millis(50))
            && wanted(&report)
        {
            return Some(report);
        }
    }
    None
}

/// One worker of `workers` blocks in a sync TCP read inside a plain
/// (uninstrumented) task while the rest serve a stream of small requests.
fn blocked_worker_is_reported(workers: usize) {
    let name = format!("mt{workers}-worker");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name.clone())
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
    // The service: small requests, served all along.
    let served = Arc::new(AtomicU64::new(0));
    for _ in 0..workers {
        let served = served.clone();
        rt.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                served.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    assert!(common::eventually(LIMIT, || served.load(Ordering::Relaxed) > 50));

    let (server, release, server_thread) = silent_server();
    let blocked = rt.spawn(async move {
        let mut stream = TcpStream::connect(server).expect("connects");
        let mut byte = [0u8; 1];
        stream
            .read_exact(&mut byte)
            .expect("the server answers at last"); // the bug
    });

    let first = next_report(&rx, |r| r.state == StallState::Ongoing)
        .expect("the blocked worker was reported");
    assert_eq!(first.task, None, "{first}");
    assert!(first.worker_index.is_some_and(|i| i < workers), "{first}");
    assert!(
        first.to_string().contains("in an uninstrumented task"),
        "{first}"
    );
    // The other workers kept serving meanwhile.
    let before = served.load(Ordering::Relaxed);
    assert!(
        common::eventually(LIMIT, || served.load(Ordering::Relaxed) > before + 20),
        "the other workers stopped serving"
    );
    if cfg!(target_os = "linux") {
        // Named by what it waits on while still blocked: the first report,
        // or a follow-up (the thread may not be in the read yet at first).
        let named = if blocked_on_peer(&first.wait, server) {
            first.clone()
        } else {
            next_report(&rx, |r| {
                r.state == StallState::Ongoing
                    && r.stall == first.stall
                    && blocked_on_peer(&r.wait, server)
            })
            .unwrap_or_else(|| panic!("no report named the read; first: {first}"))
        };
        assert_eq!(named.worker.as_deref(), Some(name.as_str()), "{named}");
        assert!(
            named.to_string().contains(&format!("-> {server}")),
            "{named}"
        );
        eprintln!("{named}");
    }
    assert!(!blocked.is_finished());
    release.send(()).expect("the server waits");
    rt.block_on(blocked).expect("the task ends");
    server_thread.join().expect("the server ends");
    let end = next_report(&rx, |r| {
        r.state == StallState::Ended && r.stall == first.stall
    })
    .expect("the stall's end was reported");
    assert!(end.stalled_for >= Duration::from_millis(50), "{end}");
}

#[test]
fn a_blocked_worker_of_two_is_reported_while_the_other_serves() {
    blocked_worker_is_reported(2);
}

#[test]
fn a_blocked_worker_of_four_is_reported_while_the_others_serve() {
    blocked_worker_is_reported(4);
}

#[test]
fn a_busy_but_healthy_multi_thread_runtime_reports_nothing() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a runtime");
    let reports = Arc::new(Mutex::new(Vec::new()));
    let seen = reports.clone();
    let watchdog = Watchdog::builder()
        .threshold(Duration::from_millis(200))
        .on_report(move |r| seen.lock().unwrap().push(r.to_string()))
        .install(rt.handle())
        .expect("the watchdog starts");
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..16 {
            tasks.push(tokio::spawn(async {
                for _ in 0..300 {
                    tokio::task::yield_now().await;
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
            }));
        }
        for task in tasks {
            task.await.expect("the task ends");
        }
    });
    drop(watchdog);
    assert!(
        reports.lock().unwrap().is_empty(),
        "{:?}",
        reports.lock().unwrap()
    );
}
