//! Interrupters against real resources: a TCP read from a server that never
//! answers, a UDP `recv`, a unix stream, a listener's `accept`, a child
//! process, and a SQLite query behind `ThreadBound` and `ForAsync`.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use colorseam::BlockingPool;
use colorseam::adapter::{ForAsync, ThreadBound};
use colorseam::interrupt::{self, SharedChild};
use colorseam::job;
use common::eventually_async;

const LONG: Duration = Duration::from_secs(20);

fn pool(name: &str) -> BlockingPool {
    BlockingPool::builder()
        .name(name)
        .max_threads(2)
        .build()
        .unwrap()
}

/// Runs `job` with a `timeout` on `pool` and returns the error and how long
/// after the deadline the job itself returned (it sends the instant).
async fn time_to_return(
    pool: &BlockingPool,
    timeout: Duration,
    job: impl FnOnce(mpsc::Sender<Instant>) + Send + 'static,
) -> (colorseam::Error, Duration) {
    let (tx, rx) = mpsc::channel();
    let called = Instant::now();
    let err = pool
        .offload_timeout(move || job(tx), timeout)
        .await
        .unwrap_err();
    let returned = tokio::task::spawn_blocking(move || rx.recv_timeout(LONG))
        .await
        .unwrap()
        .expect("the interrupted job returned");
    (err, returned.saturating_duration_since(called + timeout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_read_from_a_server_that_never_answers_returns_at_the_deadline() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let pool = pool("res-tcp");
    let mut lags = Vec::new();
    for _ in 0..5 {
        let (err, after_deadline) =
            time_to_return(&pool, Duration::from_millis(100), move |done| {
                let mut stream = TcpStream::connect(addr).unwrap();
                let _guard = job::current()
                    .expect("a pool thread")
                    .on_cancel(interrupt::shutdown_tcp(&stream).unwrap());
                let read = stream.read(&mut [0; 64]);
                assert_eq!(read.unwrap(), 0, "a shut-down stream reads its end");
                done.send(Instant::now()).unwrap();
            })
            .await;
        assert!(err.is_timeout() && err.interrupt_sent(), "{err}");
        lags.push(after_deadline);
        assert!(
            eventually_async(LONG, || pool.metrics().threads.abandoned == 0).await,
            "the abandoned count goes back to 0"
        );
    }
    println!("tcp: job returned {lags:?} after its deadline");
    let worst = lags.iter().max().unwrap();
    assert!(*worst < Duration::from_secs(1), "{lags:?}");
    let m = pool.metrics();
    assert_eq!((m.interrupts.sent, m.interrupts.recovered), (5, 5));
    drop(server);
}

#[tokio::test]
async fn a_udp_recv_is_woken() {
    let pool = pool("res-udp");
    let (err, after_deadline) = time_to_return(&pool, Duration::from_millis(50), |done| {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let guard = job::current()
            .expect("a pool thread")
            .on_cancel(interrupt::wake_udp(&socket).unwrap());
        let received = socket.recv(&mut [0; 64]);
        assert!(guard.fired(), "woken by the interrupter: {received:?}");
        done.send(Instant::now()).unwrap();
    })
    .await;
    assert!(err.is_timeout() && err.interrupt_sent(), "{err}");
    assert!(
        after_deadline < Duration::from_secs(1),
        "{after_deadline:?}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_unix_stream_read_is_woken() {
    let pool = pool("res-unix");
    let (err, after_deadline) = time_to_return(&pool, Duration::from_millis(50), |done| {
        let (mut ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let _guard = job::current()
            .expect("a pool thread")
            .on_cancel(interrupt::shutdown_unix(&ours).unwrap());
        assert_eq!(ours.read(&mut [0; 64]).unwrap(), 0);
        done.send(Instant::now()).unwrap();
    })
    .await;
    assert!(err.is_timeout() && err.interrupt_sent(), "{err}");
    assert!(
        after_deadline < Duration::from_secs(1),
        "{after_deadline:?}"
    );
}

#[tokio::test]
async fn a_tcp_accept_is_woken() {
    let pool = pool("res-accept");
    let (err, after_deadline) = time_to_return(&pool, Duration::from_millis(50), |done| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let guard = job::current()
            .expect("a pool thread")
            .on_cancel(interrupt::wake_tcp_listener(&listener).unwrap());
        let accepted = listener.accept();
        assert!(guard.fired(), "woken by the interrupter: {accepted:?}");
        done.send(Instant::now()).unwrap();
    })
    .await;
    assert!(err.is_timeout() && err.interrupt_sent(), "{err}");
    assert!(
        after_deadline < Duration::from_secs(1),
        "{after_deadline:?}"
    );
}

/// The state letter of a process in `/proc/<pid>/stat`, or `None` once it
/// is gone (reaped).
#[cfg(target_os = "linux")]
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

#[cfg(unix)]
#[tokio::test]
async fn a_child_running_sleep_30_is_killed_at_the_deadline_and_reaped() {
    let pool = pool("res-child");
    let (pid_tx, pid_rx) = mpsc::channel();
    let (err, after_deadline) = time_to_return(&pool, Duration::from_millis(100), move |done| {
        let child = SharedChild::spawn(std::process::Command::new("sleep").arg("30")).unwrap();
        pid_tx.send(child.id()).unwrap();
        let _guard = job::current()
            .expect("a pool thread")
            .on_cancel(child.interrupter());
        let status = child.wait().unwrap();
        assert!(!status.success(), "killed: {status:?}");
        done.send(Instant::now()).unwrap();
    })
    .await;
    assert!(err.is_timeout() && err.interrupt_sent(), "{err}");
    println!("child: job returned {after_deadline:?} after its deadline");
    assert!(
        after_deadline < Duration::from_secs(1),
        "{after_deadline:?}"
    );
    let pid = pid_rx.recv().unwrap();
    #[cfg(target_os = "linux")]
    {
        let state = process_state(pid);
        assert!(
            state.is_none() || state != Some('Z'),
            "no zombie left: /proc/{pid} says {state:?}"
        );
        assert_eq!(state, None, "reaped: /proc/{pid} is gone");
    }
    let _ = pid;
    assert!(eventually_async(LONG, || pool.metrics().threads.abandoned == 0).await);
}

#[cfg(unix)]
#[test]
fn a_shared_child_that_exits_by_itself_is_reaped_by_wait() {
    let child = SharedChild::spawn(&mut std::process::Command::new("true")).unwrap();
    let started = Instant::now();
    assert!(child.wait().unwrap().success());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        child.try_wait().unwrap().is_some(),
        "the status stays known"
    );
    #[cfg(target_os = "linux")]
    assert_eq!(process_state(child.id()), None, "reaped");
}

/// A query that would run for minutes.
const ENDLESS: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000000) SELECT count(*) FROM c";

fn sqlite_interrupter(conn: &rusqlite::Connection) -> impl FnOnce() + Send + 'static + use<> {
    let handle = conn.get_interrupt_handle();
    move || handle.interrupt()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_query_behind_thread_bound_stops_at_its_deadline_and_the_next_call_is_served() {
    let db = ThreadBound::builder("res-sqlite", || {
        rusqlite::Connection::open_in_memory().unwrap()
    })
    .default_timeout(Duration::from_millis(200))
    .interrupt_with(sqlite_interrupter)
    .build()
    .unwrap();
    // The first call makes the connection.
    assert_eq!(
        db.call(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
            .await
            .unwrap()
            .unwrap(),
        1
    );
    let (tx, rx) = mpsc::channel();
    let called = Instant::now();
    let err = db
        .call(move |c| {
            let outcome = c.query_row(ENDLESS, [], |r| r.get::<_, i64>(0));
            let _ = tx.send((Instant::now(), outcome.map_err(|e| e.to_string())));
        })
        .await
        .unwrap_err();
    let released = called.elapsed();
    assert!(err.is_timeout() && err.interrupt_sent(), "{err}");
    let next = Instant::now();
    let one = db
        .call(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
        .await
        .unwrap()
        .unwrap();
    let next_took = next.elapsed();
    assert_eq!(one, 1);
    let (returned, outcome) = tokio::task::spawn_blocking(move || rx.recv_timeout(LONG))
        .await
        .unwrap()
        .expect("the interrupted query returned");
    let outcome = outcome.unwrap_err();
    assert!(outcome.contains("interrupt"), "{outcome}");
    let stopped_after = returned.saturating_duration_since(called + Duration::from_millis(200));
    println!(
        "sqlite: released after {released:?}, query stopped {stopped_after:?} after the deadline, next call served in {next_took:?}"
    );
    assert!(stopped_after < Duration::from_secs(1), "{stopped_after:?}");
    assert!(next_took < Duration::from_secs(1), "{next_took:?}");
    // The interrupted thread is gone: nothing stays stuck.
    assert!(
        eventually_async(LONG, || common::os_threads_named("res-sqlite").eq(&1)).await,
        "only the fresh thread is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_connection_behind_for_async_is_interrupted_and_serves_again() {
    // `Connection` is `Send` but not `Sync`: a `Mutex` makes it shareable,
    // and the interrupter reaches through it by its handle, made per call.
    let db = ForAsync::builder("res-sqlite-fa")
        .max_threads(1)
        .default_timeout(Duration::from_millis(100))
        .interrupt_with(|conn: &std::sync::Mutex<rusqlite::Connection>| {
            let handle = conn.lock().unwrap().get_interrupt_handle();
            move || handle.interrupt()
        })
        .build(std::sync::Mutex::new(
            rusqlite::Connection::open_in_memory().unwrap(),
        ))
        .unwrap();
    let err = db
        .call(|conn| {
            conn.lock()
                .unwrap()
                .query_row(ENDLESS, [], |r| r.get::<_, i64>(0))
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_err();
    assert!(err.is_timeout() && err.interrupt_sent(), "{err}");
    assert!(eventually_async(LONG, || db.pool().metrics().interrupts.recovered == 1).await);
    // The same connection, not interrupted again: the interrupter was for
    // the call that was abandoned only.
    for _ in 0..20 {
        let one = db
            .call(|conn| {
                conn.lock()
                    .unwrap()
                    .query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(one, 1);
    }
}

/// A `ThreadBound` call that makes a reentrant call (refused) and then
/// blocks: its interrupter, and one it registered itself, both run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_bound_call_that_reenters_its_adapter_is_still_interrupted() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let conn = Arc::new(
        ThreadBound::builder("res-reenter", move || TcpStream::connect(addr).unwrap())
            .default_timeout(Duration::from_millis(100))
            .interrupt_with(|s: &TcpStream| interrupt::shutdown_tcp(s).unwrap())
            .build()
            .unwrap(),
    );
    let own_ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (c, o, seen) = (conn.clone(), own_ran.clone(), own_ran.clone());
    let err = conn
        .call(move |stream| {
            let again = colorseam::block_on(c.call(|_| ())).unwrap();
            assert!(again.unwrap_err().is_reentrant());
            let own = job::current().expect("a pool thread").on_cancel(move || {
                o.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            let read = stream.read(&mut [0; 16]).map_err(|e| e.to_string());
            // The adapter's interrupter may end the read before this one
            // ran, and a guard dropped first would rightly stop it: keep
            // the guard until it ran (or a long while passed).
            let until = std::time::Instant::now() + LONG;
            while !seen.load(std::sync::atomic::Ordering::SeqCst)
                && std::time::Instant::now() < until
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(own);
            read
        })
        .await
        .unwrap_err();
    assert!(err.is_timeout() && err.interrupt_sent(), "{err}");
    assert!(eventually_async(LONG, || own_ran.load(std::sync::atomic::Ordering::SeqCst)).await);
    assert!(
        eventually_async(LONG, || common::os_threads_named("res-reenter").eq(&0)).await,
        "the interrupted thread ends: its generation was retired"
    );
    // A fresh thread, a fresh stream: the shut-down one is never reused.
    let fresh = conn
        .call(|stream| {
            stream.set_nonblocking(true).unwrap();
            stream.read(&mut [0; 16]).map_err(|e| e.kind())
        })
        .await
        .unwrap();
    assert_eq!(
        fresh,
        Err(std::io::ErrorKind::WouldBlock),
        "a live stream, not a shut-down one"
    );
    drop(server);
}
