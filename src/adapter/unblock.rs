//! Blocking IO and iterators, used from async code.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker, ready};

use futures_core::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::offload::Offload;
use crate::pool::BlockingPool;
use crate::sync::lock_std;

/// How many bytes (or items) one background step moves by default.
const DEFAULT_CAPACITY: usize = 64 * 1024;

/// Writes buffered bytes out to a wrapped writer and flushes it.
type WriteOut<T> = fn(&mut T, &[u8]) -> io::Result<()>;

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

/// Which half of an `Unblock` waits for a step.
#[derive(Clone, Copy)]
enum Side {
    Read,
    Write,
}

/// The wakers of both halves of an `Unblock`, behind one waker that the
/// running step is polled with.
///
/// A step has room for one waker. With `tokio::io::split` the reader and
/// the writer poll from two tasks, and whichever polled last would be the
/// only one woken: the other could wait forever for a step that finished
/// long ago (the writer takes in the reader's bytes, but nobody tells the
/// reader). So each half leaves its own waker here and the step wakes both.
#[derive(Default)]
struct Interest {
    wakers: Mutex<[Option<Waker>; 2]>,
}

impl Interest {
    fn register(&self, side: Side, waker: &Waker) {
        let mut wakers = lock_std(&self.wakers);
        let slot = &mut wakers[side as usize];
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            let replaced = slot.replace(waker.clone());
            drop(wakers);
            // Dropped outside the lock: a waker's drop is user code (it
            // may be the last reference to a task, or block).
            drop(replaced);
        }
    }
}

impl Wake for Interest {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        // Taken under the lock, woken outside it: a waker is user code.
        let woken = std::mem::take(&mut *lock_std(&self.wakers));
        for waker in woken.into_iter().flatten() {
            waker.wake();
        }
    }
}

fn lost() -> io::Error {
    io::Error::other("colorseam::Unblock: the wrapped value was lost when an earlier step failed")
}

/// Blocking `std::io::Read`/`Write` used as tokio `AsyncRead`/`AsyncWrite`.
///
/// Each read or write runs as a step on a [`BlockingPool`] (the default pool
/// unless [`UnblockBuilder::pool`] says otherwise), moving the
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
/// ### Reading and writing at once
///
/// An `Unblock` can be split (`tokio::io::split`) and its halves used from
/// two tasks: both make progress, since each half's waker is kept and a
/// finished step wakes both. But the inner value is *one* blocking object
/// and can be in only one step at a time, so reads and writes take turns:
/// a write that needs a step waits for the read step in flight, and the
/// other way round. That is not full duplex. In particular, a read that
/// blocks until the peer answers a write still in this `Unblock`'s buffer
/// never returns: the write cannot start until the read ends. For real full
/// duplex, split the inner value itself (`TcpStream::try_clone`, the two
/// ends of a child's pipes) and wrap each part in its own `Unblock`. When
/// a step ends, the half that polls first starts the next; neither is given
/// priority (a reader that always finds data does not starve a writer in
/// practice, since the writer only needs one poll to start its step).
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
    /// How buffered bytes are written out and flushed: set by the first
    /// `poll_write` (which is where `T: Write` is known), so that
    /// `get_mut` and `into_inner`, which need no `Write` bound, can write
    /// them out before handing the value over.
    write_out: Option<WriteOut<T>>,
    /// A seek asked for by `start_seek`, made at the next `poll_complete`.
    seek_to: Option<io::SeekFrom>,
    /// The last read step returned end of file.
    eof: bool,
    /// The halves' wakers, and the waker steps are polled with.
    interest: Arc<Interest>,
    step_waker: Waker,
}

/// What a background step did.
enum Step {
    Read(io::Result<Vec<u8>>),
    Wrote(io::Result<()>),
    Flushed(io::Result<()>),
    Seeked(io::Result<u64>),
}

/// Configures an [`Unblock`] or an [`UnblockIter`]: made by
/// [`Unblock::builder`].
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `build` or `build_iter` is called"]
pub struct UnblockBuilder {
    pool: Option<BlockingPool>,
    capacity: Option<usize>,
}

impl UnblockBuilder {
    /// Runs steps on `pool` instead of the default pool.
    pub fn pool(mut self, pool: BlockingPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// How much one step moves: bytes for an [`Unblock`] (default 64 KiB,
    /// clamped to 1 ..= 16 MiB: a read step allocates its buffer up front),
    /// items for an [`UnblockIter`] (default 256, clamped to 1 ..= 2^20,
    /// and so how many can be buffered).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Wraps `io`.
    pub fn build<T: Send + 'static>(self, io: T) -> Unblock<T> {
        let mut unblock = Unblock::new(io);
        unblock.pool = self.pool;
        if let Some(capacity) = self.capacity {
            unblock.capacity = capacity.clamp(1, 16 << 20);
        }
        unblock
    }

