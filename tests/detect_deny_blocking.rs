//! `deny_blocking` fails a `#[tokio::test]` (either flavor) whose runtime's
//! workers block past a threshold, and names the system call and the peer:
//! shown on an "async" client that hides a sync `TcpStream` read.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use colorseam::detect::{FdTarget, ThreadWait, deny_blocking, instrument};

const THRESHOLD: Duration = Duration::from_millis(10);

/// A server that answers each client with one byte after `delay`.
fn slow_server(delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
    let address = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let _ = conn.write_all(b"!");
            });
        }
    });
    address
}

/// The kind of dependency the helper is for: its API is `async`, but it
/// reads the socket with std's blocking `TcpStream`.
struct SneakyClient {
    server: SocketAddr,
}

impl SneakyClient {
    async fn get(&self) -> std::io::Result<u8> {
        let mut stream = std::net::TcpStream::connect(self.server)?;
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte)?; // hidden blocking
        Ok(byte[0])
    }
}

/// The honest version, on tokio's socket.
struct HonestClient {
    server: SocketAddr,
}

impl HonestClient {
    async fn get(&self) -> std::io::Result<u8> {
        use tokio::io::AsyncReadExt;
        let mut stream = tokio::net::TcpStream::connect(self.server).await?;
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await?;
        Ok(byte[0])
    }
}

fn names_the_read_on(blocked: &colorseam::detect::HiddenBlocking, server: SocketAddr) -> bool {
    blocked.stalls.iter().any(|s| {
        matches!(
            &s.wait,
            Some(ThreadWait::Syscall(call))
                if matches!(call.name, Some("read" | "recvfrom" | "recvmsg"))
                && matches!(call.target, Some(FdTarget::Tcp { peer, .. }) if peer == server)
        )
    })
}

#[tokio::test]
async fn a_sneaky_client_fails_the_guard_on_a_current_thread_runtime_naming_the_read_and_peer() {
    let server = slow_server(Duration::from_millis(300));
    let guard = deny_blocking(THRESHOLD);
    let line = line!() - 1;
    assert_eq!(SneakyClient { server }.get().await.expect("answered"), b'!');
    let blocked = guard.finish().expect_err("the hidden read was seen");
    let text = blocked.to_string();
    eprintln!("{text}");
    assert!(text.contains(&format!("{}:{line}:", file!())), "{text}");
    if cfg!(target_os = "linux") {
        assert!(names_the_read_on(&blocked, server), "{text}");
        assert!(text.contains(&format!("-> {server}")), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sneaky_client_in_a_spawned_task_fails_the_guard_on_a_multi_thread_runtime() {
    let server = slow_server(Duration::from_millis(300));
    let guard = deny_blocking(THRESHOLD);
    let got = tokio::spawn(async move { SneakyClient { server }.get().await })
        .await
        .expect("the task ends");
    assert_eq!(got.expect("answered"), b'!');
    let blocked = guard.finish().expect_err("the hidden read was seen");
    let text = blocked.to_string();
    eprintln!("{text}");
    assert!(text.contains("in an uninstrumented task"), "{text}");
    if cfg!(target_os = "linux") {
        assert!(names_the_read_on(&blocked, server), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instrumented_sneaky_call_is_named_by_task_and_call_site() {
    let server = slow_server(Duration::from_millis(300));
    let guard = deny_blocking(THRESHOLD);
    let line = line!() + 1;
    let call = instrument(
        async move { SneakyClient { server }.get().await },
        "vendor-get",
    );
    let got = tokio::spawn(call).await.expect("the task ends");
    assert_eq!(got.expect("answered"), b'!');
    let blocked = guard.finish().expect_err("the hidden read was seen");
    let text = blocked.to_string();
    assert!(
        text.contains(&format!("in task \"vendor-get\" at {}:{line}:", file!())),
        "{text}"
    );
    if cfg!(target_os = "linux") {
        assert!(names_the_read_on(&blocked, server), "{text}");
    }
}

#[tokio::test]
async fn an_honest_client_passes_the_guard_on_a_current_thread_runtime() {
    let server = slow_server(Duration::from_millis(100));
    let guard = deny_blocking(THRESHOLD);
    assert_eq!(HonestClient { server }.get().await.expect("answered"), b'!');
    guard.finish().expect("no worker blocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_client_passes_the_guard_on_a_multi_thread_runtime() {
    let server = slow_server(Duration::from_millis(100));
    let guard = deny_blocking(THRESHOLD);
    let got = tokio::spawn(async move { HonestClient { server }.get().await })
        .await
        .expect("the task ends");
    assert_eq!(got.expect("answered"), b'!');
    guard.finish().expect("no worker blocked");
}

#[tokio::test]
#[should_panic(expected = "while blocking was denied")]
async fn the_guard_fails_the_test_when_dropped_after_hidden_blocking() {
    let _guard = deny_blocking(THRESHOLD);
    std::thread::sleep(Duration::from_millis(200));
}

#[test]
fn a_guard_dropped_while_the_test_panics_does_not_panic_again() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            let _guard = deny_blocking(THRESHOLD);
            std::thread::sleep(Duration::from_millis(200)); // blocking the guard saw
            panic!("the test's own failure");
        })
    }));
    // Had the guard panicked during the unwinding, the process would have
    // aborted; the payload is the test's own.
    let payload = outcome.expect_err("the body panicked");
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"the test's own failure")
    );
}
