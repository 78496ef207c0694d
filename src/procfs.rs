//! What a thread of this process is waiting on, as Linux's `/proc` says.
//!
//! The kernel knows what every thread is doing, and a process may read it
//! about its own threads without `unsafe`:
//!
//! - `/proc/self/task/<tid>/syscall`: `running`, or the system call the
//!   thread is blocked in (its number and arguments), or `-1 …` when it is
//!   off the CPU outside any system call;
//! - `/proc/self/task/<tid>/stat`: the thread's state (`R`, `S`, `D`, …);
//! - `/proc/self/fd/<n>`: what a descriptor is (`socket:[inode]`, a path,
//!   `pipe:[inode]`);
//! - `/proc/self/net/{tcp,tcp6,udp,udp6,unix}`: a socket inode's local and
//!   peer address.
//!
//! A bottom module (it uses nothing of colorseam's but `sync`): `detect`
//! puts its answers in stall reports, `pool` in stuck-call snapshots.
//!
//! This module reads them only when asked about one thread, and the
//! watchdog and the pool ask only about threads already past a stall
//! threshold or stuck in an abandoned call: nothing here runs on a healthy
//! path. Where `/proc` is absent or unreadable (not Linux, a sandbox, a
//! kernel that hides `syscall`), [`read`] says `None`: nothing is guessed.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

#[cfg(target_os = "linux")]
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
#[cfg(target_os = "linux")]
use std::path::Path;

/// What a stuck thread is doing, as the OS reports it.
///
/// Found in [`StallReport::wait`](crate::detect::StallReport::wait) and
/// [`StuckCall::wait`](crate::metrics::StuckCall::wait). Only Linux says;
/// elsewhere, and where `/proc` cannot be read, those fields are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ThreadWait {
    /// On a CPU, or runnable and waiting for one: running code, not
    /// blocked in the kernel (a spin loop, a long computation).
    Running,
    /// Blocked in a system call.
    Syscall(Syscall),
    /// Off the CPU but in no system call: stopped (a debugger,
    /// `SIGSTOP`) or waiting for a page fault. `state` is the kernel's
    /// one-letter state (`T`, `t`, `D`, …).
    OffCpu {
        /// The thread's state letter in `/proc/…/stat`.
        state: char,
    },
}

/// A system call a thread is blocked in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Syscall {
    /// The system call's number on this architecture.
    pub number: u64,
    /// Its name, for the common ones (`read`, `recvfrom`, `futex`,
    /// `clock_nanosleep`, `connect`, …); `None` for the rest.
    pub name: Option<&'static str>,
    /// The file descriptor it works on, for calls whose first argument is
    /// one (`read`, `recvfrom`, `connect`, `flock`, …).
    pub fd: Option<u32>,
    /// What that descriptor is, if `/proc` says.
    pub target: Option<FdTarget>,
}

/// What a file descriptor refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FdTarget {
    /// A TCP socket.
    Tcp {
        /// Its local address.
        local: SocketAddr,
        /// Its peer (`0.0.0.0:0` or `[::]:0` for a listening socket).
        peer: SocketAddr,
        /// The connection's state: `established`, `syn-sent` (a `connect`
        /// under way), `listen`, `close-wait`, …
        state: &'static str,
    },
    /// A UDP socket.
    Udp {
        /// Its local address.
        local: SocketAddr,
        /// Its peer, if it is connected.
        peer: Option<SocketAddr>,
    },
    /// A Unix-domain socket.
    Unix {
        /// The path it is bound to, if any (a connected client's own
        /// socket usually has none).
        path: Option<PathBuf>,
    },
    /// A socket `/proc/net` does not list (another protocol, or another
    /// network namespace).
    Socket {
        /// Its inode.
        inode: u64,
    },
    /// An anonymous pipe.
    Pipe,
    /// A named pipe.
    Fifo {
        /// Its path.
        path: PathBuf,
    },
    /// A file or device.
    File {
        /// Its path.
        path: PathBuf,
    },
    /// Anything else (`anon_inode:[eventpoll]`, …), as `/proc` names it.
    Other {
        /// The descriptor's link text.
        link: String,
    },
}

