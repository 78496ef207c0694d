//! The functions a binary registers for its workers, the entry point
//! (`Functions::init`), and the worker process's side of the wire.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

use super::frame;

/// The environment variable that makes a process a worker: the pool's
/// socket address and the token it expects back.
pub(crate) const WORKER_ENV: &str = "COLORSEAM_PROCESS_WORKER";
/// Limits the worker applies to itself before it says hello.
pub(crate) const LIMITS_ENV: &str = "COLORSEAM_PROCESS_LIMITS";

/// Exit codes of a worker that could not start, for the pool's error.
pub(crate) const EXIT_BAD_SETUP: i32 = 97;
pub(crate) const EXIT_NO_LIMITS: i32 = 98;
pub(crate) const EXIT_NO_CONNECT: i32 = 99;

type Func = Box<dyn Fn(&[u8]) -> Result<Vec<u8>, String> + Send + Sync>;

/// The names registered by the first [`Functions::init`] of this process;
/// unset until then. A pool is refused without it: its workers would run
/// `main` from the top.
static REGISTERED: OnceLock<Arc<[String]>> = OnceLock::new();

pub(crate) fn registered() -> Option<&'static Arc<[String]>> {
    REGISTERED.get()
}

/// The functions worker processes can run, registered by name: build it
/// first thing in `main` and call [`init`](Functions::init).
///
/// A [`ProcessPool`](super::ProcessPool) starts its workers by running the
/// application's own binary again (`std::env::current_exe()`) with an
/// environment variable that marks it a worker. In that process `init`
/// never returns: it runs the worker loop and exits. In the application's
/// own process it records the names and returns at once. So the same
/// registration is in both, and whatever `main` does after `init` happens
/// only in the application.
///
/// # Panics
///
/// [`add`](Self::add) and its family panic if a name is registered twice,
/// is empty or longer than 1,024 bytes: a programming error, found the
/// first time the program starts.
///
/// # Examples
///
/// ```no_run
/// fn upper(input: &[u8]) -> Vec<u8> {
///     input.to_ascii_uppercase()
/// }
///
/// fn main() {
///     colorseam::process::Functions::new()
///         .add("upper", upper)
///         .add("lower", |input: &[u8]| input.to_ascii_lowercase())
///         .init();
///     // From here on, only the application runs.
/// }
/// ```
#[must_use = "call .init() first thing in main: in a worker process it runs the worker and never returns"]
pub struct Functions {
    map: HashMap<String, Func>,
}

impl Default for Functions {
    fn default() -> Self {
        Functions::new()
    }
}

impl fmt::Debug for Functions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.map.keys().collect();
        names.sort();
        f.debug_struct("Functions").field("names", &names).finish()
    }
}

impl Functions {
    /// No functions yet.
    pub fn new() -> Self {
        Functions {
            map: HashMap::new(),
        }
    }

    fn insert(mut self, name: &str, func: Func) -> Self {
        assert!(
            !name.is_empty() && name.len() <= 1024,
            "a process function's name must be 1 to 1,024 bytes (got {name:?})"
        );
        let previous = self.map.insert(name.to_owned(), func);
        assert!(
            previous.is_none(),
            "the process function {name:?} is registered twice"
        );
        self
    }

    /// Registers `f` under `name`: it gets the call's input bytes and
    /// returns the output bytes.
    ///
    /// A panic in `f` is caught in the worker and reaches the caller as
    /// [`Error::is_panic`](crate::Error::is_panic), with its message; the
    /// worker goes on. (Built with `panic = "abort"`, a panic aborts the
    /// worker and is a crash.)
    ///
    /// # Panics
    ///
    /// See [`Functions`].
    pub fn add<F>(self, name: &str, f: F) -> Self
    where
        F: Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
    {
        self.insert(name, Box::new(move |input| Ok(f(input))))
    }