    /// Wraps `iter`.
    pub fn build_iter<I>(self, iter: I) -> UnblockIter<I>
    where
        I: Iterator + Send + 'static,
        I::Item: Send + 'static,
    {
        let mut unblock = UnblockIter::new(iter);
        unblock.pool = self.pool;
        if let Some(capacity) = self.capacity {
            unblock.capacity = capacity.clamp(1, 1 << 20);
        }
        unblock
    }
}

impl Unblock<()> {
    /// A builder for an [`Unblock`] or an [`UnblockIter`] with its own pool
    /// or capacity; [`Unblock::new`] and [`UnblockIter::new`] take the
    /// defaults.
    pub fn builder() -> UnblockBuilder {
        UnblockBuilder::default()
    }
}

impl<T: Send + 'static> Unblock<T> {
    /// Wraps `io`, with the default pool and a 64 KiB capacity.
    pub fn new(io: T) -> Self {
        let interest = Arc::new(Interest::default());
        Unblock {
            slot: Slot::Idle(io),
            pool: None,
            capacity: DEFAULT_CAPACITY,
            read_ahead: VecDeque::new(),
            write_buf: Vec::new(),
            write_out: None,
            seek_to: None,
            eof: false,
            step_waker: Waker::from(interest.clone()),
            interest,
        }
    }

    /// Waits for the running step, if any, on behalf of `side`: its waker
    /// is kept beside the other half's, and both are woken when it ends.
    fn poll_step(&mut self, cx: &mut Context<'_>, side: Side) -> Poll<io::Result<Option<Step>>> {
        if !matches!(self.slot, Slot::Busy(_)) {
            return Poll::Ready(Ok(None));
        }
        self.interest.register(side, cx.waker());
        let mut step_cx = Context::from_waker(&self.step_waker);
        self.slot.poll_step(&mut step_cx)
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
            Step::Seeked(result) => result.map(drop),
        }
    }

    /// Finishes the step in flight and writes out (and flushes) buffered
    /// bytes, so the value is idle here with nothing owed to it.
    fn poll_settle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if let Some(step) = ready!(self.poll_step(cx, Side::Write))? {
                self.absorb(step)?;
            }
            if self.write_buf.is_empty() {
                return match self.slot {
                    Slot::Lost => Poll::Ready(Err(lost())),
                    _ => Poll::Ready(Ok(())),
                };
            }
            let write_out = self
                .write_out
                .expect("bytes are buffered only by poll_write, which sets write_out");
            let buf = std::mem::take(&mut self.write_buf);
            self.start(move |io| Step::Flushed(write_out(io, &buf)))?;
        }
    }

    /// The wrapped value, once the operation in flight has finished and
    /// buffered writes are written out and flushed.
    ///
    /// Bytes already read ahead stay buffered: the next read returns them
    /// before it reads the value again. So a read through the reference
    /// sees the value's position past them.
    ///
    /// # Errors
    ///
    /// The error of the step in flight or of writing the buffer out; an
    /// error that lost the value (a step that panicked or was refused)
    /// leaves nothing to return.
    ///
    /// # Cancellation
    ///
    /// Dropping the future before it resolves leaves the adapter usable:
    /// the step in flight goes on, and a later operation waits for it.
    pub fn get_mut(&mut self) -> GetMut<'_, T> {
        GetMut {
            unblock: Some(self),
        }
    }

    /// The wrapped value, as [`get_mut`](Self::get_mut) settles it. Bytes
    /// read ahead and not yet read through the adapter are dropped.
    ///
    /// # Errors
    ///
    /// As for [`get_mut`](Self::get_mut).
    ///
    /// # Cancellation
    ///
    /// Dropping the future drops the adapter and, once its step in flight
    /// returns, the value.
    pub fn into_inner(self) -> IntoInner<T> {
        IntoInner {
            unblock: Some(self),
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
        if buf.remaining() == 0 {
            // Nothing can be read into no room: no step, and no wait.
            return Poll::Ready(Ok(()));
        }
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
            match ready!(this.poll_step(cx, Side::Read))? {
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
            match ready!(self.poll_step(cx, Side::Write))? {
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
        if this.write_out.is_none() {
            this.write_out = Some(|io: &mut T, buf: &[u8]| {
                io.write_all(buf)?;
                io.flush()
            });
        }
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

impl<T: std::io::Seek + Send + 'static> tokio::io::AsyncSeek for Unblock<T> {
    /// Asks for a seek, made at the next `poll_complete` once buffered
    /// writes are written out. A position relative to the current one
    /// counts from what the reader has consumed (read-ahead is dropped).
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        if self.seek_to.is_some() {
            return Err(io::Error::other(
                "a seek is already in progress: await poll_complete before starting another",
            ));
        }
        self.seek_to = Some(position);
        Ok(())
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let this = &mut *self;
        loop {
            match ready!(this.poll_step(cx, Side::Read))? {
                // A seek asked for after this step started (its own
                // `poll_complete` was dropped) is the one to answer: the
                // stale step's position is not where the caller asked.
                Some(Step::Seeked(_stale)) if this.seek_to.is_some() => {}
                Some(Step::Seeked(result)) => return Poll::Ready(result),
                Some(other) => this.absorb(other)?,
                None => {}
            }
            if !this.write_buf.is_empty() {
                ready!(this.poll_settle(cx))?;
                continue;
            }
            // No seek asked for: report the position, as a zero seek would.
            let position = this.seek_to.take().unwrap_or(io::SeekFrom::Current(0));
            // The inner value is ahead of the reader by what was read ahead.
            let ahead = i64::try_from(this.read_ahead.len()).unwrap_or(i64::MAX);
            let position = match position {
                io::SeekFrom::Current(offset) => {
                    io::SeekFrom::Current(offset.saturating_sub(ahead))
                }
                other => other,
            };
            this.read_ahead.clear();
            this.eof = false;
            this.start(move |io| Step::Seeked(io.seek(position)))?;
        }
    }
}

// The wrapped value is moved to and from pool threads, never pinned.
impl<T: Send + 'static> Unpin for Unblock<T> {}

/// The future of [`Unblock::get_mut`].
///
/// # Cancellation
///
/// Dropping it leaves the adapter usable: the step in flight goes on, and
/// the next operation waits for it.
#[must_use = "futures do nothing unless polled"]
pub struct GetMut<'a, T: Send + 'static> {
    unblock: Option<&'a mut Unblock<T>>,
}

impl<'a, T: Send + 'static> Future for GetMut<'a, T> {
    type Output = io::Result<&'a mut T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let unblock = self
            .unblock
            .as_mut()
            .expect("`GetMut` polled after it resolved");
        ready!(unblock.poll_settle(cx))?;
        let unblock = self.unblock.take().expect("checked above");
        match &mut unblock.slot {
            Slot::Idle(value) => Poll::Ready(Ok(value)),
            _ => Poll::Ready(Err(lost())),
        }
    }
}

