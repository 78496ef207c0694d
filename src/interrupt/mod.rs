//! Ready-made interrupters for the std resources that block, for
//! [`JobContext::on_cancel`](crate::job::JobContext::on_cancel) and the
//! adapters' `interrupt_with`.
//!
//! Each one is made, inside the job, from the resource the job is about to
//! block on, and returns a closure that stops that blocking from another
//! thread:
//!
//! | resource | interrupter | what the blocked job sees |
//! | --- | --- | --- |
//! | [`TcpStream`] | [`shutdown_tcp`]: `shutdown(Both)` | a read returns `Ok(0)` (end of stream), a write fails |
//! | `UnixStream` (unix) | [`shutdown_unix`]: `shutdown(Both)` | the same |
//! | [`UdpSocket`] | [`wake_udp`]: a shutdown (unix) | a `recv` returns `Ok(0)` |
//! | [`TcpListener`] | [`wake_tcp_listener`]: a shutdown (unix) | `accept` fails |
//! | [`Child`] | [`SharedChild::interrupter`]: `kill` | [`SharedChild::wait`] returns, the child reaped |
//!
//! Every interrupter is made of a clone of the resource (`try_clone`, an
//! `Arc`), so it owns what it needs: it is `Send + 'static` and the job
//! keeps its own handle. A job that sees its read end early should ask
//! [`OnCancel::fired`](crate::job::OnCancel::fired) (or
//! [`is_cancelled`](crate::job::JobContext::is_cancelled)) before taking
//! the short read for the peer's doing.
//!
//! # Caveats
//!
//! - std has no `shutdown` for a `UdpSocket` or a `TcpListener`. On unix,
//!   the socket's descriptor is duplicated and shut down through std's
//!   `UnixDatagram` or `TcpStream` (the call is the same `shutdown(2)`,
//!   with no `unsafe`): Linux then wakes a blocked `recv` or `accept`;
//!   other systems may only refuse later calls. Elsewhere [`wake_udp`] sends
//!   the socket an empty datagram (an unconnected socket only: a connected
//!   one drops datagrams that are not from its peer, and std cannot fake
//!   that address) and [`wake_tcp_listener`] connects to the listener.
//! - std's `Child::kill` takes `&mut self`, so a child killed from another
//!   thread must be shared: [`SharedChild`] waits by polling `try_wait`
//!   (std has no way to wait for a child and be woken from elsewhere),
//!   woken at once by its own `kill`, else every 1 to 10 ms.
//! - Plain files, pipes, terminals and `std::io::stdin` cannot be woken by
//!   std without `unsafe`: a job blocked there can only be abandoned (see
//!   the [Cancellation guide](crate::cancellation)).

pub(crate) mod registry;
mod runner;

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::sync::lock_std as lock;
use registry::{Interrupts, Stats};

/// The call of a job with these interrupts was abandoned: claims its
/// interrupters and hands them to the interrupt threads (with no lock
/// held). Returns how many were sent.
pub(crate) fn send(interrupts: &Interrupts, stats: &Arc<Stats>) -> usize {
    let (claimed, fired) = interrupts.cancel(stats);
    let sent = claimed.len();
    if let Some(fired) = fired {
        runner::dispatch(claimed, stats, &fired);
    }
    sent
}

/// An interrupter that shuts `stream` down (both directions) when it runs,
/// through a clone of it.
///
/// A read blocked on the stream then returns `Ok(0)`, a write fails. The
/// stream is unusable afterwards, as after any shutdown.
///
/// # Errors
///
/// The error of [`TcpStream::try_clone`] (out of file descriptors).
///
/// # Examples
///
/// See [`JobContext::on_cancel`](crate::job::JobContext::on_cancel).
pub fn shutdown_tcp(stream: &TcpStream) -> io::Result<impl FnOnce() + Send + use<>> {
    let stream = stream.try_clone()?;
    Ok(move || {
        // Not connected any more (the peer left) is the goal reached.
        let _ = stream.shutdown(Shutdown::Both);
    })
}

