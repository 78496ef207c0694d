//! Futures that need tokio's reactor and timers run from a plain thread,
//! with no runtime built by the caller.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn a_loopback_tcp_round_trip_runs_from_a_plain_thread() {
    let echoed = colorseam::block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await?;
            let mut buf = [0u8; 5];
            socket.read_exact(&mut buf).await?;
            socket.write_all(&buf).await?;
            Ok::<_, std::io::Error>(())
        });
        let mut client = tokio::net::TcpStream::connect(addr).await?;
        client.write_all(b"hello").await?;
        let mut buf = [0u8; 5];
        client.read_exact(&mut buf).await?;
        server.await.expect("server task")?;
        Ok::<_, std::io::Error>(buf)
    })
    .expect("block_on")
    .expect("io");
    assert_eq!(&echoed, b"hello");
}

#[test]
fn timers_fire_from_a_plain_thread() {
    let started = Instant::now();
    // Inside an async block: `tokio::time::sleep` registers with a runtime
    // when it is created, and only the block runs inside the bridge context.
    colorseam::block_on(async { tokio::time::sleep(Duration::from_millis(30)).await }).unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(30), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn many_plain_threads_can_block_on_at_once() {
    let threads: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                colorseam::block_on(async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    i
                })
                .unwrap()
            })
        })
        .collect();
    let sum: i32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(sum, (0..8).sum());
}
