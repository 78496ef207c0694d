//! `Unblock<T>` and `UnblockIter<I>`: blocking IO and iterators used from
//! async code with bounded buffering.

mod common;

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use colorseam::adapter::{Unblock, UnblockIter};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A reader that records the largest read it was asked for and checks it
/// runs on a pool thread.
struct Recording {
    data: io::Cursor<Vec<u8>>,
    largest_ask: Arc<Mutex<usize>>,
}

impl Read for Recording {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        assert!(
            colorseam::job::current().is_some(),
            "reads run on a pool thread"
        );
        let mut largest = self.largest_ask.lock().unwrap();
        *largest = (*largest).max(buf.len());
        Read::read(&mut self.data, buf)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_through_the_pool_in_steps_no_larger_than_the_capacity() {
    let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let largest_ask = Arc::new(Mutex::new(0));
    let reader = Recording {
        data: io::Cursor::new(data.clone()),
        largest_ask: largest_ask.clone(),
    };
    let mut unblocked = Unblock::builder().capacity(512).build(reader);
    let mut out = Vec::new();
    unblocked.read_to_end(&mut out).await.unwrap();
    assert_eq!(out, data);
    assert_eq!(*largest_ask.lock().unwrap(), 512, "bounded read-ahead");
}

/// A writer into shared memory, so the test can see what arrived when.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_buffered_up_to_the_capacity_and_flush_delivers_them() {
    let sink = Shared::default();
    let mut writer = Unblock::builder().capacity(64).build(sink.clone());
    writer.write_all(b"small").await.unwrap();
    assert!(sink.0.lock().unwrap().is_empty(), "buffered until flush");
    writer.flush().await.unwrap();
    assert_eq!(&*sink.0.lock().unwrap(), b"small");
    let big = vec![7u8; 1000];
    writer.write_all(&big).await.unwrap();
    writer.shutdown().await.unwrap();
    assert_eq!(sink.0.lock().unwrap().len(), 5 + 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_io_error_from_the_inner_value_is_returned_as_is() {
    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "peer went away",
            ))
        }
    }
    let mut r = Unblock::new(Broken);
    let mut buf = [0u8; 4];
    let err = r.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_reader_becomes_an_error_and_the_value_is_gone() {
    struct Panicky;
    impl Read for Panicky {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            panic!("driver bug");
        }
    }
    let mut r = Unblock::new(Panicky);
    let mut buf = [0u8; 4];
    let err = r.read(&mut buf).await.unwrap_err();
    let source = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<colorseam::Error>());
    assert!(source.is_some_and(colorseam::Error::is_panic), "{err}");
    assert!(r.read(&mut buf).await.is_err(), "later reads fail too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iterator_becomes_a_stream_in_bounded_steps() {
    let pulled = Arc::new(Mutex::new(Vec::new()));
    let p = pulled.clone();
    let iter = (0..1000u32).inspect(move |i| p.lock().unwrap().push(*i));
    let mut stream = Unblock::builder().capacity(100).build_iter(iter);
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first, 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        pulled.lock().unwrap().len(),
        100,
        "read ahead by one step only"
    );
    let rest: Vec<u32> = stream.map(Result::unwrap).collect().await;
    assert_eq!(rest.len(), 999);
    assert_eq!(rest.last(), Some(&999));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_iterator_yields_its_items_then_one_error_then_ends() {
    let iter = (0..10u32).map(|i| if i == 3 { panic!("bad row") } else { i });
    let items: Vec<_> = Unblock::builder()
        .capacity(2)
        .build_iter(iter)
        .collect()
        .await;
    assert_eq!(items.len(), 4, "{items:?}");
    let made: Vec<u32> = items[..3].iter().map(|i| *i.as_ref().unwrap()).collect();
    assert_eq!(made, [0, 1, 2], "items made before the panic are kept");
    assert_eq!(
        items[3].as_ref().unwrap_err().panic_message(),
        Some("bad row")
    );
}

