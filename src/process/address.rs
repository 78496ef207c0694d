//! Where a worker finds its pool: a Unix socket listener per worker slot,
//! in Linux's abstract namespace (nothing on disk to clean up) or, on other
//! unixes, a socket file in the temp dir.

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::unix::net::{UnixListener, UnixStream};

/// 64 random bits, from std's per-process random hasher keys (no crate
/// needed for a name nobody should guess and a token to check).
pub(crate) fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}

/// A listener for one worker slot, and the address its workers dial.
pub(crate) struct Endpoint {
    pub(crate) listener: UnixListener,
    pub(crate) address: String,
    #[cfg(not(target_os = "linux"))]
    path: std::path::PathBuf,
}

impl Endpoint {
    pub(crate) fn bind() -> io::Result<Endpoint> {
        let name = format!(
            "colorseam-{}-{:016x}{:016x}",
            std::process::id(),
            random_u64(),
            random_u64()
        );
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            let listener = UnixListener::bind_addr(&addr)?;
            listener.set_nonblocking(true)?;
            Ok(Endpoint {
                listener,
                address: format!("@{name}"),
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let path = std::env::temp_dir().join(format!("{name}.sock"));
            let listener = UnixListener::bind(&path)?;
            listener.set_nonblocking(true)?;
            Ok(Endpoint {
                listener,
                address: path.to_string_lossy().into_owned(),
                path,
            })
        }
    }
}

#[cfg(not(target_os = "linux"))]
impl Drop for Endpoint {
    fn drop(&mut self) {
        let _gone_or_never_made = std::fs::remove_file(&self.path);
    }
}

/// Dials a pool's endpoint from a worker.
pub(crate) fn connect(address: &str) -> io::Result<UnixStream> {
    #[cfg(target_os = "linux")]
    if let Some(name) = address.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        return UnixStream::connect_addr(&addr);
    }
    UnixStream::connect(address)
}