impl<T: Send + 'static> fmt::Debug for GetMut<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetMut").finish_non_exhaustive()
    }
}

/// The future of [`Unblock::into_inner`].
///
/// # Cancellation
///
/// Dropping it drops the adapter and, once its step in flight returns on
/// its pool thread, the value.
#[must_use = "futures do nothing unless polled"]
pub struct IntoInner<T: Send + 'static> {
    unblock: Option<Unblock<T>>,
}

impl<T: Send + 'static> Future for IntoInner<T> {
    type Output = io::Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let unblock = self
            .unblock
            .as_mut()
            .expect("`IntoInner` polled after it resolved");
        ready!(unblock.poll_settle(cx))?;
        let unblock = self.unblock.take().expect("checked above");
        match std::mem::replace(&mut { unblock }.slot, Slot::Lost) {
            Slot::Idle(value) => Poll::Ready(Ok(value)),
            _ => Poll::Ready(Err(lost())),
        }
    }
}

impl<T: Send + 'static> fmt::Debug for IntoInner<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntoInner").finish_non_exhaustive()
    }
}

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
/// Each step takes the iterator to a pool thread and pulls up to the
/// capacity of items (256 by default), handing each one to the stream as
/// soon as `next()` returns it; then it brings the iterator back. The next
/// step starts once the stream has yielded every item of the last one, so
/// at most one step's items are buffered, and no thread is held between
/// steps. The capacity bounds buffering, not latency: an item never waits
/// for the rest of its step, so a producer that waits for a reply to each
/// item (a request/response exchange) works.
///
/// Items are `Result<I::Item, Error>`: a step that panics or is refused
/// yields one error after the items it produced, and the stream ends (the
/// iterator is gone).
///
/// # Caveats
///
/// Dropping the stream while a step runs abandons the step: it stops after
/// the `next()` in progress returns, and the iterator is dropped on the pool
/// thread then. Items already produced are dropped with the stream.
///
/// A pool thread that reads the stream through `block_on` from a job of the
/// stream's own pool, when that pool is full and cannot grow, may run the
/// step itself while it waits (see the pool's docs): the stream is then
/// polled only when the step ends, so its items arrive together, and a
/// producer that waits for a reply to each item waits forever there. Give
/// the stream a pool of its own ([`UnblockBuilder::pool`]) in that
/// arrangement.
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
    /// The step's output says whether the iterator ended.
    slot: Slot<I, bool>,
    pool: Option<BlockingPool>,
    capacity: usize,
    /// Where the running step hands over items as it makes them.
    feed: Arc<Feed<I::Item>>,
    /// A failed step's error, yielded after the items it produced.
    failed: Option<crate::Error>,
    done: bool,
}