impl fmt::Display for ThreadWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThreadWait::Running => write!(f, "running on a cpu (not in a system call)"),
            ThreadWait::Syscall(call) => write!(f, "blocked in {call}"),
            ThreadWait::OffCpu { state } => {
                write!(f, "off the cpu outside any system call (state {state})")
            }
        }
    }
}

impl fmt::Display for Syscall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name {
            Some(name) => write!(f, "{name}")?,
            None => write!(f, "system call {}", self.number)?,
        }
        if let Some(what) = self.name.and_then(meaning) {
            write!(f, " ({what})")?;
        }
        match (&self.target, self.fd) {
            (Some(target), _) => write!(f, " on {target}"),
            (None, Some(fd)) => write!(f, " on fd {fd}"),
            (None, None) => Ok(()),
        }
    }
}

impl fmt::Display for FdTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FdTarget::Tcp { local, state, .. } if *state == "listen" => {
                write!(f, "tcp listener {local}")
            }
            FdTarget::Tcp { local, peer, state } if *state == "established" => {
                write!(f, "tcp {local} -> {peer}")
            }
            FdTarget::Tcp { local, peer, state } => write!(f, "tcp {local} -> {peer} ({state})"),
            FdTarget::Udp {
                local,
                peer: Some(peer),
            } => write!(f, "udp {local} -> {peer}"),
            FdTarget::Udp { local, peer: None } => write!(f, "udp {local}"),
            FdTarget::Unix { path: Some(path) } => write!(f, "unix socket {}", path.display()),
            FdTarget::Unix { path: None } => write!(f, "unix socket"),
            FdTarget::Socket { inode } => write!(f, "socket inode {inode}"),
            FdTarget::Pipe => write!(f, "a pipe"),
            FdTarget::Fifo { path } => write!(f, "fifo {}", path.display()),
            FdTarget::File { path } => write!(f, "file {}", path.display()),
            FdTarget::Other { link } => write!(f, "{link}"),
        }
    }
}

/// What a named system call usually means to whoever reads a report.
fn meaning(name: &str) -> Option<&'static str> {
    Some(match name {
        "futex" | "futex_waitv" => "a lock or condvar",
        "nanosleep" | "clock_nanosleep" => "a sleep",
        "poll" | "ppoll" | "select" | "pselect6" | "epoll_wait" | "epoll_pwait"
        | "epoll_pwait2" => "waiting for events",
        "wait4" | "waitid" => "waiting for a child process",
        "flock" => "a file lock",
        _ => return None,
    })
}

/// The names of the common system calls, and whether their first argument
/// is a file descriptor.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
const SYSCALLS: &[(u64, &str, bool)] = &[
    (0, "read", true),
    (1, "write", true),
    (3, "close", true),
    (7, "poll", false),
    (8, "lseek", true),
    (16, "ioctl", true),
    (17, "pread64", true),
    (18, "pwrite64", true),
    (19, "readv", true),
    (20, "writev", true),
    (23, "select", false),
    (24, "sched_yield", false),
    (34, "pause", false),
    (35, "nanosleep", false),
    (40, "sendfile", true),
    (42, "connect", true),
    (43, "accept", true),
    (44, "sendto", true),
    (45, "recvfrom", true),
    (46, "sendmsg", true),
    (47, "recvmsg", true),
    (61, "wait4", false),
    (65, "semop", false),
    (70, "msgrcv", false),
    (72, "fcntl", true),
    (73, "flock", true),
    (74, "fsync", true),
    (75, "fdatasync", true),
    (128, "rt_sigtimedwait", false),
    (130, "rt_sigsuspend", false),
    (202, "futex", false),
    (220, "semtimedop", false),
    (230, "clock_nanosleep", false),
    (232, "epoll_wait", true),
    (247, "waitid", false),
    (257, "openat", false),
    (270, "pselect6", false),
    (271, "ppoll", false),
    (275, "splice", true),
    (281, "epoll_pwait", true),
    (288, "accept4", true),
    (295, "preadv", true),
    (296, "pwritev", true),
    (299, "recvmmsg", true),
    (307, "sendmmsg", true),
    (318, "getrandom", false),
    (326, "copy_file_range", true),
    (426, "io_uring_enter", true),
    (441, "epoll_pwait2", true),
    (449, "futex_waitv", false),
];

