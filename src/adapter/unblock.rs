//! Blocking IO and iterators, used from async code.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::offload::Offload;
use crate::pool::BlockingPool;

/// How many bytes (or items) one background step moves by default.
const DEFAULT_CAPACITY: usize = 64 * 1024;

/// Where a wrapped value is: here, or away on a pool thread doing a step.
enum Slot<T: Send + 'static, S: Send + 'static> {
    Idle(T),
    Busy(Pin<Box<Offload<(T, S)>>>),
    /// The value was lost: a step was cancelled, refused, or panicked.
    Lost,
}

impl<T: Send + 'static, S: Send + 'static> Slot<T, S> {
    /// Waits for the running step, if any, and returns its output.
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<S>>> {
        let Slot::Busy(step) = self else {
            return Poll::Ready(Ok(None));
        };
        let result = ready!(step.as_mut().poll(cx));
        match result {
            Ok((value, output)) => {
                *self = Slot::Idle(value);
                Poll::Ready(Ok(Some(output)))
            }
            Err(error) => {
                *self = Slot::Lost;
                Poll::Ready(Err(io::Error::other(error)))
            }
        }
    }
}

fn lost() -> io::Error {
    io::Error::other("colorseam::Unblock: the wrapped value was lost when an earlier step failed")
}

/// Blocking `std::io::Read`/`Write` used as tokio `AsyncRead`/`AsyncWrite`.
///
/// Each read or write runs as a step on a [`BlockingPool`] (the default pool
/// unless [`with_pool`](Self::with_pool) says otherwise), moving the
/// inner value to a pool thread and back. No thread is held between steps.
/// Buffering is bounded by the capacity (64 KiB by default): a read step
/// reads at most that many bytes ahead, and writes are buffered up to it
/// before a write step is started.
///
/// # Caveats
///
/// ### Reading
///
/// A read step may read ahead of what the caller asked for (up to the
/// capacity); those bytes are kept and returned by later reads. If the
/// `Unblock` is dropped, read-ahead bytes are lost with it. A read that
/// blocks forever (a terminal's stdin) keeps its pool thread until it
/// returns, even after the `Unblock` is dropped; the step is abandoned and
/// the value dropped on that thread when the read returns.
///
/// ### Writing
///
/// Writes are buffered: call `flush()` (or `shutdown()`) to be sure the
/// bytes reached the inner writer. Dropping an `Unblock` with buffered bytes
/// discards them, and dropping it while a write step runs abandons the step.
///
/// ### Errors
///
/// An `io::Error` from the inner value is returned as is. A failure of the
/// step itself (the pool refused it, or it panicked) is an `io::Error` of
/// kind `Other` whose source is a colorseam [`Error`](crate::Error); the
/// inner value is then gone, and later operations fail.
///
/// # Examples
///
/// ```
/// use tokio::io::AsyncReadExt;
/// use colorseam::adapter::Unblock;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let file = std::io::Cursor::new(b"from a blocking reader".to_vec());
/// let mut reader = Unblock::new(file);
/// let mut text = String::new();
/// reader.read_to_string(&mut text).await.unwrap();
/// assert_eq!(text, "from a blocking reader");
/// # }
/// ```
pub struct Unblock<T: Send + 'static> {
    slot: Slot<T, Step>,
    pool: Option<BlockingPool>,
    capacity: usize,
    read_ahead: VecDeque<u8>,
    write_buf: Vec<u8>,
    /// The last read step returned end of file.
    eof: bool,
}

/// What a background step did.
enum Step {
    Read(io::Result<Vec<u8>>),
    Wrote(io::Result<()>),
    Flushed(io::Result<()>),
}

