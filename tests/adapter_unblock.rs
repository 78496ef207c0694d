//! `Unblock<T>` and `UnblockIter<I>`: blocking IO and iterators used from
//! async code with bounded buffering.

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
    let mut unblocked = Unblock::new(reader).with_capacity(512);
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
    let mut writer = Unblock::new(sink.clone()).with_capacity(64);
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
    let mut stream = UnblockIter::new(iter).with_capacity(100);
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
async fn a_panicking_iterator_yields_one_error_then_ends() {
    let iter = (0..10u32).map(|i| if i == 3 { panic!("bad row") } else { i });
    let items: Vec<_> = UnblockIter::new(iter).with_capacity(2).collect().await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(items[0].is_ok() && items[1].is_ok());
    assert_eq!(
        items[2].as_ref().unwrap_err().panic_message(),
        Some("bad row")
    );
}
