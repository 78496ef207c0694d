//! A stall report says what the stuck worker is waiting on, while it is
//! stuck: the system call by name, the socket's peer, the FIFO's path, or
//! that it is running on a CPU. Linux only (elsewhere `wait` is `None`).
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use colorseam::detect::{FdTarget, StallReport, StallState, ThreadWait, Watchdog, instrument};

const LIMIT: Duration = Duration::from_secs(20);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn watch(rt: &tokio::runtime::Runtime) -> (Watchdog, Receiver<StallReport>) {
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    let watchdog = Watchdog::builder()
        .threshold(Duration::from_millis(50))
        .on_report(move |report| {
            let _ = tx.lock().unwrap().send(report.clone());
        })
        .install(rt.handle())
        .expect("the watchdog starts");
    (watchdog, rx)
}

/// The first ongoing report whose wait satisfies `wanted`, within LIMIT;
/// panics with every report seen if none does.
fn report_where(rx: &Receiver<StallReport>, wanted: impl Fn(&ThreadWait) -> bool) -> StallReport {
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < LIMIT {
        let Ok(report) = rx.recv_timeout(Duration::from_millis(50)) else {
            continue;
        };
        if report.state == StallState::Ongoing && report.wait.as_ref().is_some_and(&wanted) {
            return report;
        }
        seen.push(report.to_string());
    }
    panic!("no report with the expected wait; saw {seen:#?}");
}

fn syscall_name(wait: &ThreadWait) -> Option<&'static str> {
    match wait {
        ThreadWait::Syscall(call) => call.name,
        _ => None,
    }
}

/// A server that accepts and then never answers until `release` is sent a
/// byte to write.
fn silent_server() -> (
    SocketAddr,
    std::sync::mpsc::Sender<()>,
    std::thread::JoinHandle<()>,
) {
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

#[test]
fn a_worker_blocked_in_a_tcp_read_is_reported_in_read_on_tcp_to_the_server_while_blocked() {
    let rt = runtime();
    let (_watchdog, rx) = watch(&rt);
    let (server, release, server_thread) = silent_server();
    let task = rt.spawn(instrument(
        async move {
            let mut stream = TcpStream::connect(server).expect("connects");
            let mut byte = [0u8; 1];
            stream
                .read_exact(&mut byte)
                .expect("the server answers at last"); // the bug
            byte[0]
        },
        "db-query",
    ));
    let report = report_where(&rx, |w| {
        matches!(syscall_name(w), Some("read" | "recvfrom" | "recvmsg"))
    });
    let Some(ThreadWait::Syscall(call)) = &report.wait else {
        unreachable!("matched above");
    };
    match &call.target {
        Some(FdTarget::Tcp { peer, state, .. }) => {
            assert_eq!(*peer, server, "{report}");
            assert_eq!(*state, "established", "{report}");
        }
        other => panic!("not a tcp socket: {other:?} in {report}"),
    }
    assert_eq!(report.task.as_deref(), Some("db-query"));
    let line = report.to_string();
    eprintln!("{line}");
    assert!(line.contains(&format!("-> {server}")), "{line}");
    assert!(line.contains("blocked in re"), "{line}");
    // Still blocked when reported: it ends only now.
    assert!(!task.is_finished(), "{line}");
    release.send(()).expect("the server waits");
    assert_eq!(rt.block_on(task).expect("the task ends"), b'!');
    server_thread.join().expect("the server ends");
}

#[test]
fn a_worker_in_thread_sleep_is_reported_in_a_sleep_syscall() {
    let rt = runtime();
    let (_watchdog, rx) = watch(&rt);
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let task = rt.spawn(instrument(
        async move {
            while !flag.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
            }
        },
        "sleepy",
    ));
    let report = report_where(&rx, |w| {
        matches!(syscall_name(w), Some("nanosleep" | "clock_nanosleep"))
    });
    assert!(
        report.to_string().contains("nanosleep (a sleep)"),
        "{report}"
    );
    done.store(true, Ordering::SeqCst);
    rt.block_on(task).expect("the task ends");
}

#[test]
fn a_worker_waiting_for_a_contended_std_mutex_is_reported_in_futex() {
    let rt = runtime();
    let (_watchdog, rx) = watch(&rt);
    let lock = Arc::new(Mutex::new(0u32));
    let held = lock.lock().expect("not poisoned");
    let theirs = lock.clone();
    let task = rt.spawn(instrument(
        async move {
            *theirs.lock().expect("not poisoned") += 1;
        },
        "contended",
    ));
    let report = report_where(&rx, |w| syscall_name(w) == Some("futex"));
    assert!(
        report.to_string().contains("futex (a lock or condvar)"),
        "{report}"
    );
    drop(held);
    rt.block_on(task).expect("the task ends");
    assert_eq!(*lock.lock().expect("not poisoned"), 1);
}

/// A fresh FIFO made with `mkfifo` (no libc in the tests either).
fn fifo() -> Option<PathBuf> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "colorseam-fifo-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&path);
    let made = std::process::Command::new("mkfifo").arg(&path).status();
    made.is_ok_and(|s| s.success()).then_some(path)
}

#[test]
fn a_worker_reading_a_fifo_is_reported_in_read_on_the_fifo_path() {
    let Some(path) = fifo() else {
        eprintln!("no mkfifo here: skipped");
        return;
    };
    let rt = runtime();
    let (_watchdog, rx) = watch(&rt);
    let theirs = path.clone();
    let task = rt.spawn(instrument(
        async move {
            // Opened for reading and writing so the open itself does not
            // wait for a writer: the read is what blocks.
            let mut fifo = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&theirs)
                .expect("the fifo opens");
            let mut byte = [0u8; 1];
            fifo.read_exact(&mut byte).expect("a byte comes");
            byte[0]
        },
        "fifo-reader",
    ));
    let report = report_where(&rx, |w| syscall_name(w) == Some("read"));
    let Some(ThreadWait::Syscall(call)) = &report.wait else {
        unreachable!("matched above");
    };
    assert_eq!(
        call.target,
        Some(FdTarget::Fifo { path: path.clone() }),
        "{report}"
    );
    assert!(
        report
            .to_string()
            .contains(&format!("read on fifo {}", path.display())),
        "{report}"
    );
    let mut writer = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("a reader has it open, so this does not wait");
    writer.write_all(b"x").expect("written");
    assert_eq!(rt.block_on(task).expect("the task ends"), b'x');
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_worker_spinning_on_the_cpu_is_reported_running() {
    let rt = runtime();
    let (_watchdog, rx) = watch(&rt);
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let task = rt.spawn(instrument(
        async move {
            while !flag.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        },
        "spinner",
    ));
    let report = report_where(&rx, |w| *w == ThreadWait::Running);
    assert!(report.to_string().contains("running on a cpu"), "{report}");
    done.store(true, Ordering::Relaxed);
    rt.block_on(task).expect("the task ends");
}

#[test]
fn an_ended_stall_carries_no_wait() {
    let rt = runtime();
    let (_watchdog, rx) = watch(&rt);
    rt.block_on(async {
        tokio::spawn(instrument(
            async { std::thread::sleep(Duration::from_millis(300)) },
            "short",
        ))
        .await
        .expect("the task ends");
    });
    let start = Instant::now();
    while start.elapsed() < LIMIT {
        if let Ok(report) = rx.recv_timeout(Duration::from_millis(50))
            && report.state == StallState::Ended
        {
            assert_eq!(report.wait, None, "{report}");
            assert!(!report.to_string().contains("blocked"), "{report}");
            return;
        }
    }
    panic!("the stall's end was not reported");
}