impl<T: Send + 'static> Unblock<T> {
    /// Wraps `io`, with the default pool and a 64 KiB capacity.
    pub fn new(io: T) -> Self {
        Unblock {
            slot: Slot::Idle(io),
            pool: None,
            capacity: DEFAULT_CAPACITY,
            read_ahead: VecDeque::new(),
            write_buf: Vec::new(),
            eof: false,
        }
    }

    /// Runs steps on `pool` instead of the default pool.
    pub fn with_pool(mut self, pool: BlockingPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Sets how many bytes one step moves (clamped to 1 ..= 16 MiB: a read
    /// step allocates its buffer up front).
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.clamp(1, 16 << 20);
        self
    }

    /// Takes in the output of a step that finished while another kind of
    /// operation was waiting for the value.
    fn absorb(&mut self, step: Step) -> io::Result<()> {
        match step {
            Step::Read(result) => {
                let bytes = result?;
                self.eof = bytes.is_empty();
                self.read_ahead.extend(bytes);
                Ok(())
            }
            Step::Wrote(result) | Step::Flushed(result) => result,
        }
    }

    fn pool(&self) -> &BlockingPool {
        self.pool.as_ref().unwrap_or_else(|| crate::default_pool())
    }

    /// Starts a step that takes the value to a pool thread and back.
    fn start(&mut self, step: impl FnOnce(&mut T) -> Step + Send + 'static) -> io::Result<()> {
        let Slot::Idle(mut value) = std::mem::replace(&mut self.slot, Slot::Lost) else {
            return Err(lost());
        };
        let offload = self.pool().offload(move || {
            let output = step(&mut value);
            (value, output)
        });
        self.slot = Slot::Busy(Box::pin(offload));
        Ok(())
    }
}

impl<T: Read + Send + 'static> AsyncRead for Unblock<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.read_ahead.is_empty() {
                let n = this.read_ahead.len().min(buf.remaining());
                let (front, back) = this.read_ahead.as_slices();
                let from_front = n.min(front.len());
                buf.put_slice(&front[..from_front]);
                buf.put_slice(&back[..n - from_front]);
                this.read_ahead.drain(..n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                this.eof = false; // a later read may see more (a growing file)
                return Poll::Ready(Ok(()));
            }
            match ready!(this.slot.poll_step(cx))? {
                Some(Step::Read(result)) => {
                    let bytes = result?;
                    this.eof = bytes.is_empty();
                    this.read_ahead.extend(bytes);
                    continue;
                }
                Some(other) => {
                    this.absorb(other)?;
                    continue;
                }
                None => {}
            }
            let capacity = this.capacity;
            this.start(move |io| {
                let mut bytes = vec![0; capacity];
                Step::Read(io.read(&mut bytes).map(|n| {
                    bytes.truncate(n);
                    bytes
                }))
            })?;
        }
    }
}

impl<T: Write + Send + 'static> Unblock<T> {
    fn start_write(&mut self) -> io::Result<()> {
        let buf = std::mem::take(&mut self.write_buf);
        self.start(move |io| Step::Wrote(io.write_all(&buf)))
    }

    /// Writes out the buffer and, with `flush`, flushes the inner writer,
    /// finishing whatever step is in flight first.
    fn poll_write_out(&mut self, cx: &mut Context<'_>, flush: bool) -> Poll<io::Result<()>> {
        loop {
            match ready!(self.slot.poll_step(cx))? {
                Some(Step::Flushed(result)) => {
                    result?;
                    if flush && self.write_buf.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                }
                Some(other) => self.absorb(other)?,
                None => {}
            }
            if !self.write_buf.is_empty() {
                self.start_write()?;
            } else if flush {
                self.start(|io| Step::Flushed(io.flush()))?;
            } else {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<T: Write + Send + 'static> AsyncWrite for Unblock<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.write_buf.len() >= this.capacity {
            ready!(this.poll_write_out(cx, false))?;
        }
        if let Slot::Lost = this.slot {
            return Poll::Ready(Err(lost()));
        }
        let room = this.capacity - this.write_buf.len().min(this.capacity);
        let n = room.min(buf.len());
        this.write_buf.extend_from_slice(&buf[..n]);
        if this.write_buf.len() >= this.capacity && matches!(this.slot, Slot::Idle(_)) {
            this.start_write()?;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_out(cx, true)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_out(cx, true)
    }
}

// The wrapped value is moved to and from pool threads, never pinned.
impl<T: Send + 'static> Unpin for Unblock<T> {}

impl<T: Send + 'static> fmt::Debug for Unblock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.slot {
            Slot::Idle(_) => "idle",
            Slot::Busy(_) => "busy",
            Slot::Lost => "lost",
        };
        f.debug_struct("Unblock")
            .field("state", &state)
            .field("capacity", &self.capacity)
            .field("read_ahead", &self.read_ahead.len())
            .field("write_buffered", &self.write_buf.len())
            .finish()
    }
}