/// The names of the common system calls, and whether their first argument
/// is a file descriptor (the generic table aarch64 uses).
#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
const SYSCALLS: &[(u64, &str, bool)] = &[
    (22, "epoll_pwait", true),
    (25, "fcntl", true),
    (29, "ioctl", true),
    (32, "flock", true),
    (56, "openat", false),
    (57, "close", true),
    (62, "lseek", true),
    (63, "read", true),
    (64, "write", true),
    (65, "readv", true),
    (66, "writev", true),
    (67, "pread64", true),
    (68, "pwrite64", true),
    (69, "preadv", true),
    (70, "pwritev", true),
    (71, "sendfile", true),
    (72, "pselect6", false),
    (73, "ppoll", false),
    (76, "splice", true),
    (82, "fsync", true),
    (83, "fdatasync", true),
    (95, "waitid", false),
    (98, "futex", false),
    (101, "nanosleep", false),
    (115, "clock_nanosleep", false),
    (124, "sched_yield", false),
    (133, "rt_sigsuspend", false),
    (137, "rt_sigtimedwait", false),
    (188, "msgrcv", false),
    (192, "semtimedop", false),
    (193, "semop", false),
    (202, "accept", true),
    (203, "connect", true),
    (206, "sendto", true),
    (207, "recvfrom", true),
    (211, "sendmsg", true),
    (212, "recvmsg", true),
    (242, "accept4", true),
    (243, "recvmmsg", true),
    (260, "wait4", false),
    (269, "sendmmsg", true),
    (278, "getrandom", false),
    (285, "copy_file_range", true),
    (426, "io_uring_enter", true),
    (441, "epoll_pwait2", true),
    (449, "futex_waitv", false),
];

/// Other architectures: numbers only, no names and no descriptors (a
/// wrong table would guess).
#[cfg(all(
    target_os = "linux",
    not(any(target_arch = "x86_64", target_arch = "aarch64"))
))]
const SYSCALLS: &[(u64, &str, bool)] = &[];

/// Where `/proc` is read from. Tests point it at a directory that is not
/// `/proc` to force the "no /proc" path, or at a tree of their own.
static ROOT: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// Reads `/proc` from `root` instead (`None`: the real `/proc` again), for
/// tests of the "no /proc" path. Process-wide.
#[doc(hidden)]
pub fn override_proc_root(root: Option<PathBuf>) {
    *crate::sync::lock_std(&ROOT) = root;
}

#[cfg(target_os = "linux")]
fn root() -> PathBuf {
    crate::sync::lock_std(&ROOT)
        .clone()
        .unwrap_or_else(|| PathBuf::from("/proc"))
}

/// The calling thread's kernel thread id, where `/proc` gives it (read
/// once per thread, then cached).
pub(crate) fn current_tid() -> Option<u32> {
    thread_local! {
        static TID: std::cell::OnceCell<Option<u32>> = const { std::cell::OnceCell::new() };
    }
    TID.try_with(|tid| *tid.get_or_init(read_own_tid))
        .ok()
        .flatten()
}