/// Items on their way from a step to the stream.
struct Feed<T> {
    state: Mutex<FeedState<T>>,
}

struct FeedState<T> {
    items: VecDeque<T>,
    waker: Option<Waker>,
    /// The stream is gone: the step stops after the current `next()`.
    closed: bool,
}

impl<T> Feed<T> {
    /// Hands over one item; false once the stream is gone.
    fn push(&self, item: T) -> bool {
        let mut state = lock_std(&self.state);
        if state.closed {
            return false;
        }
        state.items.push_back(item);
        let waker = state.waker.take();
        drop(state);
        // Woken outside the lock: a waker is user code.
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    fn is_closed(&self) -> bool {
        lock_std(&self.state).closed
    }

    /// Refuses later pushes; the items already here stay to be yielded.
    fn close(&self) {
        lock_std(&self.state).closed = true;
    }

    /// The next item, or none after leaving `waker` to be woken by a push.
    fn pop_or_register(&self, waker: &Waker) -> Option<T> {
        let mut state = lock_std(&self.state);
        let item = state.items.pop_front();
        let mut replaced = None;
        if item.is_none() && !state.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            replaced = state.waker.replace(waker.clone());
        }
        drop(state);
        // Dropped outside the lock: a waker's drop is user code.
        drop(replaced);
        item
    }

    fn pop(&self) -> Option<T> {
        lock_std(&self.state).items.pop_front()
    }
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
            feed: Arc::new(Feed {
                state: Mutex::new(FeedState {
                    items: VecDeque::new(),
                    waker: None,
                    closed: false,
                }),
            }),
            failed: None,
            done: false,
        }
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
            // The waker is left with the feed before the step is polled, so
            // an item pushed in between is not missed.
            if let Some(item) = this.feed.pop_or_register(cx.waker()) {
                return Poll::Ready(Some(Ok(item)));
            }
            if let Some(error) = this.failed.take() {
                return Poll::Ready(Some(Err(error)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match &mut this.slot {
                Slot::Busy(step) => match ready!(step.as_mut().poll(cx)) {
                    Ok((iter, ended)) => {
                        this.done = ended;
                        this.slot = Slot::Idle(iter);
                    }
                    Err(error) => {
                        // A step that timed out may still be running: close
                        // the feed so it adds nothing after the end. Items
                        // it made before it failed come first.
                        this.feed.close();
                        this.done = true;
                        this.slot = Slot::Lost;
                        this.failed = Some(error);
                    }
                },
                Slot::Idle(_) => {
                    if let Some(item) = this.feed.pop() {
                        return Poll::Ready(Some(Ok(item)));
                    }
                    let Slot::Idle(mut iter) = std::mem::replace(&mut this.slot, Slot::Lost) else {
                        unreachable!("matched Idle just above");
                    };
                    let (capacity, feed) = (this.capacity, this.feed.clone());
                    let pool = this.pool.as_ref().unwrap_or_else(|| crate::default_pool());
                    this.slot = Slot::Busy(Box::pin(pool.offload(move || {
                        let mut ended = false;
                        for _ in 0..capacity {
                            if feed.is_closed() {
                                break;
                            }
                            match iter.next() {
                                Some(item) => {
                                    if !feed.push(item) {
                                        break;
                                    }
                                }
                                None => {
                                    ended = true;
                                    break;
                                }
                            }
                        }
                        (iter, ended)
                    })));
                }
                Slot::Lost => return Poll::Ready(None),
            }
        }
    }
}

impl<I> Drop for UnblockIter<I>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
{
    fn drop(&mut self) {
        // Tell a running step to stop; the items already made and the
        // waker are dropped here (outside the lock: both are user values),
        // not on the pool thread.
        let (items, waker) = {
            let mut state = lock_std(&self.feed.state);
            state.closed = true;
            (std::mem::take(&mut state.items), state.waker.take())
        };
        drop(waker);
        drop(items);
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
            .field("buffered", &lock_std(&self.feed.state).items.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