/// An interrupter that shuts a unix stream down (both directions) when it
/// runs, through a clone of it; as [`shutdown_tcp`].
///
/// # Errors
///
/// The error of `UnixStream::try_clone`.
#[cfg(unix)]
pub fn shutdown_unix(
    stream: &std::os::unix::net::UnixStream,
) -> io::Result<impl FnOnce() + Send + use<>> {
    let stream = stream.try_clone()?;
    Ok(move || {
        let _ = stream.shutdown(Shutdown::Both);
    })
}

/// An interrupter that wakes a `recv` blocked on `socket`.
///
/// On unix it shuts the socket down (see the module's caveats): on Linux a
/// blocked `recv` returns `Ok(0)`, and the socket is unusable afterwards.
/// Elsewhere it sends the socket an empty datagram from itself.
///
/// # Errors
///
/// The error of `try_clone`; elsewhere than unix also
/// [`io::ErrorKind::Unsupported`] for a connected socket, which drops a
/// datagram that is not from its peer.
pub fn wake_udp(socket: &UdpSocket) -> io::Result<impl FnOnce() + Send + use<>> {
    #[cfg(unix)]
    {
        let socket =
            std::os::unix::net::UnixDatagram::from(std::os::fd::OwnedFd::from(socket.try_clone()?));
        Ok(move || {
            // Linux shuts an unconnected socket down and wakes its readers,
            // but says "not connected": the wake-up is what counts.
            let _ = socket.shutdown(Shutdown::Both);
        })
    }
    #[cfg(not(unix))]
    {
        if socket.peer_addr().is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a connected UDP socket drops a wake-up datagram that is not from its peer",
            ));
        }
        let to = reachable(socket.local_addr()?);
        let socket = socket.try_clone()?;
        Ok(move || {
            let _ = socket.send_to(&[], to);
        })
    }
}

/// An interrupter that wakes an `accept` blocked on `listener`.
///
/// On unix it shuts the listening socket down (see the module's caveats):
/// on Linux a blocked `accept` fails and the listener is unusable
/// afterwards. Elsewhere it connects to the listener, so `accept` returns
/// a connection from this process.
///
/// # Errors
///
/// The error of `try_clone` (or of `local_addr`, elsewhere than unix).
pub fn wake_tcp_listener(listener: &TcpListener) -> io::Result<impl FnOnce() + Send + use<>> {
    #[cfg(unix)]
    {
        let listener = TcpStream::from(std::os::fd::OwnedFd::from(listener.try_clone()?));
        Ok(move || {
            let _ = listener.shutdown(Shutdown::Read);
        })
    }
    #[cfg(not(unix))]
    {
        let to = reachable(listener.local_addr()?);
        Ok(move || {
            // Bounded: a listener whose backlog is full never answers.
            let _ = TcpStream::connect_timeout(&to, Duration::from_secs(1));
        })
    }
}

