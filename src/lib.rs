//! Cross the seam between sync and async Rust without freezing a runtime,
//! losing an error or leaking a thread.
//!
//! One blocking call inside async code freezes every task on its worker,
//! health checks included, and nothing is logged. A `tokio::time::timeout`
//! around blocking code does not fire until the blocking code returns. And
//! "offload it to a thread", unbounded, turns one hung dependency into
//! thousands of stuck threads. colorseam makes each of those impossible or
//! loud.
//!
//! # Offload: sync work for async callers
//!
//! A [`BlockingPool`] runs closures on a bounded set of OS threads:
//!
//! - **Bounded.** At most `max_threads` jobs run and at most
//!   `queue_capacity` wait. A full queue makes the caller wait for room
//!   (counted against its deadline) or refuses it at once.
//! - **Real timeouts.** A call's deadline covers queue wait and run time. At
//!   the deadline (within the OS timer slack, not at tokio's next 1 ms tick)
//!   the caller gets an error naming the phase, elapsed time, pool and call
//!   site, whatever the sync code is doing.
//! - **Cancellation that means something.** Queued work that times out or
//!   whose future is dropped never runs. Running work cannot be killed, so it
//!   is *abandoned*: [`job::current()`] tells it so, the interrupter it
//!   registered ([`JobContext::on_cancel`](job::JobContext::on_cancel):
//!   shut the socket down, kill the child, interrupt the query) is run so
//!   that blocked code returns, and its thread is replaced, up to
//!   `max_abandoned`, so capacity survives a hung dependency while the
//!   thread count stays bounded. The [Cancellation guide](cancellation)
//!   says what is released, what is stopped and what can only be
//!   abandoned.
//! - **Threads that help.** Threads start on demand up to the core count;
//!   past it, only while queued work waits behind workers blocked in the OS
//!   (a process-wide monitor thread looks), so a burst of small jobs runs on
//!   as many threads as cores instead of contending on `max_threads`.
//! - **Nothing silent.** Panics come back as errors; [`detach`ed](BlockingPool::detach)
//!   failures go to an error sink; every call resolves exactly once; every
//!   outcome is counted in [`BlockingPool::metrics`].
//!
//! ```
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // The default pool needs no set-up.
//! let n = colorseam::offload(|| 6 * 7).await.unwrap();
//! assert_eq!(n, 42);
//!
//! // A dependency that hangs releases its caller at the deadline.
//! let err = colorseam::offload_timeout(
//!     || std::thread::sleep(Duration::from_secs(30)),
//!     Duration::from_millis(20),
//! )
//! .await
//! .unwrap_err();
//! assert!(err.is_timeout());
//! println!("{err}"); // offload timed out after 20.3ms while running in pool "colorseam-default" (called at ...)
//! # }
//! ```
//!
//! # block_on: async work for sync callers
//!
//! Sync code that must call async code gets one entry point that is right
//! wherever it runs. [`block_on`] drives a future from a plain thread (tokio
//! IO and timers come from a bridge runtime colorseam starts on first use),
//! from a pool thread (against the runtime of the async caller that
//! submitted the job; nested offloads to the same pool are queued like
//! any other, and the waiting thread runs them itself only when no other
//! thread can, so async → sync → async completes even on a one-thread
//! pool), and from a
//! `spawn_blocking` thread. From async code it returns
//! [`ErrorKind::AsyncContext`] instead of panicking or freezing the runtime.
//! [`block_on_timeout`] adds a deadline that releases the caller even if the
//! future never yields; [`context()`] says where the code runs.
//!
//! ```
//! use std::time::Duration;
//!
//! // A plain `fn main`: no runtime built by hand.
//! let fetched = colorseam::block_on_timeout(
//!     async {
//!         tokio::time::sleep(Duration::from_millis(5)).await; // needs tokio's timer
//!         "fetched"
//!     },
//!     Duration::from_secs(2),
//! )
//! .unwrap();
//! assert_eq!(fetched, "fetched");
//! ```
//!
//! The [`adapter`] module builds on it: [`ForSync<T>`](adapter::ForSync)
//! serves an async client to sync callers (the `reqwest::blocking`
//! pattern), [`BlockingStream`](adapter::BlockingStream) reads a `Stream` as
//! an `Iterator`, and [`BlockingIo`](adapter::BlockingIo) uses
//! `AsyncRead`/`AsyncWrite` as `Read`/`Write`.
//!
//! # Caveats
//!
//! - Rust cannot stop a running thread. An abandoned job keeps its OS thread
//!   until it returns; colorseam bounds how many such threads exist and makes
//!   them visible, but only the job itself (checking [`job::current()`]) or
//!   what its interrupter reaches (see [`cancellation`]) can end it early.
//! - An offload's deadline is real time and works under any executor; first
//!   polled inside a tokio runtime built without timers, tokio's timer
//!   panics. `tokio::time::timeout` around an offload does not hold under a
//!   paused test clock (see [`Offload`]'s caveats); the offload's own
//!   deadline does.
//! - [`context()`] learns where code runs from tokio's public state and its
//!   own markers, without raising a panic or installing a panic hook. tokio
//!   leaves a few threads looking alike (a multi-thread runtime's
//!   `Runtime::block_on` future and a `Handle::enter` thread; a `LocalSet`
//!   task there and a `spawn_blocking` thread); [`CallerContext`] says
//!   which side colorseam takes in each.

//!
//! # Feature flags
//!
//! All off by default; the crate's core needs only tokio (`rt`,
//! `rt-multi-thread`, `sync`, `time`, `io-util`), `futures-core`,
//! `futures-util`, `pin-project-lite` and `thiserror`.
//!
//! | feature | what it adds |
//! | --- | --- |
//! | `tracing` | `tracing` events at pool decisions (admission, timeouts, abandonment, shutdown), the caller's span entered on the pool thread, detached failures routed there |
//! | `process` | [`process`]: a pool of worker processes whose jobs are killed at their deadline (Unix) |
//! | `process-serde` | `process` plus typed calls: [`process::Functions::add_serde`] and `ProcessPool::call_serde`, arguments and results in postcard |
//! | `metrics` | `metrics::publish()`: every pool's and adapter's gauges, counters and latency histograms through the `metrics` crate facade |
//!
//! # Minimum supported Rust version
//!
//! Rust 1.85 (edition 2024), declared as `rust-version` in Cargo.toml; see
//! `docs/ARCHITECTURE.md` for how that is kept true.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![warn(clippy::missing_errors_doc, clippy::missing_panics_doc)]

pub mod adapter;
mod block_on;
mod bridge;
mod caller_runtime;
#[doc = include_str!("../docs/cancellation.md")]
pub mod cancellation {}
mod deadline;
pub mod detect;
mod error;
pub mod guard;
pub mod interrupt;
pub mod job;
pub mod metrics;
mod offload;
pub mod pool;
#[cfg(all(feature = "process", unix))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "process", unix))))]
pub mod process;
mod procfs;
mod spin;
mod stamp;
mod sync;

pub use block_on::{
    CallerContext, RuntimeFlavor, block_on, block_on_deadline, block_on_in_place, block_on_timeout,
    context,
};
pub use error::{ConfigError, Error, ErrorKind, Phase};
pub use offload::{
    Batch, FailFastBatch, Offload, offload, offload_deadline, offload_timeout, try_offload,
};
pub use pool::BlockingPool;
pub use pool::default::default_pool;

// The README's snippets are compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