    /// Registers a function that can fail: its error's `Display` reaches
    /// the caller as an error of kind [`ErrorKind::Job`](crate::ErrorKind::Job)
    /// (the message is its `source()`).
    ///
    /// # Panics
    ///
    /// See [`Functions`].
    pub fn add_fallible<F, E>(self, name: &str, f: F) -> Self
    where
        F: Fn(&[u8]) -> Result<Vec<u8>, E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        self.insert(
            name,
            Box::new(move |input| f(input).map_err(|e| e.to_string())),
        )
    }

    /// Registers a typed function: its argument and result cross as
    /// [postcard](https://docs.rs/postcard), a compact serde format.
    /// Call it with [`ProcessPool::call_serde`](super::ProcessPool::call_serde).
    ///
    /// An input that does not decode as `A` fails the call with an error of
    /// kind [`ErrorKind::Job`](crate::ErrorKind::Job).
    ///
    /// # Caveats
    ///
    /// postcard is not self-describing: a value of another type than `A`
    /// may decode as a wrong `A` rather than fail, so caller and function
    /// must agree on the types (keep them in one module both use).
    ///
    /// # Panics
    ///
    /// See [`Functions`].
    #[cfg(feature = "process-serde")]
    #[cfg_attr(docsrs, doc(cfg(feature = "process-serde")))]
    pub fn add_serde<A, R, F>(self, name: &str, f: F) -> Self
    where
        A: serde::de::DeserializeOwned,
        R: serde::Serialize,
        F: Fn(A) -> R + Send + Sync + 'static,
    {
        self.insert(
            name,
            Box::new(move |input| {
                let arg: A = postcard::from_bytes(input)
                    .map_err(|e| format!("the argument did not decode: {e}"))?;
                postcard::to_stdvec(&f(arg)).map_err(|e| format!("the result did not encode: {e}"))
            }),
        )
    }

    /// The entry point: call it first thing in `main`.
    ///
    /// In a worker process started by a [`ProcessPool`](super::ProcessPool)
    /// it never returns: it applies the pool's limits, connects to the
    /// pool, runs calls until the pool closes the connection (or the
    /// application dies, which closes it too), and exits. In any other
    /// process it records the registered names, so pools can be built, and
    /// returns. Only the first call in a process counts.
    ///
    /// # Caveats
    ///
    /// Anything `main` does before `init` (or statics and constructors that
    /// run before `main`) runs in every worker too. That includes the
    /// runtime `#[tokio::main]` builds before the body of `main` runs:
    /// prefer a plain `fn main` that calls `init` and then builds the
    /// runtime, so workers start no runtime threads they never use.
    pub fn init(self) {
        if let Some(spec) = std::env::var_os(WORKER_ENV) {
            let spec = spec.to_string_lossy().into_owned();
            worker_main(&self, &spec);
        }
        let mut names: Vec<String> = self.map.into_keys().collect();
        names.sort();
        let _first_only = REGISTERED.set(names.into());
    }
}

/// What the pool passes a worker in [`WORKER_ENV`]: `<address>;<token>`.
pub(crate) fn worker_spec(address: &str, token: u64) -> String {
    format!("{address};{token:016x}")
}

fn worker_main(functions: &Functions, spec: &str) -> ! {
    let Some((address, token)) = spec
        .rsplit_once(';')
        .and_then(|(a, t)| Some((a, u64::from_str_radix(t, 16).ok()?)))
    else {
        eprintln!("colorseam worker: {WORKER_ENV} is malformed ({spec:?})");
        std::process::exit(EXIT_BAD_SETUP);
    };
    if let Err(e) = apply_limits() {
        eprintln!("colorseam worker: could not apply its limits: {e}");
        std::process::exit(EXIT_NO_LIMITS);
    }
    let stream = match super::address::connect(address) {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!("colorseam worker: could not reach its pool at {address:?}: {e}");
            std::process::exit(EXIT_NO_CONNECT);
        }
    };
    let mut out = &stream;
    let hello = frame::write_frame(
        &mut out,
        frame::HELLO,
        &[&token.to_le_bytes(), &std::process::id().to_le_bytes()],
    );
    if hello.is_err() {
        std::process::exit(EXIT_NO_CONNECT);
    }
    // Calls are read on a thread of their own, so that the end of the
    // stream (the pool closed it, or the application died and the kernel
    // closed it) ends this process even while a function spins on the
    // main thread: a worker never outlives its application.
    let (calls, incoming) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
    let reader = match stream.try_clone() {
        Ok(reader) => reader,
        Err(_) => std::process::exit(EXIT_NO_CONNECT),
    };
    let spawned = std::thread::Builder::new()
        .name("colorseam-worker-reader".into())
        .spawn(move || read_calls(reader, calls));
    if spawned.is_err() {
        std::process::exit(EXIT_NO_CONNECT);
    }
    for body in incoming {
        let reply = run_call(functions, &body);
        let (tag, bytes) = match &reply {
            Reply::Ok(out) => (frame::OK, out.as_slice()),
            Reply::Failed(message) => (frame::FAILED, message.as_bytes()),
            Reply::Panicked(message) => (frame::PANICKED, message.as_bytes()),
            Reply::Unknown => (frame::UNKNOWN, &[][..]),
        };
        let written = frame::write_frame(&mut out, tag, &[bytes]).and_then(|()| out.flush());
        if written.is_err() {
            std::process::exit(0);
        }
    }
    std::process::exit(0)
}

