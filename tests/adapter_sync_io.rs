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

#[test]
fn blocking_io_seeks_and_reads_lines_through_an_async_cursor() {
    use std::io::{BufRead, Read, Seek, SeekFrom};
    let mut io = colorseam::adapter::BlockingIo::new(std::io::Cursor::new(b"one\ntwo\n".to_vec()));
    let mut line = String::new();
    io.read_line(&mut line).unwrap();
    assert_eq!(line, "one\n");
    assert_eq!(io.stream_position().unwrap(), 4);
    assert_eq!(io.seek(SeekFrom::Start(0)).unwrap(), 0);
    let mut all = String::new();
    io.read_to_string(&mut all).unwrap();
    assert_eq!(all, "one\ntwo\n");
    assert_eq!(io.get_ref().position(), 8);
}

#[test]
fn blocking_io_shutdown_lets_the_peer_read_end_of_file() {
    use std::io::{Read, Write};
    let (a, b) = tokio::io::duplex(64);
    let (mut a, mut b) = (
        colorseam::adapter::BlockingIo::new(a),
        colorseam::adapter::BlockingIo::new(b),
    );
    a.write_all(b"last words").unwrap();
    a.shutdown().unwrap();
    let mut got = Vec::new();
    b.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"last words");
}

#[tokio::test]
async fn blocking_io_seek_from_async_code_is_refused_not_blocked() {
    use std::io::Seek;
    let mut io = colorseam::adapter::BlockingIo::new(std::io::Cursor::new(vec![0u8; 4]));
    let err = io.seek(std::io::SeekFrom::Start(1)).unwrap_err();
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<colorseam::Error>())
        .expect("the refusal is a colorseam error");
    assert!(inner.is_async_context(), "{inner}");
}
