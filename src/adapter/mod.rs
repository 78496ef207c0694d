//! Typed adapters: cross the seam through these and nowhere else.
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

mod for_sync;
mod sync_io;

pub use for_sync::ForSync;
pub use sync_io::{BlockingIo, BlockingStream};
