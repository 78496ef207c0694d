//! Stuck pool threads are listed call by call: pool, call site, time stuck
//! and what the thread waits on, in `stuck_calls()`, `metrics()` and the
//! error that says threads are stuck.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{Sender, channel};
use std::time::Duration;

use colorseam::BlockingPool;
use colorseam::detect::{FdTarget, ThreadWait};
use common::eventually;

const LIMIT: Duration = Duration::from_secs(20);

/// A server that accepts one client and answers only when told to.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_thread_stuck_on_a_socket_in_an_abandoned_call_is_listed_with_its_peer() {
    let pool = BlockingPool::builder()
        .name("legacy-db")
        .max_threads(1)
        .max_abandoned(0)
        .queue_capacity(1)
        .build()
        .expect("a pool");
    let (server, release, server_thread) = silent_server();
    let line = line!() + 2;
    let err = pool
        .offload_timeout(
            move || {
                let mut stream = TcpStream::connect(server).expect("connects");
                let mut byte = [0u8; 1];
                let _ = stream.read_exact(&mut byte); // hangs: the server is silent
            },
            Duration::from_millis(50),
        )
        .await
        .expect_err("the call times out");
    assert!(err.is_timeout(), "{err}");

    // Listed while the thread is still stuck, once it is in the read.
    if cfg!(target_os = "linux") {
        assert!(
            eventually(LIMIT, || pool
                .stuck_calls()
                .iter()
                .any(|c| blocked_on_peer(&c.wait, server))),
            "{:?}",
            pool.stuck_calls()
        );
    }
    let stuck = pool.stuck_calls();
    assert_eq!(stuck.len(), 1, "{stuck:?}");
    let call = &stuck[0];
    assert_eq!(call.pool, "legacy-db");
    assert_eq!(call.location.file(), file!());
    assert_eq!(call.location.line(), line);
    assert!(call.stuck_for >= Duration::from_millis(50), "{call}");
    assert!(
        call.thread
            .as_deref()
            .is_some_and(|t| t.starts_with("legacy-db")),
        "{call:?}"
    );

    // The same in the metrics snapshot.
    let metrics = pool.metrics();
    assert_eq!(metrics.threads.abandoned, 1);
    assert_eq!(metrics.stuck_calls.len(), 1);
    assert_eq!(metrics.stuck_calls[0].location, call.location);

    // And in the refusal that says a thread is stuck, by name and peer
    // (the queue's one slot filled first).
    let queued = pool.offload(|| "queued");
    let refused = pool.try_offload(|| ()).await.expect_err("no room");
    assert!(refused.is_saturated(), "{refused}");
    assert_eq!(refused.stuck_threads(), 1);
    assert_eq!(refused.stuck_calls().len(), 1);
    let text = refused.to_string();
    eprintln!("{text}");
    assert!(
        text.contains(&format!(
            "1 thread is stuck in an abandoned call: call at {}",
            call.location
        )),
        "{text}"
    );
    if cfg!(target_os = "linux") {
        assert!(
            blocked_on_peer(&refused.stuck_calls()[0].wait, server),
            "{text}"
        );
        assert!(text.contains(&format!("-> {server})")), "{text}");
    }

    // Once the call returns, nothing is stuck.
    release.send(()).expect("the server waits");
    server_thread.join().expect("the server ends");
    assert_eq!(
        queued.await.expect("runs once the thread is back"),
        "queued"
    );
    assert!(eventually(LIMIT, || pool.stuck_calls().is_empty()));
    assert!(pool.metrics().stuck_calls.is_empty());
}

#[tokio::test]
async fn a_healthy_pool_lists_no_stuck_calls() {
    let pool = BlockingPool::builder()
        .name("healthy")
        .build()
        .expect("a pool");
    assert_eq!(pool.offload(|| 7).await.expect("runs"), 7);
    assert!(pool.stuck_calls().is_empty());
    assert!(pool.metrics().stuck_calls.is_empty());
}
