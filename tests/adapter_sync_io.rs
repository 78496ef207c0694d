//! Async streams and IO used from sync code.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use colorseam::adapter::{BlockingIo, BlockingStream};

#[test]
fn a_stream_that_needs_timers_is_read_as_an_iterator() {
    let stream = futures::stream::unfold(0u32, |n| async move {
        if n == 5 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        Some((n, n + 1))
    });
    let items: Vec<u32> = BlockingStream::new(stream).map(Result::unwrap).collect();
    assert_eq!(items, vec![0, 1, 2, 3, 4]);
}

#[test]
fn a_tcp_stream_is_used_with_std_read_and_write() {
    // A tiny echo server on the bridge runtime, driven from this plain thread.
    let addr = colorseam::block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let (mut r, mut w) = socket.into_split();
            tokio::io::copy(&mut r, &mut w).await.unwrap();
        });
        addr
    })
    .unwrap();
    let stream = colorseam::block_on(tokio::net::TcpStream::connect(addr))
        .unwrap()
        .unwrap();
    let mut io = BlockingIo::new(stream);
    io.write_all(b"line one\nline two\n").unwrap();
    io.flush().unwrap();
    let mut reader = BufReader::new(io);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "line one\n");
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "line two\n");
}

#[tokio::test(flavor = "current_thread")]
async fn from_async_code_io_fails_with_a_typed_error_instead_of_a_panic() {
    let (a, _b) = tokio::io::duplex(16);
    let mut io = BlockingIo::new(a);
    let mut buf = [0u8; 1];
    let err = io.read(&mut buf).unwrap_err();
    let inner = err.get_ref().expect("carries the colorseam error");
    let inner = inner
        .downcast_ref::<colorseam::Error>()
        .expect("a colorseam::Error");
    assert!(inner.is_async_context());
    assert_eq!(inner.operation(), "read");
}
