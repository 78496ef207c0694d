//! Typed adapters: cross the seam through these and nowhere else.
//!
//! For async callers of sync resources:
//!
//! - [`ForAsync<T>`] owns a sync resource (a legacy SDK client) and gives
//!   async code `call(|client| ...)` only, on the adapter's own bounded pool
//!   (a bulkhead) with a name, a deadline and a panic policy.
//! - [`ThreadBound<T>`] does the same for a resource that must stay on one
//!   OS thread (not `Sync`, or not even `Send`), in submission order.
//! - [`Unblock<T>`] uses blocking `Read`/`Write` as `AsyncRead`/`AsyncWrite`,
//!   and [`UnblockIter<I>`] a blocking `Iterator` as a `Stream`.
//!
//! For sync callers of async resources:
//!
//! - [`ForSync<T>`] owns an async resource (a client) and gives sync code
//!   `call(|client| async move { ... })` with a name and a default timeout:
//!   the `reqwest::blocking` pattern, for any client.
//! - [`BlockingStream<S>`] reads an async `Stream` as a blocking `Iterator`.
//! - [`BlockingIo<T>`] uses an `AsyncRead`/`AsyncWrite` as `std::io::Read`/`Write`.
//!
//! All of them are built on [`block_on`](crate::block_on), so they behave the
//! same in every calling context: they work from plain threads, pool threads
//! and `spawn_blocking` threads, and from async code they return a typed
//! error ([`Error::is_async_context`](crate::Error::is_async_context))
//! instead of panicking or freezing the runtime.

mod for_async;
mod for_sync;
mod sync_io;
mod unblock;

pub use for_async::{
    AdapterCall, ForAsync, ForAsyncBuilder, InterruptWith, PanicPolicy, ThreadBound,
    ThreadBoundBuilder,
};
pub use for_sync::{ForSync, ForSyncBuilder};
pub use sync_io::{BlockingIo, BlockingStream};
pub use unblock::{GetMut, IntoInner, Unblock, UnblockBuilder, UnblockIter};