fn read_calls(mut stream: UnixStream, calls: std::sync::mpsc::SyncSender<Vec<u8>>) {
    loop {
        match frame::read_frame(&mut stream) {
            Ok(Some((frame::CALL, body))) => {
                if calls.send(body).is_err() {
                    std::process::exit(0);
                }
            }
            // The pool's end is closed (or sent garbage): nobody is left to
            // answer to. Exit now, whatever the main thread is running.
            _ => std::process::exit(0),
        }
    }
}

enum Reply {
    Ok(Vec<u8>),
    Failed(String),
    Panicked(String),
    Unknown,
}

fn run_call(functions: &Functions, body: &[u8]) -> Reply {
    let Some((name, input)) = frame::split_call(body) else {
        return Reply::Unknown;
    };
    let Some(func) = functions.map.get(name) else {
        return Reply::Unknown;
    };
    match catch_unwind(AssertUnwindSafe(|| func(input))) {
        // Past the frame limit the reply could not be sent; say so rather
        // than die and leave the pool to guess.
        Ok(Ok(out)) if out.len() >= frame::MAX_FRAME => Reply::Failed(format!(
            "the output of {} bytes is over the 1 GiB frame limit",
            out.len()
        )),
        Ok(Ok(out)) => Reply::Ok(out),
        Ok(Err(message)) => Reply::Failed(message),
        Err(payload) => {
            let message = crate::error::panic_message(&*payload).unwrap_or_default();
            // The payload's destructor is user code too.
            if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
                std::mem::forget(again);
            }
            Reply::Panicked(message)
        }
    }
}

/// Memory and CPU-time limits, as the pool encodes them in [`LIMITS_ENV`]:
/// `mem=<bytes>,cpu=<seconds>`, either part optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) memory: Option<u64>,
    pub(crate) cpu_seconds: Option<u64>,
}

impl Limits {
    pub(crate) fn encode(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(bytes) = self.memory {
            parts.push(format!("mem={bytes}"));
        }
        if let Some(seconds) = self.cpu_seconds {
            parts.push(format!("cpu={seconds}"));
        }
        (!parts.is_empty()).then(|| parts.join(","))
    }

    fn decode(text: &str) -> Option<Limits> {
        let mut limits = Limits::default();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=')?;
            let value: u64 = value.parse().ok()?;
            match key {
                "mem" => limits.memory = Some(value),
                "cpu" => limits.cpu_seconds = Some(value),
                _ => return None,
            }
        }
        Some(limits)
    }
}

fn apply_limits() -> io::Result<()> {
    let Some(text) = std::env::var_os(LIMITS_ENV) else {
        return Ok(());
    };
    let text = text.to_string_lossy();
    let limits = Limits::decode(&text).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("bad limits {text:?}"))
    })?;
    if let Some(bytes) = limits.memory {
        rlimit::setrlimit(rlimit::Resource::AS, bytes, bytes)?;
    }
    if let Some(seconds) = limits.cpu_seconds {
        // SIGXCPU at the soft limit; the kernel's SIGKILL a second later
        // if the process ignores it.
        rlimit::setrlimit(rlimit::Resource::CPU, seconds, seconds.saturating_add(1))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_round_trip_through_their_encoding() {
        for limits in [
            Limits::default(),
            Limits {
                memory: Some(1 << 30),
                cpu_seconds: None,
            },
            Limits {
                memory: Some(5),
                cpu_seconds: Some(2),
            },
        ] {
            let text = limits.encode().unwrap_or_default();
            assert_eq!(Limits::decode(&text), Some(limits), "{text}");
        }
        assert_eq!(Limits::decode("mem=x"), None);
        assert_eq!(Limits::decode("disk=1"), None);
    }

    #[test]
    fn a_call_runs_its_function_and_a_panic_is_a_reply() {
        let functions = Functions::new()
            .add("rev", |i: &[u8]| i.iter().rev().copied().collect())
            .add("boom", |_: &[u8]| panic!("no"))
            .add_fallible("fail", |_: &[u8]| Err::<Vec<u8>, _>("bad input"));
        let body = |name: &str, input: &[u8]| {
            let len = (name.len() as u16).to_le_bytes();
            frame::call_parts(name, &len, input).concat()
        };
        assert!(matches!(run_call(&functions, &body("rev", b"ab")), Reply::Ok(v) if v == b"ba"));
        assert!(
            matches!(run_call(&functions, &body("boom", b"")), Reply::Panicked(m) if m == "no")
        );
        assert!(
            matches!(run_call(&functions, &body("fail", b"")), Reply::Failed(m) if m == "bad input")
        );
        assert!(matches!(
            run_call(&functions, &body("nope", b"")),
            Reply::Unknown
        ));
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn a_name_registered_twice_panics() {
        let _ = Functions::new()
            .add("a", |_: &[u8]| Vec::new())
            .add("a", |_: &[u8]| Vec::new());
    }
}