#[cfg(target_os = "linux")]
fn read_own_tid() -> Option<u32> {
    // `/proc/thread-self` links to `<pid>/task/<tid>`.
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

#[cfg(not(target_os = "linux"))]
fn read_own_tid() -> Option<u32> {
    None
}

/// The one thread of this process named `name` (as `/proc` shows names:
/// their first 15 bytes) whose id is not in `excluding`; `None` if there is
/// none, more than one, or no `/proc`.
#[cfg(target_os = "linux")]
pub(crate) fn only_thread_named(name: &str, excluding: &[u32]) -> Option<u32> {
    let comm = name.as_bytes().get(..15).unwrap_or(name.as_bytes());
    let mut found = None;
    for entry in std::fs::read_dir(root().join("self/task")).ok()? {
        let Ok(entry) = entry else { continue };
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        if excluding.contains(&tid) {
            continue;
        }
        let Ok(text) = std::fs::read(entry.path().join("comm")) else {
            continue; // gone meanwhile
        };
        if text.strip_suffix(b"\n").unwrap_or(&text) == comm {
            if found.is_some() {
                return None;
            }
            found = Some(tid);
        }
    }
    found
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn only_thread_named(_name: &str, _excluding: &[u32]) -> Option<u32> {
    None
}

/// What thread `tid` of this process is waiting on; `None` if `/proc`
/// does not say (absent, unreadable, the thread gone, or a line this
/// parser does not know).
#[cfg(target_os = "linux")]
pub(crate) fn read(tid: u32) -> Option<ThreadWait> {
    let root = root();
    let task = root.join("self/task").join(tid.to_string());
    let line = std::fs::read_to_string(task.join("syscall")).ok()?;
    let mut fields = line.split_whitespace();
    let first = fields.next()?;
    if first == "running" {
        return Some(ThreadWait::Running);
    }
    if first.starts_with('-') {
        // Blocked, but not in a system call.
        return Some(ThreadWait::OffCpu {
            state: thread_state(&task)?,
        });
    }
    let number: u64 = first.parse().ok()?;
    let arg0 = fields.next().and_then(parse_hex);
    let known = SYSCALLS.iter().find(|(n, _, _)| *n == number);
    let fd = match known {
        Some((_, _, true)) => arg0.and_then(|a| u32::try_from(a).ok()),
        _ => None,
    };
    let target = fd.and_then(|fd| describe_fd(&root, fd));
    Some(ThreadWait::Syscall(Syscall {
        number,
        name: known.map(|(_, name, _)| *name),
        fd,
        target,
    }))
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn read(_tid: u32) -> Option<ThreadWait> {
    None
}

#[cfg(target_os = "linux")]
fn parse_hex(field: &str) -> Option<u64> {
    u64::from_str_radix(field.strip_prefix("0x").unwrap_or(field), 16).ok()
}

/// The state letter in a thread's stat line.
#[cfg(target_os = "linux")]
fn thread_state(task: &Path) -> Option<char> {
    let line = std::fs::read_to_string(task.join("stat")).ok()?;
    // "tid (comm) S ...": the name may hold spaces and parentheses.
    let rest = &line[line.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// What descriptor `fd` of this process is.
#[cfg(target_os = "linux")]
fn describe_fd(root: &Path, fd: u32) -> Option<FdTarget> {
    let entry = root.join("self/fd").join(fd.to_string());
    let link = std::fs::read_link(&entry).ok()?;
    let text = link.to_string_lossy();
    if let Some(inode) = bracketed(&text, "socket:") {
        return Some(socket(root, inode).unwrap_or(FdTarget::Socket { inode }));
    }
    if bracketed(&text, "pipe:").is_some() {
        return Some(FdTarget::Pipe);
    }
    if !text.starts_with('/') {
        return Some(FdTarget::Other {
            link: text.into_owned(),
        });
    }
    use std::os::unix::fs::FileTypeExt;
    // The entry's own metadata is the open file's (the link is magic).
    let fifo = std::fs::metadata(&entry).is_ok_and(|m| m.file_type().is_fifo());
    Some(if fifo {
        FdTarget::Fifo { path: link }
    } else {
        FdTarget::File { path: link }
    })
}

/// `inode` out of `prefix[inode]`.
#[cfg(target_os = "linux")]
fn bracketed(text: &str, prefix: &str) -> Option<u64> {
    text.strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Looks a socket inode up in the process's `/proc/net` tables.
#[cfg(target_os = "linux")]
fn socket(root: &Path, inode: u64) -> Option<FdTarget> {
    let net = root.join("self/net");
    for (file, tcp) in [
        ("tcp", true),
        ("tcp6", true),
        ("udp", false),
        ("udp6", false),
    ] {
        let Ok(table) = std::fs::read_to_string(net.join(file)) else {
            continue;
        };
        if let Some(found) = table.lines().skip(1).find_map(|l| inet_line(l, inode, tcp)) {
            return Some(found);
        }
    }
    let table = std::fs::read_to_string(net.join("unix")).ok()?;
    table.lines().skip(1).find_map(|line| {
        // "Num RefCount Protocol Flags Type St Inode [Path]"
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(6)?.parse::<u64>().ok()? == inode).then(|| FdTarget::Unix {
            path: fields.get(7).map(|p| PathBuf::from(*p)),
        })
    })
}

/// One line of `/proc/net/{tcp,tcp6,udp,udp6}`, if it is socket `inode`:
/// "sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...".
#[cfg(target_os = "linux")]
fn inet_line(line: &str, inode: u64, tcp: bool) -> Option<FdTarget> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(9)?.parse::<u64>().ok()? != inode {
        return None;
    }
    let local = inet_address(fields.get(1)?)?;
    let peer = inet_address(fields.get(2)?)?;
    let state = u8::from_str_radix(fields.get(3)?, 16).ok()?;
    Some(if tcp {
        FdTarget::Tcp {
            local,
            peer,
            state: tcp_state(state),
        }
    } else {
        FdTarget::Udp {
            local,
            peer: (peer.port() != 0).then_some(peer),
        }
    })
}

/// "0100007F:1F90" (IPv4) or 32 hex digits and a port (IPv6). The kernel
/// prints each 32-bit word of the network-order address as a native
/// integer, so the bytes come back with `to_ne_bytes`.
#[cfg(target_os = "linux")]
fn inet_address(field: &str) -> Option<SocketAddr> {
    let (address, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = address.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            let v6 = Ipv6Addr::from(bytes);
            // A v4 peer of a dual-stack socket reads as itself.
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The kernel's TCP state numbers (`include/net/tcp_states.h`).
#[cfg(target_os = "linux")]
fn tcp_state(state: u8) -> &'static str {
    match state {
        1 => "established",
        2 => "syn-sent",
        3 => "syn-received",
        4 => "fin-wait-1",
        5 => "fin-wait-2",
        6 => "time-wait",
        7 => "close",
        8 => "close-wait",
        9 => "last-ack",
        10 => "listen",
        11 => "closing",
        _ => "unknown",
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_proc_net_read_back_as_written() {
        assert_eq!(
            inet_address("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().expect("an address"))
        );
        assert_eq!(
            inet_address("00000000000000000000000001000000:0050"),
            Some("[::1]:80".parse().expect("an address"))
        );
        assert_eq!(
            inet_address("0000000000000000FFFF00000100007F:1538"),
            Some("127.0.0.1:5432".parse().expect("an address"))
        );
        assert_eq!(inet_address("garbage"), None);
    }

    #[test]
    fn a_tcp_line_is_matched_by_its_inode_only() {
        let line = "   3: 0100007F:9C40 0100007F:1538 01 00000000:00000000 00:00000000 00000000  1000        0 424242 1 0000000000000000 20 4 30 10 -1";
        assert_eq!(inet_line(line, 1, true), None);
        assert_eq!(
            inet_line(line, 424242, true),
            Some(FdTarget::Tcp {
                local: "127.0.0.1:40000".parse().expect("an address"),
                peer: "127.0.0.1:5432".parse().expect("an address"),
                state: "established",
            })
        );
    }

    #[test]
    fn the_calling_thread_reads_its_own_read_of_its_syscall_file() {
        // A thread reading its own `syscall` file is in `read` then.
        let Some(tid) = current_tid() else {
            return; // no /proc here: nothing to check
        };
        let Some(ThreadWait::Syscall(call)) = read(tid) else {
            panic!("a thread reading /proc is in a system call");
        };
        // (Its descriptor is closed by the time it is looked up.)
        assert_eq!(call.name, Some("read"), "{call}");
    }
}
