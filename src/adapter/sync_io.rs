//! Async streams and IO, used from sync code.

use std::fmt;
use std::io;
use std::panic::Location;
use std::pin::Pin;

use futures_core::Stream;
use futures_util::StreamExt;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt, AsyncWrite,
    AsyncWriteExt,
};

use crate::block_on::Call;
use crate::error::Error;

/// An async [`Stream`] read as a blocking [`Iterator`].
///
/// Each `next()` blocks the calling thread until the stream yields, with
/// [`block_on`](crate::block_on)'s rules: fine on plain, pool and
/// `spawn_blocking` threads; from async code the first item is an
/// [`Error::is_async_context`] and the iterator ends. Items are
/// `Result<S::Item, Error>`; after an error the iterator is exhausted.
///
/// # Examples
///
/// ```
/// use colorseam::adapter::BlockingStream;
///
/// let stream = futures::stream::iter(1..=3);
/// let items: Result<Vec<i32>, _> = BlockingStream::new(stream).collect();
/// assert_eq!(items.unwrap(), vec![1, 2, 3]);
/// ```
pub struct BlockingStream<S> {
    stream: Pin<Box<S>>,
    location: &'static Location<'static>,
    done: bool,
}

impl<S: Stream> BlockingStream<S> {
    /// Wraps `stream`. Errors name the call site of this constructor.
    #[track_caller]
    pub fn new(stream: S) -> Self {
        BlockingStream {
            stream: Box::pin(stream),
            location: Location::caller(),
            done: false,
        }
    }
}

impl<S: Stream> Iterator for BlockingStream<S> {
    type Item = Result<S::Item, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let call = Call::at(None, "next", self.location);
        match call.block_here(self.stream.next()) {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

impl<S> fmt::Debug for BlockingStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingStream")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// An `AsyncRead`/`AsyncWrite` used as blocking [`io::Read`]/[`io::Write`].
///
/// Each operation blocks the calling thread with
/// [`block_on`](crate::block_on)'s rules. From async code an operation fails
/// with an `io::Error` of kind `Other` whose source is a colorseam
/// [`Error`] (`is_async_context()`), instead of panicking as
/// `tokio_util::io::SyncIoBridge` does there.
///
/// # Caveats
///
/// - Like any writer, it must be flushed: call `flush()` (or drop a
///   `BufWriter` around it) before expecting the bytes on the other side.
/// - A read returns what one `poll_read` gives: possibly fewer bytes than
///   asked for, as `io::Read` allows. Use `read_exact` for whole records.
/// - Dropping it drops the inner value on the calling thread; tokio's IO
///   types allow that outside a runtime.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use colorseam::adapter::BlockingIo;
///
/// let (a, b) = tokio::io::duplex(64);
/// let (mut a, mut b) = (BlockingIo::new(a), BlockingIo::new(b));
/// a.write_all(b"ping").unwrap();
/// a.flush().unwrap();
/// let mut buf = [0u8; 4];
/// b.read_exact(&mut buf).unwrap();
/// assert_eq!(&buf, b"ping");
/// ```
pub struct BlockingIo<T> {
    io: T,
    location: &'static Location<'static>,
}

impl<T> BlockingIo<T> {
    /// Wraps `io`. Errors name the call site of this constructor.
    #[track_caller]
    pub fn new(io: T) -> Self {
        BlockingIo {
            io,
            location: Location::caller(),
        }
    }

    /// Gives the inner value back.
    pub fn into_inner(self) -> T {
        self.io
    }

    /// The inner value.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// The inner value, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// Shuts the write side down (`AsyncWriteExt::shutdown`): flushes, then
    /// closes, so the peer reads end of file.
    ///
    /// # Errors
    ///
    /// The inner value's error; or, as an `io::Error` wrapping a colorseam
    /// [`Error`], the refusal from async code (as every method here).
    pub fn shutdown(&mut self) -> io::Result<()>
    where
        T: AsyncWrite + Unpin,
    {
        Self::run(self.location, "shutdown", self.io.shutdown())
    }

    fn run<F: std::future::Future<Output = io::Result<R>>, R>(
        location: &'static Location<'static>,
        operation: &'static str,
        future: F,
    ) -> io::Result<R> {
        Call::at(None, operation, location)
            .block_here(future)
            .map_err(io::Error::other)?
    }
}

impl<T: AsyncRead + Unpin> io::Read for BlockingIo<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Self::run(self.location, "read", self.io.read(buf))
    }
}

impl<T: AsyncWrite + Unpin> io::Write for BlockingIo<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Self::run(self.location, "write", self.io.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Self::run(self.location, "flush", self.io.flush())
    }
}

impl<T: AsyncSeek + Unpin> io::Seek for BlockingIo<T> {
    fn seek(&mut self, position: io::SeekFrom) -> io::Result<u64> {
        Self::run(self.location, "seek", self.io.seek(position))
    }
}

impl<T: AsyncBufRead + Unpin> io::BufRead for BlockingIo<T> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        Self::run(self.location, "fill_buf", self.io.fill_buf())
    }

    fn consume(&mut self, amount: usize) {
        Pin::new(&mut self.io).consume(amount);
    }
}

impl<T> fmt::Debug for BlockingIo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingIo").finish_non_exhaustive()
    }
}