/// A blocking [`Iterator`] used as a [`Stream`].
///
/// Each step takes the iterator to a pool thread, pulls up to the capacity
/// of items (256 by default), and brings both back; the stream yields the
/// buffered items, then starts the next step. No thread is held between
/// steps, and at most one step's items are buffered.
///
/// Items are `Result<I::Item, Error>`: a step that panics or is refused
/// yields one error, and the stream ends (the iterator is gone).
///
/// # Caveats
///
/// Dropping the stream while a step runs abandons the step: the iterator is
/// dropped on the pool thread once its current `next()` returns. Read-ahead
/// items are dropped with the stream.
///
/// # Examples
///
/// ```
/// use futures::StreamExt;
/// use colorseam::adapter::UnblockIter;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let lines = vec!["a", "b", "c"].into_iter(); // e.g. a blocking file reader's lines
/// let items: Vec<_> = UnblockIter::new(lines).map(Result::unwrap).collect().await;
/// assert_eq!(items, vec!["a", "b", "c"]);
/// # }
/// ```
pub struct UnblockIter<I>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
{
    slot: Slot<I, Vec<I::Item>>,
    pool: Option<BlockingPool>,
    capacity: usize,
    buffered: VecDeque<I::Item>,
    done: bool,
}

impl<I> UnblockIter<I>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
{
    /// Wraps `iter`, with the default pool and a capacity of 256 items.
    pub fn new(iter: I) -> Self {
        UnblockIter {
            slot: Slot::Idle(iter),
            pool: None,
            capacity: 256,
            buffered: VecDeque::new(),
            done: false,
        }
    }

    /// Runs steps on `pool` instead of the default pool.
    pub fn with_pool(mut self, pool: BlockingPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Sets how many items one step pulls (clamped to 1 ..= 2^20).
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.clamp(1, 1 << 20);
        self
    }
}

impl<I> Stream for UnblockIter<I>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
{
    type Item = Result<I::Item, crate::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(item) = this.buffered.pop_front() {
                return Poll::Ready(Some(Ok(item)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match &mut this.slot {
                Slot::Busy(step) => match ready!(step.as_mut().poll(cx)) {
                    Ok((iter, items)) => {
                        this.done = items.is_empty();
                        this.buffered.extend(items);
                        this.slot = Slot::Idle(iter);
                    }
                    Err(error) => {
                        this.done = true;
                        this.slot = Slot::Lost;
                        return Poll::Ready(Some(Err(error)));
                    }
                },
                Slot::Idle(_) => {
                    let Slot::Idle(mut iter) = std::mem::replace(&mut this.slot, Slot::Lost) else {
                        unreachable!("matched Idle just above");
                    };
                    let capacity = this.capacity;
                    let pool = this.pool.as_ref().unwrap_or_else(|| crate::default_pool());
                    this.slot = Slot::Busy(Box::pin(pool.offload(move || {
                        let items: Vec<I::Item> = iter.by_ref().take(capacity).collect();
                        (iter, items)
                    })));
                }
                Slot::Lost => return Poll::Ready(None),
            }
        }
    }
}

// The iterator is moved to and from pool threads, never pinned.
impl<I> Unpin for UnblockIter<I>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
{
}

impl<I> fmt::Debug for UnblockIter<I>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnblockIter")
            .field("buffered", &self.buffered.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