/// A blocking duplex endpoint: reads come from a prepared buffer (each read
/// takes a moment, like a socket waiting for the peer), writes go to shared
/// memory.
struct Duplex {
    incoming: io::Cursor<Vec<u8>>,
    outgoing: Shared,
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        std::thread::sleep(Duration::from_millis(1));
        Read::read(&mut self.incoming, buf)
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_in_two_tasks_both_make_progress() {
    let incoming: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
    let outgoing = Shared::default();
    let duplex = Duplex {
        incoming: io::Cursor::new(incoming.clone()),
        outgoing: outgoing.clone(),
    };
    let (mut reader, mut writer) = tokio::io::split(Unblock::builder().capacity(64).build(duplex));
    let read = tokio::spawn(async move {
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await.map(|_| got)
    });
    let write = tokio::spawn(async move {
        for chunk in [[1u8; 64], [2u8; 64]].iter().cycle().take(64) {
            writer.write_all(chunk).await?;
        }
        writer.flush().await
    });
    let both = tokio::time::timeout(Duration::from_secs(20), async {
        (read.await.unwrap(), write.await.unwrap())
    })
    .await
    .expect("both halves finish: neither task's waker replaces the other's");
    assert_eq!(both.0.unwrap(), incoming);
    both.1.unwrap();
    assert_eq!(outgoing.0.lock().unwrap().len(), 64 * 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_into_an_empty_buffer_returns_zero_at_once_without_touching_the_reader() {
    struct Stalled(Arc<Mutex<usize>>);
    impl Read for Stalled {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            *self.0.lock().unwrap() += 1;
            std::thread::sleep(Duration::from_secs(10));
            Ok(0)
        }
    }
    let reads = Arc::new(Mutex::new(0));
    let mut r = Unblock::new(Stalled(reads.clone()));
    let n = tokio::time::timeout(Duration::from_secs(2), r.read(&mut []))
        .await
        .expect("an empty read does not wait for the reader")
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(*reads.lock().unwrap(), 0, "no step was started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_item_reaches_the_stream_as_soon_as_it_is_produced() {
    // A producer that waits for the consumer's reply to each item before it
    // makes the next: items held back until a step's capacity fills would
    // hang it.
    let (reply_tx, reply_rx) = std::sync::mpsc::channel::<u32>();
    let mut sent = 0u32;
    let iter = std::iter::from_fn(move || {
        if sent > 0 {
            let reply = reply_rx.recv_timeout(Duration::from_secs(10)).ok()?;
            assert_eq!(reply, sent - 1);
        }
        sent += 1;
        (sent <= 5).then_some(sent - 1)
    });
    let mut stream = UnblockIter::new(iter);
    for i in 0..5u32 {
        let item = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("the item arrives while its producer waits for the reply")
            .unwrap()
            .unwrap();
        assert_eq!(item, i);
        reply_tx.send(item).unwrap();
    }
    let end = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_stops_its_step_after_the_item_in_progress() {
    struct Endless {
        made: Arc<Mutex<u64>>,
        dropped: std::sync::mpsc::Sender<u64>,
    }
    impl Iterator for Endless {
        type Item = u64;
        fn next(&mut self) -> Option<u64> {
            std::thread::sleep(Duration::from_micros(200));
            let mut made = self.made.lock().unwrap();
            *made += 1;
            Some(*made)
        }
    }
    impl Drop for Endless {
        fn drop(&mut self) {
            let _ = self.dropped.send(*self.made.lock().unwrap());
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let made = Arc::new(Mutex::new(0));
    let iter = Endless {
        made: made.clone(),
        dropped: tx,
    };
    // A step may pull a million items: only the stream's going stops it.
    let mut stream = Unblock::builder().capacity(1 << 20).build_iter(iter);
    assert_eq!(stream.next().await.unwrap().unwrap(), 1);
    drop(stream);
    let made_at_drop =
        tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("the iterator is dropped soon after the stream");
    assert!(made_at_drop < 10_000, "{made_at_drop}");
}

// ---- Nesting: sync → async → sync and back ----

#[test]
fn an_unblock_read_and_written_through_blocking_io_from_a_plain_and_a_pool_thread() {
    use colorseam::adapter::BlockingIo;
    let run = || {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut io = BlockingIo::new(
            Unblock::builder()
                .capacity(100)
                .build(io::Cursor::new(data.clone())),
        );
        let mut out = Vec::new();
        io.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        let sink = Shared::default();
        let mut w = BlockingIo::new(Unblock::builder().capacity(10).build(sink.clone()));
        w.write_all(&data).unwrap();
        w.flush().unwrap();
        assert_eq!(*sink.0.lock().unwrap(), data);
    };
    run();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(colorseam::offload(run)).unwrap();
}

#[test]
fn an_unblock_iter_read_through_a_blocking_stream_from_a_plain_and_a_pool_thread() {
    use colorseam::adapter::BlockingStream;
    let run = || {
        let items: Vec<u32> =
            BlockingStream::new(Unblock::builder().capacity(7).build_iter(0..1000u32))
                .map(|item| item.unwrap().unwrap())
                .collect();
        assert_eq!(items, (0..1000).collect::<Vec<_>>());
    };
    run();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(colorseam::offload(run)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_is_not_starved_by_a_reader_that_always_has_data() {
    writer_keeps_pace_with_a_firehose_reader().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_writer_is_not_starved_by_a_reader_that_always_has_data_on_one_thread() {
    writer_keeps_pace_with_a_firehose_reader().await;
}

async fn writer_keeps_pace_with_a_firehose_reader() {
    struct Firehose(Shared);
    impl Read for Firehose {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            buf.fill(9);
            Ok(buf.len())
        }
    }
    impl Write for Firehose {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let sink = Shared::default();
    let (mut reader, mut writer) = tokio::io::split(
        Unblock::builder()
            .capacity(64)
            .build(Firehose(sink.clone())),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let read = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        let mut total = 0u64;
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            total += reader.read(&mut buf).await.unwrap() as u64;
        }
        total
    });
    let wrote = tokio::time::timeout(Duration::from_secs(10), async {
        for _ in 0..50 {
            writer.write_all(&[1u8; 64]).await.unwrap();
            writer.flush().await.unwrap();
        }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let read_total = read.await.unwrap();
    assert!(
        wrote.is_ok(),
        "the writer finished (reader read {read_total} bytes meanwhile)"
    );
    assert_eq!(sink.0.lock().unwrap().len(), 50 * 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_step_times_out_the_stream_yields_its_error_then_ends_for_good() {
    let pool = colorseam::BlockingPool::builder()
        .name("iter-deadline")
        .default_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    // An endless producer, slow after its first item: every step outlives
    // the pool's deadline.
    let slow = (0u32..).inspect(|&i| {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let mut stream = Unblock::builder()
        .pool(pool)
        .capacity(1 << 20)
        .build_iter(slow);
    let mut items = 0;
    let error = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the deadline ends the step")
        {
            Some(Ok(_)) => items += 1,
            Some(Err(e)) => break e,
            None => panic!("ended without the step's error"),
        }
    };
    assert!(error.is_timeout(), "{error}");
    assert!(items > 0, "items made before the deadline are delivered");
    assert!(stream.next().await.is_none());
    // The abandoned step must not feed the stream once it has ended.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(stream.next().await.is_none(), "nothing after the end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_readers_dropped_mid_step_leave_the_pool_idle() {
    let pool = colorseam::BlockingPool::builder()
        .name("unblock-churn")
        .max_threads(4)
        .build()
        .unwrap();
    for _ in 0..200 {
        let slow = (0u32..).inspect(|_| std::thread::sleep(Duration::from_micros(100)));
        let mut stream = Unblock::builder().pool(pool.clone()).build_iter(slow);
        assert!(stream.next().await.unwrap().is_ok());
        drop(stream);
        struct Slow;
        impl Read for Slow {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                std::thread::sleep(Duration::from_micros(200));
                buf[0] = 1;
                Ok(1)
            }
        }
        let mut reader = Unblock::builder().pool(pool.clone()).build(Slow);
        let mut byte = [0u8; 1];
        assert_eq!(reader.read(&mut byte).await.unwrap(), 1);
        // Starts the next read step, then goes away mid-step.
        let _ = futures::poll!(Box::pin(reader.read(&mut byte)));
        drop(reader);
    }
    assert!(
        common::eventually_async(Duration::from_secs(20), || {
            let m = pool.metrics();
            m.threads.busy == 0 && m.queue_depth == 0
        })
        .await,
        "{:?}",
        pool.metrics()
    );
    assert!(pool.metrics().threads.total <= 4);
}

#[tokio::test]
async fn get_mut_writes_out_buffered_bytes_before_handing_the_value_over() {
    use tokio::io::AsyncWriteExt;
    let mut unblock = Unblock::new(Vec::<u8>::new());
    unblock.write_all(b"buffered").await.unwrap();
    // Not flushed: the bytes sit in the adapter until get_mut settles it.
    let inner = unblock.get_mut().await.unwrap();
    assert_eq!(inner.as_slice(), b"buffered");
    inner.extend_from_slice(b" and more");
    let vec = unblock.into_inner().await.unwrap();
    assert_eq!(vec.as_slice(), b"buffered and more");
}

#[tokio::test]
async fn into_inner_writes_out_and_flushes_through_a_buffered_writer() {
    use tokio::io::AsyncWriteExt;
    let mut unblock = Unblock::new(std::io::BufWriter::new(Vec::<u8>::new()));
    unblock.write_all(b"all of it").await.unwrap();
    let writer = unblock.into_inner().await.unwrap();
    // Flushed by into_inner: the BufWriter holds nothing back.
    assert_eq!(writer.buffer().len(), 0);
    assert_eq!(writer.get_ref().as_slice(), b"all of it");
}

#[tokio::test]
async fn read_ahead_survives_get_mut_and_the_next_read_returns_it() {
    use tokio::io::AsyncReadExt;
    let mut unblock = Unblock::new(std::io::Cursor::new(b"0123456789".to_vec()));
    let mut two = [0u8; 2];
    unblock.read_exact(&mut two).await.unwrap();
    assert_eq!(&two, b"01");
    // The step read all ten bytes ahead.
    assert_eq!(unblock.get_mut().await.unwrap().position(), 10);
    let mut rest = String::new();
    unblock.read_to_string(&mut rest).await.unwrap();
    assert_eq!(rest, "23456789");
}

#[tokio::test]
async fn seeking_counts_from_what_the_reader_consumed_and_follows_writes() {
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
    let mut unblock = Unblock::new(std::io::Cursor::new(b"0123456789".to_vec()));
    let mut two = [0u8; 2];
    unblock.read_exact(&mut two).await.unwrap();
    // Read ahead to 10, consumed 2: the position is 2.
    assert_eq!(unblock.stream_position().await.unwrap(), 2);
    assert_eq!(
        unblock.seek(std::io::SeekFrom::Current(3)).await.unwrap(),
        5
    );
    let mut rest = String::new();
    unblock.read_to_string(&mut rest).await.unwrap();
    assert_eq!(rest, "56789");
    // A write is written out before the seek, which then reads it back.
    unblock.seek(std::io::SeekFrom::Start(0)).await.unwrap();
    unblock.write_all(b"ab").await.unwrap();
    unblock.seek(std::io::SeekFrom::Start(0)).await.unwrap();
    let mut all = String::new();
    unblock.read_to_string(&mut all).await.unwrap();
    assert_eq!(all, "ab23456789");
}

#[tokio::test]
async fn a_second_start_seek_before_completion_is_an_error_not_a_lost_seek() {
    use tokio::io::AsyncSeek;
    let mut unblock = Unblock::new(std::io::Cursor::new(vec![0u8; 8]));
    std::pin::Pin::new(&mut unblock)
        .start_seek(std::io::SeekFrom::Start(1))
        .unwrap();
    let second = std::pin::Pin::new(&mut unblock).start_seek(std::io::SeekFrom::Start(2));
    assert!(second.is_err());
    let position = std::future::poll_fn(|cx| std::pin::Pin::new(&mut unblock).poll_complete(cx))
        .await
        .unwrap();
    assert_eq!(position, 1);
}