/// A socket address bound to "any" is reached on the loopback.
#[cfg(not(unix))]
fn reachable(mut addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

/// A child process that one thread waits for while another may kill it.
///
/// std's [`Child::kill`] and [`Child::wait`] both take `&mut self`: a job
/// blocked in `wait` holds the child, and nothing else can reach it. A
/// `SharedChild` is a cheap handle (clones share one child) whose
/// [`wait`](Self::wait) polls `try_wait` with the child's lock released
/// between polls, so [`kill`](Self::kill) (and the
/// [`interrupter`](Self::interrupter)) can take it from any thread; the
/// waiter is woken at once by a kill and reaps the child, so no zombie is
/// left.
///
/// Take the child's pipes (`child.stdout.take()`) before wrapping it, or
/// reach them through [`with_child`](Self::with_child).
///
/// # Caveats
///
/// Without a kill, `wait` notices the child's exit within 10 ms (it polls
/// every 1 ms, backing off to 10 ms): std cannot wait for a child and be
/// woken from another thread. Dropping the last handle neither kills nor
/// reaps the child, as for a [`Child`].
///
/// # Examples
///
/// ```
/// # #[cfg(unix)] {
/// use std::process::Command;
/// use std::time::Duration;
/// use colorseam::interrupt::SharedChild;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let err = colorseam::offload_timeout(
///     || {
///         let child = SharedChild::spawn(Command::new("sleep").arg("30"))?;
///         let job = colorseam::job::current().expect("runs on a pool thread");
///         let _guard = job.on_cancel(child.interrupter());
///         child.wait() // returns once killed; the child is reaped
///     },
///     Duration::from_millis(50),
/// )
/// .await
/// .unwrap_err();
/// assert!(err.is_timeout() && err.interrupt_sent());
/// # }
/// # main() }
/// ```
#[derive(Clone)]
pub struct SharedChild {
    inner: Arc<ChildInner>,
}

struct ChildInner {
    child: Mutex<Child>,
    /// Signalled by a kill, so a waiter looks again at once.
    changed: Condvar,
    id: u32,
}

/// The first and the longest pause of [`SharedChild::wait`] between polls.
const FIRST_POLL: Duration = Duration::from_millis(1);
const LONGEST_POLL: Duration = Duration::from_millis(10);

impl SharedChild {
    /// Shares `child`.
    pub fn new(child: Child) -> Self {
        let id = child.id();
        SharedChild {
            inner: Arc::new(ChildInner {
                child: Mutex::new(child),
                changed: Condvar::new(),
                id,
            }),
        }
    }

    /// Spawns `command` and shares the child.
    ///
    /// # Errors
    ///
    /// The error of [`Command::spawn`].
    pub fn spawn(command: &mut Command) -> io::Result<Self> {
        command.spawn().map(SharedChild::new)
    }

    /// The child's OS process id.
    pub fn id(&self) -> u32 {
        self.inner.id
    }

    /// Kills the child (as [`Child::kill`]) and wakes a thread waiting for
    /// it, which then reaps it.
    ///
    /// # Errors
    ///
    /// The error of [`Child::kill`].
    pub fn kill(&self) -> io::Result<()> {
        let killed = lock(&self.inner.child).kill();
        self.inner.changed.notify_all();
        killed
    }

    /// The child's exit status if it has exited (and reaps it), as
    /// [`Child::try_wait`].
    ///
    /// # Errors
    ///
    /// The error of [`Child::try_wait`].
    pub fn try_wait(&self) -> io::Result<Option<ExitStatus>> {
        lock(&self.inner.child).try_wait()
    }

    /// Waits for the child to exit and reaps it, without holding it: a
    /// [`kill`](Self::kill) from another thread gets through and wakes this
    /// at once.
    ///
    /// # Errors
    ///
    /// The error of [`Child::try_wait`].
    pub fn wait(&self) -> io::Result<ExitStatus> {
        let mut pause = FIRST_POLL;
        let mut child = lock(&self.inner.child);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            let (guard, woken) = self
                .inner
                .changed
                .wait_timeout(child, pause)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            child = guard;
            // Killed: the child is dying now, look again soon.
            pause = if woken.timed_out() {
                (pause * 2).min(LONGEST_POLL)
            } else {
                Duration::from_micros(100)
            };
        }
    }

    /// Runs `f` on the child itself (its pipes, say), with its lock held:
    /// a kill waits meanwhile, so keep `f` short.
    pub fn with_child<R>(&self, f: impl FnOnce(&mut Child) -> R) -> R {
        f(&mut lock(&self.inner.child))
    }

    /// An interrupter that kills the child: for
    /// [`on_cancel`](crate::job::JobContext::on_cancel) and the adapters'
    /// `interrupt_with`.
    pub fn interrupter(&self) -> impl FnOnce() + Send + use<> {
        let child = self.clone();
        move || {
            // Already exited (and reaped) is the goal reached.
            let _ = child.kill();
        }
    }
}

impl std::fmt::Debug for SharedChild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedChild")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}
